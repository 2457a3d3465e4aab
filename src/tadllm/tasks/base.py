"""The `Example` record and the `Task` interface shared by every task (see docs/architecture.md).

A task turns a dataset (a local file or a `datasets` hub name) into `Example`s, writes the student
prompt and the teacher's privileged prompt, and verifies model outputs. `MathTaskBase` and
`CodeTaskBase` hold what the math tasks (answer extraction + equivalence) and the code tasks (code
extraction + sandboxed unit tests) have in common; a concrete task only maps its dataset's fields and
writes its prompt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tadllm.tasks import data, prompts

__all__ = ["Example", "Task", "MathTaskBase", "CodeTaskBase", "fill_template"]


@dataclass
class Example:
    """One problem. `answer` is the gold final answer (math) or the test code (code tasks)."""

    id: str
    question: str
    reference: str
    answer: str
    meta: dict = field(default_factory=dict)


def fill_template(template: str, **fields: str) -> str:
    """Replace `{name}` placeholders in one pass.

    Not `str.format`: questions and references are full of LaTeX and code braces, and a template may
    contain literal braces too; only the known field names are substituted.
    """
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, fields)) + r")\}")
    return pattern.sub(lambda m: fields[m.group(1)], template)


class Task:
    """Base class of every task. Subclasses set the class attributes and implement `to_example`,
    `user_prompt`, `extract_answer` and `is_correct` (or `score_batch`)."""

    name: str = ""
    kind: str = ""  # "math" | "code" | "synthetic"
    hub_name: str | None = None  # default `datasets` hub dataset when `load()` gets no source
    hub_configs: tuple[str | None, ...] = (None,)  # configs concatenated when loading `hub_name`
    privileged_template: str = prompts.MATH_PRIVILEGED_TEMPLATE

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ----------------------------------------------------------------------------------------- data
    def load(self, source: str | os.PathLike | None = None, split: str = "test",
             limit: int | None = None) -> list[Example]:
        """Examples from a local .jsonl/.json/.parquet file (.jsonl.gz/.json.gz too; or a directory
        holding `{split}` files), or from a `datasets` hub name (`"name"` or `"name:config"`); `None` means
        the task's default: `default_source(split)` when it names a local file, else the hub default.
        A malformed row raises ValueError naming the file and line (row)."""
        if source is None:
            source = self.default_source(split)
        out: list[Example] = []
        for where, index, row in data.iter_rows(source, split, self.hub_name, self.hub_configs):
            if limit is not None and len(out) >= limit:
                break
            out.append(self._convert(row, index, split, where))
        return out

    def _convert(self, row: Any, index: int, split: str, where: str) -> Example:
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object with fields, got {type(row).__name__}")
        try:
            return self.to_example(row, index, split)
        except KeyError as e:
            raise ValueError(f"{where}: missing field {e.args[0]!r} for task {self.name!r}") from e
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e

    def default_source(self, split: str) -> str | os.PathLike | None:
        """A local copy of the task's data that `load()` reads when given no source (None: the hub)."""
        return None

    def to_example(self, row: dict, index: int, split: str) -> Example:
        """Map one dataset row (native field names) to an Example; raise KeyError/ValueError if malformed."""
        raise NotImplementedError

    def default_id(self, row: dict, index: int, split: str, key: str | None = None) -> str:
        if key and row.get(key) not in (None, ""):
            return str(row[key])
        return f"{self.name}/{split}/{index}"

    # -------------------------------------------------------------------------------------- prompts
    def user_prompt(self, example: Example) -> str:
        raise NotImplementedError

    def teacher_question(self, example: Example) -> str:
        """The question as shown to the teacher (plain, without few-shot examples or instructions)."""
        return example.question

    def privileged_prompt(self, example: Example, template: str | None = None) -> str:
        """The teacher prompt holding the reference; `template` may use `{question}` and `{reference}`."""
        return fill_template(template or self.privileged_template,
                             question=self.teacher_question(example), reference=example.reference)

    # ------------------------------------------------------------------------------------- scoring
    def extract_answer(self, text: str) -> str | None:
        raise NotImplementedError

    def is_correct(self, text: str, example: Example) -> bool:
        raise NotImplementedError

    def score_batch(self, texts: Sequence[str], examples: Sequence[Example]) -> list[bool]:
        _check_lengths(texts, examples)
        return [self.is_correct(t, ex) for t, ex in zip(texts, examples)]


