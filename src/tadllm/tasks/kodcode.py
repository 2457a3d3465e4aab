"""KodCode (KodCode/KodCode-V1-SFT-R1): synthetic coding questions with verified solutions and pytest
unit tests; the code data of the release's trajectories.

Native fields: `question`, `solution` (Python code), `test` (pytest code importing from `solution`),
and optional `question_id`, `test_info` (function names), `style`, `subset`. The hub dataset has only a
"train" split, which is this task's default split. Tests run with pytest inside the sandbox, with the
solution saved as `solution.py`.
"""

from __future__ import annotations

import os

from tadllm.tasks import prompts
from tadllm.tasks.base import CodeTaskBase, Example, require_str
from tadllm.tasks.code_utils import pytest_program

__all__ = ["KodCodeTask"]


def _function_names(test_info) -> list[str]:
    if not isinstance(test_info, (list, tuple)):
        return []
    return [str(item["function_name"]) for item in test_info
            if isinstance(item, dict) and item.get("function_name")]


class KodCodeTask(CodeTaskBase):
    name = "kodcode"
    hub_name = "KodCode/KodCode-V1-SFT-R1"

    def load(self, source: str | os.PathLike | None = None, split: str = "train",
             limit: int | None = None) -> list[Example]:
        return super().load(source, split, limit)

    def to_example(self, row: dict, index: int, split: str) -> Example:
        question, solution = require_str(row, "question"), require_str(row, "solution")
        test = require_str(row, "test")
        names = _function_names(row.get("test_info"))
        meta = {"entry_point": names[0] if names else None, "function_names": names}
        meta.update({k: row[k] for k in ("style", "subset") if row.get(k) is not None})
        return Example(id=self.default_id(row, index, split, "question_id"), question=question,
                       reference=solution, answer=test, meta=meta)

    def user_prompt(self, example: Example) -> str:
        return prompts.code_prompt(example.question)

    def build_program(self, code: str, example: Example):
        return pytest_program(code, example.answer)
