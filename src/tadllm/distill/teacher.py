"""The teacher of TAD training (docs/method.md §4): the base model inside a LoRA student, or a frozen copy.

- LoRA student: `as_teacher(peft_model)` switches the adapter off and every module to eval mode, and
  restores both exactly on exit: the same module gives the base weights, no second copy in memory.
- Full fine-tuning: `frozen_copy(model)`, a deep copy of the initial model, frozen and in eval mode.

`as_teacher` goes through peft's public `disable_adapter()` context. For the peft releases it was tested
with (`FAST_PATH_PEFT`) it sets the tuner layers' flags directly instead, which saves host time per training
step (benchmarks/RESULTS.md, "as_teacher"); tests/distill/test_teacher.py checks that both paths give the
same teacher logits and restore the same state.
"""

from __future__ import annotations

import contextlib
import copy

from torch import nn

# peft releases the direct path of `as_teacher` was tested with: [lowest, highest) as (major, minor).
FAST_PATH_PEFT = ((0, 21), (0, 22))


def peft_classes() -> tuple:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return ()
    return (PeftModel,)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with `requires_grad=False` in eval mode; of a peft model, its base weights
    without the adapter. (Not for DeepSpeed ZeRO-3 / FSDP-sharded models.)"""
    teacher = copy.deepcopy(model)
    if isinstance(teacher, peft_classes()):
        teacher = teacher.unload()  # the base weights without the (new) adapter
    return freeze(teacher)


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def fast_path_supported(version: str | None = None) -> bool:
    """Whether the installed peft (or `version`) is one `as_teacher`'s direct path was tested with."""
    if version is None:
        import peft

        version = peft.__version__
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = FAST_PATH_PEFT
    return low <= release < high


def teacher_parts(peft_model) -> tuple[list, list, bool]:
    """(every module, the adapter layers to switch off, whether the adapter is prompt learning) of a peft
    model, for `as_teacher`; computed once per model by the caller (a walk over every module)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    modules = list(peft_model.modules())
    config = peft_model.peft_config[peft_model.active_adapter]
    prompt_learning = bool(config.is_prompt_learning or getattr(config, "is_adaption_prompt", False))
    # tuner layers and peft's modules_to_save wrappers: what peft's own disable_adapter_layers() toggles
    layers = [] if prompt_learning else [m for m in modules if isinstance(m, BaseTunerLayer) or
                                          hasattr(m, "_disable_adapters")]
    return modules, layers, prompt_learning


@contextlib.contextmanager
def as_teacher(peft_model, parts: tuple | None = None, fast: bool | None = None):
    """The base model inside a peft model: adapters off and every module in eval mode, restored exactly on
    exit. `parts`: `teacher_parts(peft_model)`, cached by the caller. `fast`: None = the direct path when
    `fast_path_supported()` and the adapter is not prompt learning; False = peft's public API only."""
    modules, layers, prompt_learning = teacher_parts(peft_model) if parts is None else parts
    if fast is None:
        fast = fast_path_supported()
    context = _direct(modules, layers) if fast and not prompt_learning else _public(peft_model, modules)
    with context:
        yield


@contextlib.contextmanager
def _public(peft_model, modules: list):
    """peft's `disable_adapter()` context, with each module's training flag set and restored."""
    training = [m.training for m in modules]
    for m in modules:
        m.training = False  # what Module.eval() sets, one module at a time
    try:
        with peft_model.disable_adapter():
            yield
    finally:
        for m, flag in zip(modules, training):
            m.training = flag


@contextlib.contextmanager
def _direct(modules: list, layers: list):
    """The direct path: each tuner layer's `_disable_adapters` flag and each module's training flag set in
    its `__dict__`, skipping `disable_adapter()`'s per-call model-status walk, `enable_adapters`' toggling
    of `requires_grad` on every adapter weight and `nn.Module.__setattr__`."""
    training = [m.training for m in modules]
    disabled = [m._disable_adapters for m in layers]
    for m in modules:
        m.__dict__["training"] = False
    for m in layers:
        m._disable_adapters = True
    try:
        yield
    finally:
        for m, flag in zip(modules, training):
            m.__dict__["training"] = flag
        for m, flag in zip(layers, disabled):
            m._disable_adapters = flag