def _check_lengths(texts: Sequence, examples: Sequence) -> None:
    if len(texts) != len(examples):
        raise ValueError(f"{len(texts)} texts for {len(examples)} examples")


class MathTaskBase(Task):
    """Math tasks: the final answer is extracted (`\\boxed{}` -> `####` -> last number) and compared
    with the gold answer (fast exact/numeric check, then math-verify)."""

    kind = "math"
    privileged_template = prompts.MATH_PRIVILEGED_TEMPLATE

    def extract_answer(self, text: str) -> str | None:
        from tadllm.tasks.answers import extract_answer

        return extract_answer(text)

    def is_correct(self, text: str, example: Example) -> bool:
        from tadllm.tasks.answers import answers_match

        return answers_match(self.extract_answer(text), example.answer)


class CodeTaskBase(Task):
    """Code tasks: the code is extracted from the model output, joined with the task's tests into a
    `Program`, and run in the sandbox (in parallel for a batch)."""

    kind = "code"
    privileged_template = prompts.CODE_PRIVILEGED_TEMPLATE

    def __init__(self, timeout: float = 10.0, memory_mb: int | None = 2048,
                 max_workers: int | None = None) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(timeout={self.timeout}, memory_mb={self.memory_mb}, "
                f"max_workers={self.max_workers})")

    def entry_point(self, example: Example) -> str | None:
        return example.meta.get("entry_point") or None

    def extract_answer(self, text: str) -> str | None:
        from tadllm.tasks.code_utils import extract_code

        return extract_code(text) or None

    def build_program(self, code: str, example: Example):
        """The sandbox `Program` that runs `code` against the example's tests."""
        raise NotImplementedError

    def program_for(self, text: str, example: Example):
        """Program for a raw model output, or None when no code can be extracted."""
        from tadllm.tasks.code_utils import extract_code

        code = extract_code(text, self.entry_point(example))
        return self.build_program(code, example) if code.strip() else None

    def run_batch(self, texts: Sequence[str], examples: Sequence[Example]) -> list:
        """One `SandboxResult` per output (an output without code gets a failed result, not run)."""
        from tadllm.tasks.sandbox import SandboxResult, run_tests_parallel

        _check_lengths(texts, examples)
        programs = [self.program_for(t, ex) for t, ex in zip(texts, examples)]
        todo = [i for i, p in enumerate(programs) if p is not None]
        ran = run_tests_parallel([programs[i] for i in todo], timeout=self.timeout,
                                 max_workers=self.max_workers, memory_mb=self.memory_mb)
        results = [SandboxResult(passed=False, status="error", stderr="no code found in the output")
                   for _ in programs]
        for i, res in zip(todo, ran):
            results[i] = res
        return results

    def score_batch(self, texts: Sequence[str], examples: Sequence[Example]) -> list[bool]:
        return [r.passed for r in self.run_batch(texts, examples)]

    def is_correct(self, text: str, example: Example) -> bool:
        return self.score_batch([text], [example])[0]


def as_str_list(value: Any, name: str) -> list[str]:
    """A list of strings from a JSON list / parquet list column; ValueError otherwise."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"field {name!r} must be a list of strings, got {type(value).__name__}")
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise ValueError(f"field {name!r} must be a list of strings")
    return items


def require_str(row: dict, key: str) -> str:
    """`row[key]`, which must be a string (KeyError if absent, ValueError otherwise)."""
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value
