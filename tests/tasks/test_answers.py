import threading

import pytest

from tadllm.tasks import get_task
from tadllm.tasks.answers import answers_match, extract_answer, extract_number, last_boxed, parse_number
from tadllm.tasks.base import Example

# ------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("text, expected", [
    ("Adding them up gives $16 + 2 = 18$, so the answer is $\\boxed{18}$.", "18"),
    ("So $x = \\boxed{\\frac{\\sqrt{3}}{2}}$ is the value.", "\\frac{\\sqrt{3}}{2}"),  # nested braces
    ("First guess \\boxed{3}. Correction: \\boxed{5}", "5"),  # the last one counts
    ("\\boxed{\\boxed{7}}", "7"),
    ("The set is \\boxed{\\{1, 2\\}}.", "\\{1, 2\\}"),
    ("Total is \\boxed{1,234} dollars.", "1,234"),
    ("\\fbox{12}", "12"),
    ("Janet has 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "18"),
    ("#### 1,000\nsome trailing text", "1,000"),
    ("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.", "-\\frac{2}{3}"),
    ("Final Answer: The final answer is $\\$18.50$. I hope it is correct.", "\\$18.50"),
    ("The final answer is: 42.", "42"),
    ("She ends with 20 - 25 = -5 degrees. The answer is -5.", "-5"),
    ("It costs 3,500 dollars in total.", "3,500"),
    ("The ratio is 3/4.", "3/4"),
    ("Half of it is .5", ".5"),
    ("unfinished \\boxed{12", "12"),  # truncated box: fall back to the last number
    ("no numbers at all", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_last_boxed_and_numbers():
    assert last_boxed("a \\boxed{x^{2}+1} b") == "x^{2}+1"
    assert last_boxed("nothing") is None
    assert last_boxed("\\boxed 5") == "5"
    assert extract_number("from 3 to -7.5 and 2,000") == "2,000"
    assert parse_number("$1,234.50") == parse_number("1234.5")
    assert parse_number("\\frac{1}{2}") is None


# ------------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("pred, gold", [
    ("18", "18"),
    ("1,234", "1234"),
    ("$18", "18"),
    ("\\$18.00", "18"),
    ("18 dollars", "18"),
    ("18 \\text{ dollars}", "18"),
    ("3/4", "0.75"),
    ("\\frac{3}{4}", "0.75"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("-5", "-5"),
    ("\u22125", "-5"),  # unicode minus
    ("0.333333", "1/3"),
    ("x = 5", "5"),
    ("[2,5)", "[2, 5)"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("18.", "18"),
])
def test_equivalent(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize("pred, gold", [
    ("-5", "5"),
    ("1000001", "1000000"),
    ("17", "18"),
    ("2x", "2"),
    ("0.7", "0.75"),
    ("\\frac{2}{3}", "-\\frac{2}{3}"),
    (None, "18"),
    ("", "18"),
    ("x" * 1000, "18"),
])
def test_not_equivalent(pred, gold):
    assert not answers_match(pred, gold)


def test_math_verify_works_off_the_main_thread():
    # math-verify's signal-based timeout raises outside the main thread unless it is switched off
    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match("\\frac{3}{4}", "0.75")))
    worker.start()
    worker.join()
    assert results == [True]


# ------------------------------------------------------------------------- task-level verifiers


def _ex(answer):
    return Example(id="t", question="q", reference="r", answer=answer)


def test_gsm8k_is_correct_on_realistic_outputs():
    task = get_task("gsm8k")
    ex = _ex("1234")
    assert task.is_correct("Step 1 ... so she pays $1,234 in total.\nThe answer is \\boxed{1,234}.", ex)
    assert task.is_correct("... therefore 1234.\n#### 1,234", ex)
    assert task.is_correct("Thus the final total is 1234 dollars.", ex)
    assert not task.is_correct("\\boxed{1235}", ex)
    assert not task.is_correct("I cannot solve this.", ex)
    assert task.score_batch(["\\boxed{1234}", "\\boxed{1}"], [ex, ex]) == [True, False]
    with pytest.raises(ValueError):
        task.score_batch(["a"], [ex, ex])


def test_math_is_correct_minerva_style_and_stops_at_next_problem():
    task = get_task("math")
    ex = _ex("-\\frac{2}{3}")
    out = ("We get $b = -\\frac{3}{2}a$.\nFinal Answer: The final answer is $-\\frac{2}{3}$. "
           "I hope it is correct.\n\nProblem:\nWhat is $1+1$?\n\nSolution:\n$\\boxed{2}$")
    assert task.extract_answer(out) == "-\\frac{2}{3}"
    assert task.is_correct(out, ex)
    assert task.is_correct("so $\\frac{a}{b} = \\boxed{-\\dfrac{2}{3}}$", ex)
    assert not task.is_correct("\\boxed{\\frac{2}{3}}", ex)
