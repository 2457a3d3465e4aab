"""Unmasking policies: which positions a decoding step reveals, and the registry of policies by name.

The math is pure functions that work on a batch at once (rows = samples, columns = generation positions;
no Python loop over samples): `propose` turns logits into candidates with their confidence and entropy, the
`select_*` functions pick positions. `active` marks positions that may be revealed this step, `forced` the
positions of which at least one must be revealed (the first unfinished block), so every forward makes progress.

A policy object (`FixedCount`, `Threshold`) wraps them for the decoding loop: it validates its options of a
`DecodeConfig`, owns its per-row state (the fixed-count bookkeeping) and selects from a `StepView`.
`POLICIES` maps each name to its object; `DecodeConfig`, the CLI's `--policy` choices and the loop read it,
so adding a policy is one object added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def propose(logits: torch.Tensor, mask_token_id: int, temperature: float = 0.0,
            generator: torch.Generator | None = None, noise: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate tokens with their confidence and entropy, from logits (B, W, V).

    The mask token is never proposed. With temperature > 0 the candidate is drawn by the Gumbel-max
    trick (equivalent to sampling softmax(logits / T)); confidence and entropy always use T = 1. The
    uniform numbers of the trick are `noise` (shaped like `logits`) when given, else drawn from `generator`.
    """
    logits = logits.float()
    logits[..., mask_token_id] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    if temperature > 0:
        u = noise if noise is not None else torch.rand(
            logits.shape, generator=generator,
            device=logits.device if generator is None else generator.device).to(logits.device)
        gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
        tokens = (logits / temperature + gumbel).argmax(dim=-1)
    else:
        tokens = logits.argmax(dim=-1)
    confidence = logp.gather(-1, tokens[..., None]).squeeze(-1).exp()
    probs = logp.exp()
    entropy = -(probs * logp.nan_to_num(neginf=0.0)).sum(-1)
    return tokens, confidence, entropy


