"""`generate`: batched masked-diffusion decoding of a list of prompts, with exact forward-pass accounting.

Prompts are sorted by length and decoded in batches of `batch_size` on a `DecodeState` (state.py): each batch
left-pads its prompts, appends `gen_length` mask tokens and steps until every row finished. A step runs one
forward over the rows that are not finished (forward.py: uncached, or the prefix / dual KV cache of
cache.py), proposes a token for each masked position, lets the policy (policies.py) choose the positions to
reveal within the block schedule (schedule.py) and writes them. Every generated position records the step at
which it was revealed (`reveal_step`, 1-based), so a run is also a compact trajectory; finished rows drop out
of the forward. Each row runs exactly one forward per step of its own, so `nfe` is exact with or without the
cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..models.family import ModelFamily
from .cache import check_cache_support
from .config import DecodeConfig
from .state import DecodeState, check_prompts, count_tokens, left_pad, max_positions  # noqa: F401 - re-exported


@dataclass
class DecodeOutput:
    tokens: torch.Tensor  # (B, L) generated tokens
    reveal_step: torch.Tensor  # (B, L) step at which each position was revealed (1-based)
    nfe: torch.Tensor  # (B,) forward passes spent on each sample
    num_tokens: torch.Tensor  # (B,) generated tokens before the first stop token
    wall_time: float  # seconds for the whole call

    @property
    def tpf(self) -> torch.Tensor:
        return self.num_tokens.float() / self.nfe.clamp_min(1).float()

    def __len__(self) -> int:
        return self.tokens.shape[0]


@torch.no_grad()
def generate(model, family: ModelFamily, prompts: list[list[int]], config: DecodeConfig,
             batch_size: int | None = None, on_step=None, progress=None) -> DecodeOutput:
    """Decode `prompts` (token id lists of any lengths). Batches of `batch_size` (all at once if None),
    shortest prompts grouped together; outputs are in the input order. The batch starting at sorted position
    i draws its random numbers (sampling, the random policy) from one generator seeded `config.seed + i`
    (`DecodeState`'s `batch_seed`: the numbers tadllm has always drawn, so recorded results reproduce).

    `on_step(step, tokens, revealed, indices)` is called after every step with the batch's generated
    region; `indices` are the input positions of the batch's rows (for live display and replay tests).
    `progress` is an optional callable taking the number of finished samples, for progress bars.
    """
    config.validate()
    check_prompts(prompts, model, config)
    check_cache_support(model, family, config.use_cache)
    start = time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    size = batch_size or len(prompts)
    n, L = len(prompts), config.gen_length
    device = next(model.parameters()).device
    tokens = torch.empty(n, L, dtype=torch.long, device=device)
    reveal = torch.empty(n, L, dtype=torch.long, device=device)
    nfe = torch.empty(n, dtype=torch.long, device=device)
    for lo in range(0, n, size):
        idx = order[lo:lo + size]
        state = _decode_batch(model, family, config, [prompts[i] for i in idx], lo, on_step, idx)
        where = torch.as_tensor(idx, device=device)
        tokens[where], reveal[where], nfe[where] = state.canvas, state.reveal, state.nfe
        if progress is not None:
            progress(len(idx))
    return DecodeOutput(tokens.cpu(), reveal.cpu(), nfe.cpu(), count_tokens(tokens, family.stop_token_ids).cpu(),
                        time.perf_counter() - start)


def _decode_batch(model, family, config, prompts, first_seed_index, on_step, idx) -> DecodeState:
    """One batch decoded to the end on a fresh state (its rows in the order of `prompts`)."""
    state = DecodeState(model, family, config, batch_seed=config.seed + first_seed_index)
    state.add(prompts)
    step = 0
    while state.num_live:
        state.step()
        step += 1
        if on_step is not None:
            canvas = state.canvas
            on_step(step, canvas.clone(), canvas != family.mask_token_id, idx)
    return state
