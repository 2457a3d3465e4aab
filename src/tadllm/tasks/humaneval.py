"""HumanEval: 164 hand-written Python functions to complete, checked by their unit tests (0-shot).

Native fields: `task_id`, `prompt` (signature + docstring), `canonical_solution` (the body),
`test` (defines `check(candidate)`), `entry_point`. The reference given to the teacher is the whole
canonical function (prompt + body); the `answer` is the test code.
"""

from __future__ import annotations

from tadllm.tasks import prompts
from tadllm.tasks.base import CodeTaskBase, Example, require_str
from tadllm.tasks.code_utils import humaneval_program

__all__ = ["HumanEvalTask"]


class HumanEvalTask(CodeTaskBase):
    name = "humaneval"
    hub_name = "openai/openai_humaneval"

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
