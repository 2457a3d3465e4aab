"""Parallel decoding of masked-diffusion LMs: unmasking policies x block schedules, one batched loop.

`generate` decodes a list of prompts; `DecodeState` is the step-by-step engine under it (rows admitted and
removed between steps, for serving)."""

from .config import DecodeConfig
from .loop import DecodeOutput, count_tokens, generate
from .policies import POLICIES
from .state import DecodeState, RowResult

__all__ = ["DecodeConfig", "DecodeOutput", "DecodeState", "RowResult", "POLICIES", "generate", "count_tokens"]
