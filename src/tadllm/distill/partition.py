"""The temporal partition of TAD (docs/method.md §3): which still-masked positions are *near* and which *distant*.

A trajectory is stored compactly as `tokens (L,)` and `reveal_step (L,)` (the 1-based step at which each
position was unmasked). At step `s` (0 <= s < S) the state is `x(s)_i = tokens[i] if reveal_step[i] <= s
else [MASK]` (`tadllm.trajectories.storage.state_at`). A position still masked at `s` has `r_i(s) = reveal_step[i] - s >= 1` steps left:
- near    `N_s = {i : 1 <= r_i(s) <= delta}`  (about to be decoded: hard CE on the trajectory token),
- distant `D_s = {i : r_i(s) > delta}`        (everything else still masked: KL to the teacher).
Already revealed positions (`r_i(s) <= 0`) belong to neither set.

Pure tensor functions, batched over the first dimension.
"""

from __future__ import annotations

import torch


def _remaining(reveal_step: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    if reveal_step.dim() != 2:
        raise ValueError(f"reveal_step must be (B, L), got shape {tuple(reveal_step.shape)}")
    step = torch.as_tensor(step, device=reveal_step.device)
    if step.dim() == 0:
        step = step.expand(reveal_step.shape[0])
    if step.shape != (reveal_step.shape[0],):
        raise ValueError(f"step must be (B,) with B={reveal_step.shape[0]}, got shape {tuple(step.shape)}")
    return reveal_step.long() - step.long()[:, None]


def check_delta(delta) -> int:
    """`delta` (the near horizon, in decoding steps) as an int; a ValueError unless it is a positive integer."""
    if isinstance(delta, bool) or delta is None or int(delta) != delta or delta <= 0:
        raise ValueError(f"delta (near horizon, in decoding steps) must be a positive integer, got {delta!r}")
    return int(delta)


def near_distant_masks(reveal_step: torch.Tensor, step: torch.Tensor, delta: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (B, L) masks `(near, distant)`: near = `1 <= reveal_step - s <= delta`, distant =
    `reveal_step - s > delta`. Positions revealed at or before `s` are in neither set."""
    delta = check_delta(delta)
    r = _remaining(reveal_step, step)
    near = (r >= 1) & (r <= delta)
    distant = r > delta
    return near, distant


def masked_at(reveal_step: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Boolean (B, L): positions still masked in x(s) (`reveal_step > s`)."""
    return _remaining(reveal_step, step) >= 1