def select_top_k(scores: torch.Tensor, active: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Reveal the k[b] highest-scoring active positions of each row (ties: lower index first)."""
    masked_scores = scores.masked_fill(~active, float("-inf"))
    order = torch.sort(masked_scores, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                              .expand_as(order))
    return active & (ranks < k[:, None])


def force_one(selected: torch.Tensor, scores: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """Where a row reveals nothing inside `forced`, add its best-scoring forced position."""
    need = forced.any(-1) & ~(selected & forced).any(-1)
    best = scores.masked_fill(~forced, float("-inf")).argmax(-1)
    # a comparison instead of indexing with `need` (or F.one_hot, which checks its input's range): both would
    # make the host wait for the device every step
    columns = torch.arange(selected.shape[-1], device=selected.device)
    extra = (columns[None, :] == best[:, None]) & need[:, None]
    return selected | extra


def select_passing(passing: torch.Tensor, scores: torch.Tensor, active: torch.Tensor, forced: torch.Tensor,
                   fallback_anywhere: bool = False) -> torch.Tensor:
    """The positions of `passing` (active positions that pass a threshold), plus the reference's two progress
    rules, best `scores` first:

    - with `fallback_anywhere` (multi-block decoding as d3LLM and the TAD release define it): a row where no
      position passes reveals its best position of the whole `active` region, which may lie in a later block;
    - then, if the `forced` region (the first block that still has masks) got no reveal, its best position
      is added too — so a multi-block step can reveal two tokens.

    With one active block (`active` == `forced`) both rules are the same single fallback.
    """
    if fallback_anywhere:
        passing = force_one(passing, scores, active)
    return force_one(passing, scores, forced)


def select_confidence(confidence: torch.Tensor, active: torch.Tensor, forced: torch.Tensor,
                      threshold: float, fallback_anywhere: bool = False) -> torch.Tensor:
    """Fast-dLLM: every active position with top-1 probability > threshold (`select_passing` for the rest)."""
    return select_passing(active & (confidence > threshold), confidence, active, forced, fallback_anywhere)


def select_entropy(entropy: torch.Tensor, active: torch.Tensor, forced: torch.Tensor,
                   threshold: float, fallback_anywhere: bool = False) -> torch.Tensor:
    """TAD / d3LLM: every active position with entropy < threshold, the lowest-entropy one(s) if none
    (`select_passing`)."""
    return select_passing(active & (entropy < threshold), -entropy, active, forced, fallback_anywhere)


# ------------------------------------------------------------------------------------ policy objects
@dataclass
class StepView:
    """What a policy sees of one decoding step: the step's rows (R) and generation columns lo..hi (W)."""

    confidence: torch.Tensor  # (R, W) top-1 probability of each candidate
    entropy: torch.Tensor  # (R, W) predictive entropy (nats)
    active: torch.Tensor  # (R, W) positions that may be revealed
    forced: torch.Tensor  # (R, W) at least one of these is revealed
    block: torch.Tensor  # (R,) each row's first block with masks
    rows: slice | torch.Tensor  # the step's rows among the batch's (indexes the per-row state)
    state: dict  # the policy's per-row state of the whole batch (`Policy.new_rows`), updated in place
    uniform: Callable[[], torch.Tensor]  # (R, W) uniform numbers, each row's from its own generator


class Policy:
    """An unmasking policy of the decoding loop (see `POLICIES`)."""

    name: str
    fixed_count = False  # reveals a fixed number of tokens per step (`steps`) instead of a threshold
    draws_random = False  # calls `view.uniform()`

    def validate(self, config) -> None:
        """Raise ValueError for options of `config` (a DecodeConfig) this policy cannot run; may fill defaults."""

    def new_rows(self, n: int, device) -> dict[str, torch.Tensor]:
        """The per-row state of `n` rows joining a batch (tensors of first dimension n)."""
        return {}

    def select(self, view: StepView, config) -> torch.Tensor:
        """(R, W) bool: the positions to reveal this step."""
        raise NotImplementedError


class FixedCount(Policy):
    """LLaDA's schedule: `config.steps` steps spread evenly over the blocks; in each, the k highest-scoring active
    positions, with k = the block's masked positions / its steps left. Scores: confidence, or uniform random
    numbers (`random_order`)."""

    fixed_count = True

    def __init__(self, name: str, random_order: bool = False):
        self.name, self.random_order, self.draws_random = name, random_order, random_order

    def validate(self, config) -> None:
        steps = config.gen_length if config.steps is None else config.steps
        if steps <= 0 or config.gen_length % steps:
            raise ValueError(f"steps {steps} must be > 0 and divide gen_length {config.gen_length}")
        if steps % config.num_blocks:
            raise ValueError(f"steps {steps} must be a multiple of the number of blocks {config.num_blocks} "
                             f"(gen_length {config.gen_length} / block_length {config.block_length})")
        config.steps = steps
        if config.multi_block:
            raise ValueError("multi_block decoding needs a threshold policy (confidence or entropy)")

    def new_rows(self, n: int, device) -> dict[str, torch.Tensor]:
        # the block each row's count refers to, and the steps it has spent in that block
        return {"current_block": torch.zeros(n, dtype=torch.long, device=device),
                "steps_in_block": torch.zeros(n, dtype=torch.long, device=device)}

    def select(self, view: StepView, config) -> torch.Tensor:
        rows, current, spent = view.rows, view.state["current_block"], view.state["steps_in_block"]
        new_block = view.block != current[rows]
        current[rows] = view.block
        spent[rows] = torch.where(new_block, 0, spent[rows])
        left_steps = (config.steps // config.num_blocks - spent[rows]).clamp_min(1)
        k = torch.ceil(view.active.sum(-1).float() / left_steps.float()).long().clamp_min(1)
        spent[rows] += 1
        scores = view.uniform() if self.random_order else view.confidence
        return select_top_k(scores, view.active, k)


class Threshold(Policy):
    """Every active position whose score passes `config.threshold`, with `select_passing`'s progress rules."""

    def __init__(self, name: str, select: Callable, score: str, valid: Callable[[float], bool], rule: str):
        self.name, self._select, self._score, self._valid, self._rule = name, select, score, valid, rule

    def validate(self, config) -> None:
        if config.threshold is None:
            raise ValueError(f"policy {self.name!r} needs a threshold")
        if not self._valid(config.threshold):
            raise ValueError(f"{self.name} threshold must be {self._rule}, got {config.threshold}")

    def select(self, view: StepView, config) -> torch.Tensor:
        # the reference's multi-block rule: a row with no passing token reveals its best one of the opened region
        anywhere = config.multi_block and config.multi_block_reveal == "opened"
        return self._select(getattr(view, self._score), view.active, view.forced, config.threshold, anywhere)


POLICIES: dict[str, Policy] = {p.name: p for p in (
    FixedCount("low_confidence"),
    FixedCount("random", random_order=True),
    Threshold("confidence", select_confidence, "confidence", lambda t: 0.0 < t <= 1.0, "in (0, 1]"),
    Threshold("entropy", select_entropy, "entropy", lambda t: t > 0.0, "> 0 (nats)"),
)}
