"""Layers and initialisation the native model implementations (`llada`, `dream`) share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back before the affine weight, as in the reference."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm: the same fp32 x * rsqrt(mean(x^2) + eps), in one kernel where torch has one (was six)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


def init_weights(module: nn.Module, std: float) -> None:
    """The `_init_weights` of the native models: normal(0, std) weights for linear layers and embeddings, zero
    biases, a zero row for an embedding's padding index (if it has one), unit RMSNorm weights."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, RMSNorm):
        nn.init.ones_(module.weight)
