"""Unmasking policies: pure functions from logits to the positions revealed in one step.

All functions work on a batch at once (rows = samples, columns = generation positions); no Python loop
over samples. `active` marks positions that may be revealed this step, `forced` the positions of which
at least one must be revealed (the first unfinished block), so every forward makes progress.
"""

from __future__ import annotations

import torch


def propose(logits: torch.Tensor, mask_token_id: int, temperature: float = 0.0,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate tokens with their confidence and entropy, from logits (B, W, V).

    The mask token is never proposed. With temperature > 0 the candidate is drawn by the Gumbel-max
    trick (equivalent to sampling softmax(logits / T)); confidence and entropy always use T = 1.
    """
    logits = logits.float()
    logits[..., mask_token_id] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    if temperature > 0:
        u = torch.rand(logits.shape, generator=generator, device=logits.device if generator is None else
                       generator.device).to(logits.device)
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
