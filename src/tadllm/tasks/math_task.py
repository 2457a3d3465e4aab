"""MATH (Hendrycks et al.): competition mathematics, evaluated Minerva-style with 4 few-shot examples.

Native fields: `problem`, `solution` (worked solution with a final `\\boxed{}`), plus `level` and
`type` (hendrycks_math) or `subject` / `unique_id` / `answer` (MATH-500). The gold answer is the last
`\\boxed{}` of the solution (MATH-500's `answer` field when the solution has none).
Default hub source: all seven subject configs of `EleutherAI/hendrycks_math`; pass
`"HuggingFaceH4/MATH-500"` for the 500-problem subset.
"""

from __future__ import annotations

import re

from tadllm.tasks import prompts
from tadllm.tasks.answers import last_boxed
from tadllm.tasks.base import Example, MathTaskBase, require_str

__all__ = ["MATHTask", "MATH_SUBJECTS"]

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")

_NEXT_PROBLEM = re.compile(r"\n\s*Problem:")


class MATHTask(MathTaskBase):
    name = "math"
    hub_name = "EleutherAI/hendrycks_math"
    hub_configs = MATH_SUBJECTS

    def __init__(self, num_shots: int = 4) -> None:
        if not 0 <= num_shots <= len(prompts.MINERVA_SHOTS):
            raise ValueError(f"num_shots must be in 0..{len(prompts.MINERVA_SHOTS)}, got {num_shots}")
        self.num_shots = num_shots

    def __repr__(self) -> str:
        return f"MATHTask(num_shots={self.num_shots})"

    def to_example(self, row: dict, index: int, split: str) -> Example:
        problem, solution = require_str(row, "problem"), require_str(row, "solution")
        gold = last_boxed(solution) or row.get("answer")
        if not gold:
            raise ValueError("field 'solution' has no \\boxed{} answer (and there is no 'answer' field)")
        meta = {k: row[k] for k in ("level", "type", "subject") if row.get(k) is not None}
        return Example(id=self.default_id(row, index, split, "unique_id"), question=problem,
                       reference=solution, answer=str(gold), meta=meta)

    def user_prompt(self, example: Example) -> str:
        return prompts.minerva_prompt(example.question, self.num_shots)

    def extract_answer(self, text: str) -> str | None:
        # a few-shot prompted model may go on with a new "Problem:" after its answer; drop that part
        return super().extract_answer(_NEXT_PROBLEM.split(text or "", maxsplit=1)[0])
