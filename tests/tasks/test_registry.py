import pytest

import tadllm.tasks as tasks
from tadllm.tasks import Task, available_tasks, get_task, register_task


def test_builtin_tasks_are_registered():
    assert {"gsm8k", "math", "humaneval", "mbpp", "kodcode", "arith"} <= set(available_tasks())
    for name, kind in [("gsm8k", "math"), ("math", "math"), ("humaneval", "code"), ("mbpp", "code"),
                       ("kodcode", "code")]:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and task.kind == kind
    assert get_task("GSM8K").name == "gsm8k"


def test_arith_is_lazy_and_resolves():
    assert tasks._REGISTRY["arith"] == "tadllm.tasks.arith:ArithTask"
    assert get_task("arith").name == "arith"


def test_kwargs_reach_the_constructor():
    assert get_task("humaneval", timeout=3.0).timeout == 3.0
    assert get_task("mbpp", num_shots=1).num_shots == 1


def test_register_and_unknown(monkeypatch):
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))

    @register_task("toy")
    class Toy(Task):
        name = "toy"

    assert isinstance(get_task("toy"), Toy)
    with pytest.raises(ValueError):
        register_task("toy", Toy)
    register_task("toy", "tadllm.tasks.gsm8k:GSM8KTask", overwrite=True)
    assert get_task("toy").name == "gsm8k"
    with pytest.raises(KeyError, match="known tasks"):
        get_task("nope")
