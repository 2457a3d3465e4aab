"""Getting runnable code out of a model output, and joining it with a task's tests into a program.

`extract_code` prefers fenced blocks (```python ... ```, also an unclosed last fence from a truncated
generation), then the MBPP `[BEGIN]` ... `[DONE]` form, then the raw text with leading prose removed.
For HumanEval the output may be a whole function or only its body: `humaneval_program` handles both.
"""

from __future__ import annotations

import re

__all__ = ["extract_code", "defines", "humaneval_program", "mbpp_program", "pytest_program"]

_PYTHON_LANGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(?:def |async def |class |import |from |@)", re.MULTILINE)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block; an odd number of fences leaves the last one unclosed."""
    parts = text.split("```")
    blocks = []
    for inside in parts[1::2]:
        header, newline, body = inside.partition("\n")
        if not newline:  # a one-line block: ```x = 1```
            header, body = "", header
        blocks.append((header.strip().lower(), body))
    return blocks


def defines(code: str, name: str) -> bool:
    """Whether `code` defines function `name` at the top level."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _pick_block(blocks: list[tuple[str, str]], entry_point: str | None) -> str:
    python = [body for lang, body in blocks if lang in _PYTHON_LANGS] or [body for _, body in blocks]
    if entry_point:
        with_entry = [body for body in python if defines(body, entry_point)]
        if with_entry:
            return with_entry[0]
    with_defs = [body for body in python if _CODE_START.search(body)]
    return max(with_defs or python, key=len)


def _trim_prose(code: str) -> str:
    """Raw text: drop prose before the first top-level code line, and trailing prose that breaks parsing."""
    start = _CODE_START.search(code)
    if start is None:
        return code  # no top-level code line: e.g. a bare function body, keep as is
    lines = code[start.start():].rstrip().splitlines()
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        try:
            compile(candidate, "<model output>", "exec")
            return candidate
        except (SyntaxError, ValueError):
            continue
    return "\n".join(lines)


def extract_code(text: str | None, entry_point: str | None = None) -> str:
    """The code in a model output ('' when there is none). With `entry_point`, a fenced block that defines
    that function is preferred over other blocks."""
    if not text:
        return ""
    blocks = _fenced_blocks(text)
    if blocks:
        code = _pick_block(blocks, entry_point)
    else:
        code = text.split("[BEGIN]")[-1]
        code = _trim_prose(code.split("[DONE]")[0])
    code = code.split("[DONE]")[0]
    return "\n".join(line.rstrip() for line in code.strip("\n").splitlines())


def _as_body(code: str) -> str:
    """A function body to append to a HumanEval prompt, indented when the model dropped the indentation."""
    lines = code.strip("\n").splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [("    " + line) if line.strip() else line for line in lines]
    return "\n".join(lines)


def humaneval_program(prompt: str, code: str, test: str, entry_point: str) -> str:
    """Prompt + completion + the task's `check(entry_point)` tests.

    A full function is placed after the prompt, so that it replaces the docstring-only stub while the
    prompt's imports and helper functions stay available; a bare body is appended to the prompt.
    """
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    body = code if defines(code, entry_point) else _as_body(code)
    return f"{head}{body}\n\n\n{test}\n\ncheck({entry_point})\n"


def mbpp_program(code: str, tests: list[str], setup: str = "") -> str:
    """Solution + optional setup code + the task's assert lines."""
    return f"{code}\n\n{setup}\n\n" + "\n".join(tests) + "\n"


def pytest_program(code: str, test: str, module: str = "solution"):
    """KodCode style: the solution as `solution.py` and a pytest file that imports from it."""
    from tadllm.tasks.sandbox import Program

    test_file = f"test_{module}.py"
    # the star import makes tests that forgot `from solution import f` still see the solution
    tests = f"from {module} import *  # noqa: F401,F403\n{test}"
    return Program(files={f"{module}.py": code, test_file: tests}, test_file=test_file)
