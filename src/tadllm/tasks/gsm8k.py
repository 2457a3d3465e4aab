"""GSM8K: grade-school math word problems, 0-shot chain of thought with a `\\boxed{}` final answer.

Native fields: `question`, `answer` (the worked solution ending in `#### <number>`). The reference is the
whole answer text; the gold answer is what follows `####` (thousands commas removed).
"""

from __future__ import annotations

from tadllm.tasks import prompts
from tadllm.tasks.base import Example, MathTaskBase, require_str

__all__ = ["GSM8KTask", "gsm8k_gold"]


def gsm8k_gold(answer_text: str) -> str:
    """The final answer after the last `####` of a GSM8K solution; ValueError if there is none."""
    head, marker, tail = answer_text.rpartition("####")
    gold = tail.strip().replace(",", "")
    if not marker or not gold:
        raise ValueError("field 'answer' has no '#### <final answer>'")
    return gold


class GSM8KTask(MathTaskBase):
    name = "gsm8k"
    hub_name = "openai/gsm8k"
    hub_configs = ("main",)

    def to_example(self, row: dict, index: int, split: str) -> Example:
        question, answer = require_str(row, "question"), require_str(row, "answer")
        return Example(id=self.default_id(row, index, split, "id"), question=question, reference=answer,
                       answer=gsm8k_gold(answer), meta={})

    def user_prompt(self, example: Example) -> str:
        return prompts.gsm8k_prompt(example.question)
