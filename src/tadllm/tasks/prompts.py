"""Prompt texts of the tasks: the evaluation prompts of the release and the teacher (privileged) templates.

- GSM8K: 0-shot chain of thought with a `\\boxed{}` final answer.
- MATH: Minerva 4-shot (`Problem:` / `Solution:` / `Final Answer: The final answer is $X$. I hope it is
  correct.`); the four few-shot problems are the standard Minerva ones, solutions written here.
- HumanEval: 0-shot, complete the function.
- MBPP: 3-shot in the standard `[BEGIN]` / `[DONE]` format; the shots are the standard prompt-split
  tasks 2, 3 and 4, with solutions written here.
- Privileged templates (docs/method.md §2): `{question}` and `{reference}` are the only fields.
"""

from __future__ import annotations

__all__ = [
    "MATH_PRIVILEGED_TEMPLATE",
    "CODE_PRIVILEGED_TEMPLATE",
    "GSM8K_INSTRUCTION",
    "MINERVA_SHOTS",
    "MBPP_SHOTS",
    "gsm8k_prompt",
    "minerva_prompt",
    "humaneval_prompt",
    "mbpp_prompt",
    "code_prompt",
]

MATH_PRIVILEGED_TEMPLATE = (
    "Question: {question}\n"
    "Reference Answer: {reference}\n"
    "After understanding the reference answer, please try to solve this problem using your own approach "
    "below and output a detailed solution process:"
)

CODE_PRIVILEGED_TEMPLATE = (
    "Question: {question}\n"
    "Reference Answer: {reference}\n"
    "After understanding the reference answer, please try to solve this problem using your own approach "
    "below and output only the solution code:"
)

GSM8K_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def gsm8k_prompt(question: str) -> str:
    return f"{question}\n{GSM8K_INSTRUCTION}"


# (problem, solution, final answer): the four standard Minerva shots, solutions in our own words.
MINERVA_SHOTS: tuple[tuple[str, str, str], ...] = (
    (
        "Find the domain of the expression $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.",
        "Both square roots need non-negative arguments, so $x-2\\ge 0$ and $5-x\\ge 0$, that is "
        "$2\\le x\\le 5$. The denominator must also be nonzero, which excludes $x=5$. "
        "So the domain is $\\boxed{[2,5)}$.",
        "[2,5)",
    ),
    (
        "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
        "$\\det (\\mathbf{A} \\mathbf{B}).$",
        "The determinant of a product is the product of the determinants: "
        "$\\det(\\mathbf{A}\\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B})"
        " = 2\\cdot 12 = \\boxed{24}$.",
        "24",
    ),
    (
        "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, "
        "how many times must Terrell lift them in order to lift the same total weight?",
        "Twelve lifts of two 20-pound weights move $12\\cdot 2\\cdot 20 = 480$ pounds. One lift of two "
        "15-pound weights moves $30$ pounds, so he needs $480/30 = \\boxed{16}$ lifts.",
        "16",
    ),
    (
        "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a "
        "solution $(x, y)$ where $x$ and $y$ are both nonzero, find $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "The left side of the second equation is $-\\frac{3}{2}$ times the left side of the first: "
        "$6y-9x=-\\frac{3}{2}(6x-4y)$. Hence $b=-\\frac{3}{2}a$, and $\\frac{a}{b}=\\boxed{-\\frac{2}{3}}$.",
        "-\\frac{2}{3}",
    ),
)


def _minerva_block(problem: str, solution: str | None = None, answer: str | None = None) -> str:
    if solution is None:
        return f"Problem:\n{problem}\n\nSolution:"
    return (f"Problem:\n{problem}\n\nSolution:\n{solution}\n"
            f"Final Answer: The final answer is ${answer}$. I hope it is correct.")


def minerva_prompt(problem: str, num_shots: int = 4) -> str:
    shots = [_minerva_block(*shot) for shot in MINERVA_SHOTS[:num_shots]]
    return "\n\n".join(shots + [_minerva_block(problem)])


def humaneval_prompt(prompt: str) -> str:
    return (
        "Complete the following Python function. Reply with the complete function, signature included, "
        f"in a single ```python code block.\n\n```python\n{prompt.rstrip()}\n```"
    )


# (task text, tests, solution): standard MBPP prompt-split tasks 2, 3 and 4; solutions written here.
MBPP_SHOTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "Write a function to find the similar elements from the given two tuple lists.",
        (
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ),
        "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))",
    ),
    (
        "Write a python function to identify non-prime numbers.",
        (
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ),
        "def is_not_prime(n):\n    if n < 2:\n        return True\n"
        "    return any(n % d == 0 for d in range(2, int(n ** 0.5) + 1))",
    ),
    (
        "Write a function to find the largest integers from a given list of numbers using heap queue "
        "algorithm.",
        (
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65]",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75]",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ),
        "import heapq\n\ndef heap_queue_largest(nums, n):\n    return heapq.nlargest(n, nums)",
    ),
)


def _mbpp_block(text: str, tests: tuple[str, ...] | list[str], code: str | None = None) -> str:
    head = (f"You are an expert Python programmer, and here is your task: {text} "
            "Your code should pass these tests:\n\n" + "\n".join(tests) + "\n[BEGIN]\n")
    return head if code is None else f"{head}{code}\n[DONE]"


def mbpp_prompt(text: str, tests: list[str], num_shots: int = 3) -> str:
    shots = [_mbpp_block(*shot) for shot in MBPP_SHOTS[:num_shots]]
    return "\n\n".join(shots + [_mbpp_block(text, tests)])


def code_prompt(question: str) -> str:
    """0-shot prompt for free-form code questions (KodCode)."""
    return (f"{question.rstrip()}\n\n"
            "Write the solution in Python and reply with the code in a single ```python code block.")
