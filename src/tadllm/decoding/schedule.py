"""Block schedules: which masked positions may be revealed in a step.

Semi-autoregressive decoding activates only the first block that still has masks. Multi-block
(pipelined, d3LLM-style) decoding keeps per-row state: blocks open one at a time once the last opened
block is `block_add_threshold` decoded (or complete), and an opened block becomes fully active once its
predecessor is `decoded_token_threshold` decoded. Which opened blocks may reveal tokens (`reveal`):

- `opened` (the reference's rule: d3LLM and the TAD release): every opened block, semi-activated ones
  included;
- `activated` (an earlier tadllm rule, kept as an option): only fully active blocks.

In both schedules the forced region (at least one reveal) is the first block that still has masks, which
is always fully active. Everything is vectorised over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BlockState:
    """Per-row multi-block state: number of opened blocks and which blocks are fully active."""

    opened: torch.Tensor  # (B,) long, blocks [0, opened) are open
    full: torch.Tensor  # (B, num_blocks) bool

    @classmethod
    def start(cls, batch: int, num_blocks: int, device) -> "BlockState":
        full = torch.zeros(batch, num_blocks, dtype=torch.bool, device=device)
        full[:, 0] = True
        return cls(torch.ones(batch, dtype=torch.long, device=device), full)


def decoded_fraction(masked: torch.Tensor, block_length: int) -> torch.Tensor:
    """(B, num_blocks) fraction of each block already revealed."""
    B, L = masked.shape
    return 1.0 - masked.view(B, L // block_length, block_length).float().mean(-1)


def first_unfinished_block(masked: torch.Tensor, block_length: int) -> torch.Tensor:
    """(B,) index of the first block with a masked position (num_blocks when none is left)."""
    B, L = masked.shape
    has_mask = masked.view(B, L // block_length, block_length).any(-1)
    nb = has_mask.shape[1]
    idx = torch.arange(nb, device=masked.device).expand(B, nb)
    return torch.where(has_mask, idx, nb).min(-1).values


def semi_ar_regions(masked: torch.Tensor, block_length: int,
                    current: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(active, forced): both the masked positions of the first unfinished block (`current`, when the caller
    has it already: `first_unfinished_block(masked, block_length)`)."""
    block_of = torch.arange(masked.shape[1], device=masked.device) // block_length
    if current is None:
        current = first_unfinished_block(masked, block_length)
    active = masked & (block_of[None, :] == current[:, None])
    return active, active


def multi_block_regions(masked: torch.Tensor, block_length: int, state: BlockState, add_threshold: float,
                        activate_threshold: float, current: torch.Tensor | None = None, reveal: str = "opened"
                        ) -> tuple[torch.Tensor, torch.Tensor, BlockState]:
    """(active, forced, new_state) for pipelined decoding; `state` is updated out of place. `current`: the
    caller's `first_unfinished_block(masked, block_length)`, computed here when None. `reveal`: `opened`
    (every opened block is active) or `activated` (fully active blocks only)."""
    B, L = masked.shape
    nb = L // block_length
    frac = decoded_fraction(masked, block_length)
    if current is None:
        current = first_unfinished_block(masked, block_length)
    current = current.clamp_max(nb - 1)
    opened = torch.maximum(state.opened, current + 1)
    last = (opened - 1).clamp_min(0)
    can_open = (frac.gather(1, last[:, None]).squeeze(1) >= add_threshold) & (opened < nb)
    opened = opened + can_open.long()
    block_idx = torch.arange(nb, device=masked.device)
    is_open = block_idx[None, :] < opened[:, None]
    prev_ok = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=masked.device),
                         frac[:, :-1] >= activate_threshold], dim=1)
    full = state.full | (is_open & prev_ok)
    block_of = torch.arange(L, device=masked.device) // block_length
    active = masked & (is_open if reveal == "opened" else full)[:, block_of]
    forced = masked & (block_of[None, :] == current[:, None])
    return active, forced, BlockState(opened, full)
