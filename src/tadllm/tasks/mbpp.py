"""MBPP (Mostly Basic Python Problems), 3-shot in the standard `[BEGIN]` / `[DONE]` format.

Native fields: `task_id`, `text` (`prompt` in the "sanitized" config), `code`, `test_list`, and optional
`test_setup_code` / `challenge_test_list`. The `answer` is the assert lines; the function name the tests
call is kept in `meta["entry_point"]`.
"""

from __future__ import annotations

import re

from tadllm.tasks import prompts
from tadllm.tasks.base import CodeTaskBase, Example, as_str_list, require_str
from tadllm.tasks.code_utils import mbpp_program

__all__ = ["MBPPTask"]

_CALLED = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(\s*|set\(\s*)?([A-Za-z_]\w*)\s*\(")


class MBPPTask(CodeTaskBase):
    name = "mbpp"
    hub_name = "google-research-datasets/mbpp"
    hub_configs = ("full",)

    def __init__(self, num_shots: int = 3, timeout: float = 10.0, memory_mb: int | None = 2048,
                 max_workers: int | None = None) -> None:
        super().__init__(timeout=timeout, memory_mb=memory_mb, max_workers=max_workers)
        if not 0 <= num_shots <= len(prompts.MBPP_SHOTS):
            raise ValueError(f"num_shots must be in 0..{len(prompts.MBPP_SHOTS)}, got {num_shots}")
        self.num_shots = num_shots

    def __repr__(self) -> str:
        return f"MBPPTask(num_shots={self.num_shots}, timeout={self.timeout}, memory_mb={self.memory_mb})"

    def to_example(self, row: dict, index: int, split: str) -> Example:
        text = require_str(row, "text") if "text" in row else require_str(row, "prompt")
        code = require_str(row, "code")
        tests = as_str_list(row["test_list"], "test_list")
        if not tests:
            raise ValueError("field 'test_list' is empty")
        called = _CALLED.search(tests[0])
        meta = {"test_list": tests, "test_setup_code": row.get("test_setup_code") or "",
                "entry_point": called.group(1) if called else None}
        return Example(id=self.default_id(row, index, split, "task_id"), question=text, reference=code,
                       answer="\n".join(tests), meta=meta)

    def user_prompt(self, example: Example) -> str:
        return prompts.mbpp_prompt(example.question, example.meta["test_list"], self.num_shots)

    def teacher_question(self, example: Example) -> str:
        # the task text alone does not name the function the tests call
        return f"{example.question} Your code should pass these tests:\n{example.answer}"

    def build_program(self, code: str, example: Example) -> str:
        return mbpp_program(code, example.meta["test_list"], example.meta.get("test_setup_code", ""))
