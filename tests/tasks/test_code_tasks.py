import pytest

from tadllm.tasks import get_task
from tadllm.tasks.base import Example
from tadllm.tasks.code_utils import extract_code, humaneval_program

HE_PROMPT = (
    "from typing import List\n\n\n"
    "def _helper(x: int) -> int:\n    return x * 2\n\n\n"
    "def double_all(numbers: List[int]) -> List[int]:\n"
    "    \"\"\" Double every number.\n    >>> double_all([1, 2])\n    [2, 4]\n    \"\"\"\n"
)
HE_TEST = (
    "METADATA = {}\n\n\ndef check(candidate):\n"
    "    assert candidate([]) == []\n    assert candidate([1, 2, 3]) == [2, 4, 6]\n    assert candidate([-1]) == [-2]\n"
)
HE_EXAMPLE = Example(id="HumanEval/x", question=HE_PROMPT, reference=HE_PROMPT + "    return [_helper(n) for n in numbers]\n",
                     answer=HE_TEST, meta={"entry_point": "double_all"})

MBPP_EXAMPLE = Example(
    id="11", question="Write a python function to remove first and last occurrence of a given character from the string.",
    reference="", answer="", meta={
        "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"',
                      'assert remove_Occ("PHP","P") == "H"'],
        "test_setup_code": "", "entry_point": "remove_Occ"})
MBPP_EXAMPLE.answer = "\n".join(MBPP_EXAMPLE.meta["test_list"])


# ------------------------------------------------------------------------------------ extraction


def test_extract_fenced_python_block():
    text = "Here you go:\n```python\ndef f(x):\n    return x\n```\nThis returns x."
    assert extract_code(text) == "def f(x):\n    return x"


def test_extract_prefers_block_with_entry_point():
    text = ("```python\nimport math\n```\nand\n```python\ndef g():\n    pass\n```\n"
            "```python\ndef f(x):\n    return math.sqrt(x)\n```\n```bash\npython f.py\n```")
    assert extract_code(text, "f").startswith("def f(x)")
    assert "def g" in extract_code(text, "g")


def test_extract_unclosed_fence_from_truncated_output():
    text = "```python\ndef f(x):\n    return x + 1\n"
    assert extract_code(text) == "def f(x):\n    return x + 1"


def test_extract_raw_text_and_mbpp_markers():
    raw = "Sure! Here is the code:\ndef f(x):\n    return x\nThat is all, it returns x."
    assert extract_code(raw) == "def f(x):\n    return x"
    assert extract_code("def f(x):\n    return x\n[DONE]\nmore junk") == "def f(x):\n    return x"
    body = "    return [n * 2 for n in numbers]\n"
    assert extract_code(body) == body.rstrip("\n")
    assert extract_code("") == "" and extract_code(None) == ""


def test_humaneval_program_full_function_or_body():
    full = "def double_all(numbers):\n    return [_helper(n) for n in numbers]"
    prog = humaneval_program(HE_PROMPT, full, HE_TEST, "double_all")
    assert prog.startswith(HE_PROMPT) and prog.rstrip().endswith("check(double_all)")
    body = "    return [2 * n for n in numbers]"
    assert body in humaneval_program(HE_PROMPT, body, HE_TEST, "double_all")
    unindented = "return [2 * n for n in numbers]"
    assert "    " + unindented in humaneval_program(HE_PROMPT, unindented, HE_TEST, "double_all")


# ---------------------------------------------------------------------------------- end to end


def test_humaneval_end_to_end():
    task = get_task("humaneval", timeout=2.0, max_workers=4)
    outputs = [
        # full function in a fence, using the prompt's helper
        "```python\ndef double_all(numbers):\n    return [_helper(n) for n in numbers]\n```",
        # only the body, raw
        "    return [2 * n for n in numbers]\n",
        # the body without indentation, fenced
        "```python\nreturn [n + n for n in numbers]\n```",
        # wrong
        "```python\ndef double_all(numbers):\n    return numbers\n```",
        # hostile
        "```python\ndef double_all(numbers):\n    while True:\n        pass\n```",
        # no code at all
        "I don't know.",
    ]
    verdicts = task.score_batch(outputs, [HE_EXAMPLE] * len(outputs))
    assert verdicts == [True, True, True, False, False, False]
    assert task.is_correct(outputs[0], HE_EXAMPLE)
    results = task.run_batch(outputs[3:5], [HE_EXAMPLE] * 2)
    assert [r.status for r in results] == ["failed", "timeout"]


def test_humaneval_canonical_reference_passes():
    task = get_task("humaneval", timeout=5.0)
    assert task.is_correct(HE_EXAMPLE.reference, HE_EXAMPLE)


def test_mbpp_end_to_end():
    task = get_task("mbpp", timeout=5.0, max_workers=3)
    good = ("def remove_Occ(s, ch):\n    i = s.find(ch)\n    if i != -1:\n        s = s[:i] + s[i + 1:]\n"
            "    j = s.rfind(ch)\n    if j != -1:\n        s = s[:j] + s[j + 1:]\n    return s\n[DONE]")
    fenced_good = "```python\n" + good.replace("[DONE]", "") + "```"
    wrong = "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n[DONE]"
    assert task.score_batch([good, fenced_good, wrong], [MBPP_EXAMPLE] * 3) == [True, True, False]


def test_kodcode_end_to_end():
    task = get_task("kodcode", timeout=20.0)
    ex = Example(id="k1", question="Write add(a, b).", reference="def add(a, b):\n    return a + b\n",
                 answer="from solution import add\n\ndef test_add():\n    assert add(2, 3) == 5\n\n"
                        "def test_negative():\n    assert add(-1, -1) == -2\n",
                 meta={"entry_point": "add"})
    outputs = ["```python\ndef add(a, b):\n    return a + b\n```", "```python\ndef add(a, b):\n    return a * b\n```"]
    assert task.score_batch(outputs, [ex, ex]) == [True, False]


def test_score_batch_checks_lengths():
    with pytest.raises(ValueError):
        get_task("mbpp").score_batch(["a", "b"], [MBPP_EXAMPLE])
