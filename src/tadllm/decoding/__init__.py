"""Parallel decoding of masked-diffusion LMs: unmasking policies x block schedules, one batched loop."""

from .config import POLICIES, DecodeConfig
from .loop import DecodeOutput, count_tokens, generate

__all__ = ["DecodeConfig", "DecodeOutput", "POLICIES", "generate", "count_tokens"]
