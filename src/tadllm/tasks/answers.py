"""Final-answer extraction and equivalence for the math tasks.

Extraction, in order: the last complete `\\boxed{...}` (nested braces handled), the last `#### ...`, the
Minerva `The final answer is $...$`, then the last number in the text.
Equivalence: a fast exact / numeric check first (thousands commas, `$` signs, percent signs, `a/b`
fractions, decimals, trailing unit words), then math-verify (`parse` + `verify`) for everything symbolic.
math-verify is imported on first use; its signal-based timeouts only work in the main thread, so off the
main thread they are switched off (answers are length-capped instead).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

__all__ = ["last_boxed", "extract_answer", "extract_number", "parse_number", "answers_match",
           "math_verify_equal"]

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed\s+([^\s${}]+)")  # `\boxed 5`
_HASHES = re.compile(r"####\s*([^\n]*)")
_FINAL = re.compile(r"final answer is\s*:?\s*(?:\$((?:\\\$|[^$])+)\$|([^\n]+))", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d,])")
_PLAIN_NUMBER = re.compile(
    r"(?P<num>-?(?:\d+(?:\.\d*)?|\.\d+))(?:\s*/\s*(?P<den>\d+))?"
    r"(?:\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+)*)?"  # trailing unit words: "18 dollars", "3 square feet"
)
_MAX_VERIFY_CHARS = 400  # longer "answers" are garbage; also bounds sympy time when timeouts are off


def _balanced(text: str, start: int) -> str | None:
    """Content from `start` (just after an opening brace) to its matching close brace, or None."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), else None."""
    for m in reversed(list(_BOX_OPEN.finditer(text))):
        content = _balanced(text, m.end())
        if content is not None:
            return content.strip()
    bare = _BOX_BARE.findall(text)
    return bare[-1] if bare else None


def extract_number(text: str) -> str | None:
    """The last number in `text` (`-3`, `1,234.5`, `3/4`, `.5`), else None."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def _clean(answer: str) -> str:
    answer = answer.strip().replace("\u2212", "-")  # unicode minus
    while len(answer) > 1 and answer[0] == "$" and answer[-1] == "$":
        answer = answer[1:-1].strip()
    return answer.rstrip(".").strip()


def extract_answer(text: str | None) -> str | None:
    """Final answer of a model output: `\\boxed{}` -> `####` -> `final answer is` -> last number."""
    if not text:
        return None
    for candidate in (last_boxed(text), _after_hashes(text), _final_answer(text)):
        if candidate is not None and _clean(candidate):
            return _clean(candidate)
    return extract_number(text)


def _after_hashes(text: str) -> str | None:
    found = _HASHES.findall(text)
    return found[-1] if found else None


def _final_answer(text: str) -> str | None:
    found = _FINAL.findall(text)
    if not found:
        return None
    dollars, rest = found[-1]
    if dollars:
        return dollars
    return re.split(r"\.\s|\.$|\. I hope", rest)[0]


def parse_number(answer: str) -> Fraction | None:
    """An answer that is a plain number (after dropping `$`, `%`, thousands commas and unit words)."""
    s = _clean(answer)
    for junk in ("\\$", "$", "\\%", "%", "\\!", "{,}"):
        s = s.replace(junk, "" if junk != "{,}" else ",")
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s.strip()).rstrip(".").strip()
    m = _PLAIN_NUMBER.fullmatch(s)
    if not m:
        return None
    value = Fraction(m.group("num"))
    den = m.group("den")
    if den is not None:
        if int(den) == 0:
            return None
        value /= int(den)
    return value


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    return round(float(a), 6) == round(float(b), 6)  # same float rounding as math-verify


def answers_match(prediction: str | None, gold: str | None) -> bool:
    """Whether a predicted final answer equals the gold one."""
    if prediction is None or gold is None:
        return False
    pred, ref = _clean(str(prediction)), _clean(str(gold))
    if not pred or not ref:
        return False
    if pred == ref:
        return True
    pred_num, ref_num = parse_number(pred), parse_number(ref)
    if pred_num is not None and ref_num is not None:
        return _numbers_equal(pred_num, ref_num)
    return math_verify_equal(pred, ref)


def math_verify_equal(prediction: str, gold: str) -> bool:
    """math-verify's verdict on two LaTeX answers; False on any parsing problem."""
    if len(prediction) > _MAX_VERIFY_CHARS or len(gold) > _MAX_VERIFY_CHARS:
        return False
    from math_verify import parse, verify  # lazy: a slow import that only math answers need

    # signal.alarm-based timeouts raise outside the main thread; there we run without them
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${prediction}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises on odd inputs and on timeouts: not equal
        return False
