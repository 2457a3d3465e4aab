"""The decoding loop: batched masked-diffusion generation with exact forward-pass accounting.

`generate` left-pads the prompts, appends `gen_length` mask tokens and, step by step, runs one forward
pass over the rows that are not finished, proposes a token for each masked position (`policies.propose`),
chooses the positions to reveal (a block schedule composed with an unmasking policy) and writes them.
It records for every generated position the step at which it was revealed (`reveal_step`, 1-based), so a
run is also a compact trajectory. Finished rows drop out of the forward pass.

With `config.use_cache` = prefix / dual (native LLaDA only), the forward of a step goes through
`cache.BlockKVCache`: a full forward (refresh) when a row's current block changed, else a forward over the
current block to the end (prefix) or over the current window only (dual) against cached keys/values. Each row
still runs exactly one forward per step, so `nfe` is exact either way.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass

import torch

from ..models.family import ModelFamily, aligned_logits
from . import policies
from .cache import BlockKVCache, check_cache_support, scatter_window
from .config import DecodeConfig
from .schedule import BlockState, first_unfinished_block, multi_block_regions, semi_ar_regions


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


def max_positions(model) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_sequence_length", "max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def left_pad(seqs, pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) of id sequences (lists or 1-D tensors) left-padded to the longest one.
    Used for decoding prompts and for the training collators."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # building the batch, not the hot loop
        if len(s):
            ids[i, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def count_tokens(tokens: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """Generated tokens before the first stop token (the whole length when there is none)."""
    if not stop_ids:
        return torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
    is_stop = torch.isin(tokens, torch.as_tensor(stop_ids, device=tokens.device))
    first = torch.where(is_stop.any(-1), is_stop.float().argmax(-1), torch.tensor(tokens.shape[1],
                                                                                   device=tokens.device))
    return first.long()


def _finished_by_stop(tokens: torch.Tensor, revealed: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Rows with a revealed stop token whose every earlier position is revealed (`stop_ids` on the tokens'
    device: copying a list there every step would make the host wait for the GPU)."""
    is_stop = torch.isin(tokens, stop_ids) & revealed
    hidden_before = (~revealed).long().cumsum(-1)
    return (is_stop & (hidden_before == 0)).any(-1)


def _check_prompts(prompts, model, config: DecodeConfig) -> None:
    if not prompts:
        raise ValueError("no prompts to decode")
    limit = max_positions(model)
    longest = max(len(p) for p in prompts)
    if limit is not None and longest + config.gen_length > limit:
        raise ValueError(f"prompt of {longest} tokens + gen_length {config.gen_length} exceeds the model's "
                         f"maximum sequence length {limit}; shorten the prompt or lower gen_length")


@torch.no_grad()
def generate(model, family: ModelFamily, prompts: list[list[int]], config: DecodeConfig,
             batch_size: int | None = None, on_step=None, progress=None) -> DecodeOutput:
    """Decode `prompts` (token id lists of any lengths). Batches of `batch_size` (all at once if None),
    shortest prompts grouped together; outputs are in the input order.

    `on_step(step, tokens, revealed, indices)` is called after every step with the batch's generated
    region; `indices` are the input positions of the batch's rows (for live display and replay tests).
    `progress` is an optional callable taking the number of finished samples, for progress bars.
    """
    config.validate()
    _check_prompts(prompts, model, config)
    check_cache_support(model, family, config.use_cache)
    start = time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    size = batch_size or len(prompts)
    parts = []
    for lo in range(0, len(order), size):
        idx = order[lo:lo + size]
        callback = None if on_step is None else (lambda s, t, r, idx=idx: on_step(s, t, r, idx))
        parts.append((idx, _generate_batch(model, family, [prompts[i] for i in idx], config, callback,
                                           seed=config.seed + lo)))
        if progress is not None:
            progress(len(idx))
    n, L = len(prompts), config.gen_length
    device = parts[0][1][0].device
    tokens = torch.empty(n, L, dtype=torch.long, device=device)
    reveal = torch.empty(n, L, dtype=torch.long, device=device)
    nfe = torch.empty(n, dtype=torch.long, device=device)
    for idx, (t, r, f) in parts:
        where = torch.as_tensor(idx, device=device)
        tokens[where], reveal[where], nfe[where] = t, r, f
    return DecodeOutput(tokens.cpu(), reveal.cpu(), nfe.cpu(), count_tokens(tokens, family.stop_token_ids).cpu(),
                        time.perf_counter() - start)


