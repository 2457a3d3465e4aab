"""Datasets, prompts and verifiers of the benchmark tasks, and a registry to get them by name.

`get_task(name, **kwargs)` returns a new task instance: `gsm8k`, `math` (MATH, Minerva 4-shot),
`humaneval`, `mbpp`, `kodcode` (code with tests, for trajectories) and `arith` (the testbed's synthetic
task, `tadllm.tasks.arith`). Tasks are registered as `"module:Class"` strings and imported on first use,
so that `import tadllm.tasks` stays cheap and a task module's import errors only affect that task.
See docs/tasks.md.
"""

from __future__ import annotations

import importlib
from typing import Callable, Union

from tadllm.tasks.base import CodeTaskBase, Example, MathTaskBase, Task

__all__ = ["Example", "Task", "MathTaskBase", "CodeTaskBase", "get_task", "register_task", "available_tasks"]

TaskFactory = Union[str, Callable[..., Task]]

_REGISTRY: dict[str, TaskFactory] = {
    "gsm8k": "tadllm.tasks.gsm8k:GSM8KTask",
    "math": "tadllm.tasks.math_task:MATHTask",
    "humaneval": "tadllm.tasks.humaneval:HumanEvalTask",
    "mbpp": "tadllm.tasks.mbpp:MBPPTask",
    "kodcode": "tadllm.tasks.kodcode:KodCodeTask",
    "arith": "tadllm.tasks.arith:ArithTask",
}


def register_task(name: str, factory: TaskFactory | None = None, *, overwrite: bool = False):
    """Register a task class / factory (or a lazy `"module:attr"` string) under `name`.
    Without `factory`, returns a class decorator: `@register_task("mytask")`."""
    if factory is None:
        def decorator(obj):
            register_task(name, obj, overwrite=overwrite)
            return obj
        return decorator
    key = name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[key] = factory
    return factory


def available_tasks() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(factory: TaskFactory) -> Callable[..., Task]:
    if not isinstance(factory, str):
        return factory
    module_name, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def get_task(name: str, **kwargs) -> Task:
    """A new instance of the task registered as `name` (case-insensitive); kwargs go to its constructor."""
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    return _resolve(_REGISTRY[key])(**kwargs)
