import pytest

from tadllm.tasks import get_task
from tadllm.tasks.base import Example, fill_template
from tadllm.tasks.prompts import MBPP_SHOTS, MINERVA_SHOTS


def _math_ex():
    return Example(id="1", question="What is $\\{1,2\\}$ with {braces}?", reference="It is \\boxed{3}.", answer="3")


def test_gsm8k_prompt_is_zero_shot_boxed():
    text = get_task("gsm8k").user_prompt(_math_ex())
    assert text.startswith(_math_ex().question)
    assert text.endswith("Please reason step by step, and put your final answer within \\boxed{}.")


def test_math_prompt_is_minerva_four_shot():
    text = get_task("math").user_prompt(_math_ex())
    assert text.count("Problem:\n") == 5 and text.count("Solution:") == 5
    assert text.count("Final Answer: The final answer is $") == 4
    assert text.count("I hope it is correct.") == 4
    assert text.endswith(f"Problem:\n{_math_ex().question}\n\nSolution:")
    for problem, _, answer in MINERVA_SHOTS:
        assert problem in text and f"The final answer is ${answer}$" in text
    assert get_task("math", num_shots=0).user_prompt(_math_ex()) == f"Problem:\n{_math_ex().question}\n\nSolution:"
    with pytest.raises(ValueError):
        get_task("math", num_shots=5)


def test_minerva_and_mbpp_shots_are_correct():
    from tadllm.tasks.answers import answers_match, last_boxed

    for _, solution, answer in MINERVA_SHOTS:
        assert answers_match(last_boxed(solution), answer)
    for _, tests, code in MBPP_SHOTS:  # the shots' solutions pass their own tests
        scope = {}
        exec(code + "\n" + "\n".join(tests), scope)


def test_humaneval_prompt_asks_to_complete_the_function():
    ex = Example(id="HumanEval/0", question="def inc(x):\n    \"\"\"Add one.\"\"\"\n", reference="", answer="",
                 meta={"entry_point": "inc"})
    text = get_task("humaneval").user_prompt(ex)
    assert "Complete the following Python function" in text and ex.question.rstrip() in text
    assert "```python" in text


def test_mbpp_prompt_is_three_shot():
    ex = Example(id="11", question="Write a function to add two numbers.", reference="", answer="",
                 meta={"test_list": ["assert add(1, 2) == 3"], "entry_point": "add"})
    text = get_task("mbpp").user_prompt(ex)
    assert text.count("You are an expert Python programmer") == 4
    assert text.count("[DONE]") == 3
    assert text.endswith("Write a function to add two numbers. Your code should pass these tests:\n\n"
                         "assert add(1, 2) == 3\n[BEGIN]\n")
    for task_text, tests, _ in MBPP_SHOTS:
        assert task_text in text and tests[0] in text


def test_privileged_prompts():
    ex = _math_ex()
    text = get_task("gsm8k").privileged_prompt(ex)
    assert text == (f"Question: {ex.question}\nReference Answer: {ex.reference}\nAfter understanding the "
                    "reference answer, please try to solve this problem using your own approach below and output "
                    "a detailed solution process:")
    code_ex = Example(id="k", question="Write add(a, b).", reference="def add(a, b):\n    return a + b",
                      answer="", meta={})
    code_text = get_task("kodcode").privileged_prompt(code_ex)
    assert code_ex.reference in code_text and "only the solution code" in code_text
    # override: only {question} and {reference} are filled, other braces are left alone
    custom = get_task("math").privileged_prompt(ex, template="Q={question} | R={reference} | {other}")
    assert custom == f"Q={ex.question} | R={ex.reference} | {{other}}"
    # MBPP's teacher sees the tests (they name the function)
    mb = Example(id="11", question="Add two numbers.", reference="def add(a, b): ...", answer="assert add(1, 2) == 3",
                 meta={"test_list": ["assert add(1, 2) == 3"]})
    assert "assert add(1, 2) == 3" in get_task("mbpp").privileged_prompt(mb)


def test_fill_template_does_not_recurse():
    assert fill_template("{question}/{reference}", question="{reference}", reference="R") == "{reference}/R"