def _generate_batch(model, family: ModelFamily, prompts, config: DecodeConfig, on_step, seed: int):
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompts, family.fill_token_id, device)
    B, P = prompt_ids.shape
    L, bl = config.gen_length, config.block_length
    x = torch.cat([prompt_ids, torch.full((B, L), family.mask_token_id, dtype=torch.long, device=device)], 1)
    attn = torch.cat([prompt_mask, torch.ones(B, L, dtype=torch.long, device=device)], 1)
    positions = (attn.cumsum(-1) - 1).clamp_min(0) if family.supports_position_ids else None
    # Without padding no mask is passed, so attention can take its fastest kernel and the model needs
    # no per-step check of the mask (a host sync).
    padded = bool((prompt_mask == 0).any())

    head_on_slice = family.supports_logits_range and "logits_range" in inspect.signature(model.forward).parameters
    reveal = torch.zeros(B, L, dtype=torch.long, device=device)
    nfe = torch.zeros(B, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    steps_in_block = torch.zeros(B, dtype=torch.long, device=device)
    current_block = torch.zeros(B, dtype=torch.long, device=device)
    block_state = BlockState.start(B, config.num_blocks, device)
    steps_per_block = (config.steps // config.num_blocks) if config.steps else None
    # the reference's multi-block rule: a row with no passing token reveals its best one of the opened region
    fallback_anywhere = config.multi_block and config.multi_block_reveal == "opened"
    generator = torch.Generator(device=device).manual_seed(seed)
    stop_ids = torch.as_tensor(family.stop_token_ids, dtype=torch.long, device=device)
    cache = None
    if config.use_cache != "none":
        check_cache_support(model, family, config.use_cache)
        cache = BlockKVCache(config.use_cache, P, L, attn, positions)
    step = 0
    all_rows = torch.arange(B, device=device)
    columns = torch.arange(L, device=device)
    rows, n_rows = all_rows, B  # the unfinished rows; looked up again only when their number changes
    while True:
        # One host sync per step: at batch 1 every sync idles the GPU while Python launches the next kernels.
        # So the step's numbers are computed for every row (finished rows have nothing masked and are left
        # out by `live`) and fetched together, before the rows of the forward are picked.
        live = ~done
        masked_all = x[:, P:] == family.mask_token_id
        block_all = first_unfinished_block(masked_all, bl)  # the schedule, the cache and fixed-count policies
        if config.multi_block:
            active_all, forced_all, block_state = multi_block_regions(masked_all, bl, block_state,
                                                                      config.block_add_threshold,
                                                                      config.decoded_token_threshold, block_all,
                                                                      config.multi_block_reveal)
        else:
            active_all, forced_all = semi_ar_regions(masked_all, bl, block_all)
        # Only the columns some row may reveal need the vocabulary-sized softmax.
        used = active_all.any(0)
        numbers = [live.sum(), torch.where(used, columns, L).min(), torch.where(used, columns, -1).max() + 1]
        if cache is not None:
            # The cache's window: the first unfinished block up to the last opened block (multi_block) or
            # the end of that block (semi-AR); every active position lies inside it.
            win_start_all = block_all * bl
            win_end_all = block_state.opened * bl if config.multi_block else win_start_all + bl
            numbers.append(cache.plan(block_all, win_start_all, win_end_all, live))
        n_left, lo, hi, *planned = torch.cat([torch.stack(numbers[:3])] + numbers[3:]).tolist()
        if n_left == 0:
            break
        if n_left != n_rows:
            rows, n_rows = live.nonzero().squeeze(1), n_left
        everything = n_left == B
        sel = slice(None) if everything else rows  # whole-batch steps index with views, not gathers

        def pick(t):
            return t if everything else t[rows]

        step += 1
        active, forced = pick(active_all), pick(forced_all)
        if cache is None:
            extra = {"position_ids": pick(positions)} if positions is not None else {}
            # The head runs on whole blocks around the active columns: few distinct shapes (CUDA graphs).
            head_lo, head_hi = (lo // bl) * bl, min(-(-hi // bl) * bl, L)
            if head_on_slice:
                extra["logits_range"] = (P + head_lo, P + head_hi)
            logits = model(pick(x), attention_mask=pick(attn) if padded else None, **extra).logits
            if head_on_slice:
                logits = logits[:, lo - head_lo:hi - head_lo]
            else:
                logits = aligned_logits(logits, family)[:, P + lo:P + hi]
            nfe[sel] += 1
            cand, conf, ent = policies.propose(logits, family.mask_token_id, config.temperature, generator)
        else:
            win_start = pick(win_start_all)
            win_logits, start = cache.window_logits(model, x, rows, pick(block_all), win_start,
                                                    pick(win_end_all), planned)
            nfe[sel] += 1
            if start is not None:  # one window start for all rows: columns lo..hi are a slice of it
                cand, conf, ent = policies.propose(win_logits[:, lo - start:hi - start], family.mask_token_id,
                                                   config.temperature, generator)
            else:
                cand, conf, ent = policies.propose(win_logits, family.mask_token_id, config.temperature, generator)
                cand = scatter_window(cand, win_start, lo, hi, family.mask_token_id)
                conf = scatter_window(conf, win_start, lo, hi, 0.0)
                ent = scatter_window(ent, win_start, lo, hi, 0.0)
        act, frc = active[:, lo:hi], forced[:, lo:hi]
        if config.policy == "confidence":
            chosen = policies.select_confidence(conf, act, frc, config.threshold, fallback_anywhere)
        elif config.policy == "entropy":
            chosen = policies.select_entropy(ent, act, frc, config.threshold, fallback_anywhere)
        else:
            block = pick(block_all)
            new_block = block != current_block[sel]
            current_block[sel] = block
            steps_in_block[sel] = torch.where(new_block, 0, steps_in_block[sel])
            left_steps = (steps_per_block - steps_in_block[sel]).clamp_min(1)
            k = torch.ceil(act.sum(-1).float() / left_steps.float()).long().clamp_min(1)
            steps_in_block[sel] += 1
            scores = conf if config.policy == "low_confidence" else torch.rand(
                conf.shape, generator=generator, device=device)
            chosen = policies.select_top_k(scores, act, k)
        x[sel, P + lo:P + hi] = torch.where(chosen, cand, x[sel, P + lo:P + hi])
        reveal[sel, lo:hi] = torch.where(chosen, step, reveal[sel, lo:hi])
        gen = x[sel, P:]
        revealed = gen != family.mask_token_id
        finished = revealed.all(-1)
        if config.stop_at_eos and stop_ids.numel():
            # rows that revealed a stop token after an unbroken prefix end here: their hidden tail is filled
            # (written for every row, unchanged where nothing ends: no host sync to ask first)
            early = _finished_by_stop(gen, revealed, stop_ids) & ~finished
            tail = ~revealed & early[:, None]
            x[sel, P:] = torch.where(tail, family.fill_token_id, gen)
            reveal[sel] = torch.where(tail, step, reveal[sel])
            finished = finished | early
        done[sel] = finished
        if on_step is not None:
            on_step(step, x[:, P:].clone(), x[:, P:] != family.mask_token_id)
    return x[:, P:], reveal, nfe
