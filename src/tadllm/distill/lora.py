"""LoRA for the student: which linear layers get an adapter (never the output head), and applying it."""

from __future__ import annotations

import re

from torch import nn

from ..models.family import ModelFamily
from .config import TADConfig

def lora_target_modules(model: nn.Module, family: ModelFamily, requested: list[str] | None = None):
    """The LoRA `target_modules` for peft: the requested names (or the family default), never the output
    head. LLaDA names its head `ff_out` like the MLP's down projection, so when a short name would also hit
    the head, the targets become a regex that excludes it."""
    targets = list(requested) if requested else list(family.lora_target_modules)
    if not targets or targets == ["all-linear"]:
        return "all-linear"  # peft's own rule: every linear layer except the output head
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    linear = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}

    def hit(name: str) -> bool:
        return any(name == t or name.endswith("." + t) for t in targets)

    matched = [n for n in linear if hit(n)]
    if not matched:
        raise ValueError(f"LoRA targets {targets} match no linear layer of this {family.name!r} model; linear "
                         f"layer names end with {sorted({n.split('.')[-1] for n in linear})}")
    head_names = [n for n in matched if head is not None and linear[n] is head]
    if not head_names:
        return targets
    alternatives = "|".join(re.escape(t) for t in targets)
    exclude = "|".join(re.escape(n) for n in head_names)
    return rf"(?!(?:{exclude})$)(?:.*\.)?(?:{alternatives})"


def apply_lora(model: nn.Module, config: TADConfig, family: ModelFamily):
    from peft import LoraConfig, get_peft_model

    if config.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings + checkpointing still need input grads
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=lora_target_modules(model, family, config.lora_target_modules),
                      bias="none")
    return get_peft_model(model, lora)
