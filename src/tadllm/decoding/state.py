"""`DecodeState`: a batch of rows decoded one step at a time, with rows joining and leaving between steps.

`generate` runs on it (add a batch, step until every row finished); a server admits requests while others
are mid-decoding and streams each row's final prefix:

    state = DecodeState(model, family, config)
    handles = state.add(prompts)               # any time, also while other rows are decoding
    while state.num_live:
        finished = state.step()                # one forward for every unfinished row
        ...state.final_prefix(h), state.result(h), state.remove(h)

A step is forward (`forward.py`: uncached / KV cache; a CUDA-graph model is just the model) -> propose
(`policies.propose`) -> select (the policy object of `policies.POLICIES`) -> write. Its numbers — the columns
some row may reveal, the cache's plan, which rows are done — are computed on the device for every row and
fetched in one host read, at the end of the previous step (at batch 1 every read idles the GPU while Python
launches the next kernels). A step after `add` / `remove` plans again (one more read).

Rows are independent: a row's tokens, reveal steps and forward count are the same whether it decodes alone,
in a batch from the start or admitted mid-way. Every row keeps its own step count (`reveal_step` is the row's
forward count at the reveal), its own random generator (seeded by `seeds`, default `config.seed + handle`) and
draws its random numbers for its own columns only. `batch_seed` instead gives the whole batch one generator
whose numbers are drawn in the shape of each step's logits — what `generate` has always done, so that sampled
results recorded with it (trajectories, evaluations) reproduce to the digit; a sampled row then depends on its
batch. Admitting a longer prompt pads every row on the left (the
RoPE positions come from the attention mask's cumsum, so padding changes nothing); removing rows trims the
padding no row needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..models.family import ModelFamily
from . import policies
from .cache import check_cache_support
from .config import DecodeConfig
from .forward import make_forward
from .schedule import BlockState, first_unfinished_block, multi_block_regions, semi_ar_regions


@dataclass
class RowResult:
    tokens: list[int]  # the generated canvas (mask ids where a row is not finished)
    reveal_step: list[int]  # the row's step at which each position was revealed (1-based; 0 = not yet)
    nfe: int  # forward passes spent on the row
    num_tokens: int  # generated tokens before the first stop token
    finished: bool


@dataclass
class Step:
    """One step's plan: device tensors of every row, and the numbers fetched to the host in one read."""

    rows: torch.Tensor  # (R,) the unfinished rows, sorted (every row: arange(B))
    everything: bool  # R == B: whole-batch steps index with views, not gathers
    live: list[int]  # the unfinished rows, on the host
    lo: int  # generation columns lo..hi-1 hold every position some row may reveal
    hi: int
    block: torch.Tensor  # (B,) each row's first block with masks
    active: torch.Tensor  # (B, L) positions that may be revealed
    forced: torch.Tensor  # (B, L) at least one of these per row is revealed
    blocks: BlockState  # the multi-block state after this step (taken when the step runs)
    forward_plan: object  # what the forward object planned (the cache's windows)
    forward_numbers: list[int]  # the forward object's numbers, on the host
    ranges: list[tuple[int, int]]  # per unfinished row: its own columns lo_r..hi_r (only when drawing numbers)
    done: list[bool]  # per row of the batch

    @property
    def sel(self):
        return slice(None) if self.everything else self.rows

    def pick(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.everything else t[self.rows]


def max_positions(model) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_sequence_length", "max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def left_pad(seqs, pad_id: int, device=None, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) of id sequences (lists or 1-D tensors) left-padded to the longest one (or to
    `width`). Used for decoding prompts and for the training collators."""
    width = max([len(s) for s in seqs] + [width or 0])
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


def overlong_prompts(model, lengths: Mapping, gen_length: int) -> tuple[int | None, dict]:
    """(the model's maximum sequence length, {key: prompt length} of the prompts that do not fit with
    `gen_length` generated tokens, in the order of `lengths`). The one prompt-length check: `generate`, `tad
    generate`, `tad eval` and `tad trajectories` all use it (the latter two before decoding anything, with
    messages naming the example)."""
    limit = max_positions(model)
    if limit is None:
        return None, {}
    return limit, {key: n for key, n in lengths.items() if n + gen_length > limit}


def check_prompts(prompts, model, config: DecodeConfig) -> None:
    if not prompts:
        raise ValueError("no prompts to decode")
    limit, too_long = overlong_prompts(model, {i: len(p) for i, p in enumerate(prompts)}, config.gen_length)
    if too_long:
        longest = max(too_long.values())
        raise ValueError(f"prompt of {longest} tokens + gen_length {config.gen_length} exceeds the model's "
                         f"maximum sequence length {limit}; shorten the prompt or lower gen_length")


def _finished_by_stop(tokens: torch.Tensor, revealed: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Rows with a revealed stop token whose every earlier position is revealed (`stop_ids` on the tokens'
    device: copying a list there every step would make the host wait for the GPU)."""
    is_stop = torch.isin(tokens, stop_ids) & revealed
    hidden_before = (~revealed).long().cumsum(-1)
    return (is_stop & (hidden_before == 0)).any(-1)


def _pad_left(t: torch.Tensor, n: int, fill) -> torch.Tensor:
    """`t` (B, T) with `n` columns of `fill` added on the left (`n` < 0: its first -`n` columns dropped)."""
    if n < 0:
        return t[:, -n:].contiguous()
    return torch.cat([t.new_full((t.shape[0], n), fill), t], dim=1)


def _drop_row(t: torch.Tensor, i: int) -> torch.Tensor:
    return torch.cat([t[:i], t[i + 1:]])  # slices: no index tensor to copy to the device


class DecodeState:
    """Rows decoded step by step under one `DecodeConfig`; see the module docstring."""

    def __init__(self, model, family: ModelFamily, config: DecodeConfig, batch_seed: int | None = None):
        config.validate()
        check_cache_support(model, family, config.use_cache)
        self.model, self.family, self.config = model, family, config
        self.policy = policies.POLICIES[config.policy]
        self.device = next(model.parameters()).device
        self.stop_ids = torch.as_tensor(family.stop_token_ids, dtype=torch.long, device=self.device)
        self._batch_generator = (None if batch_seed is None
                                 else torch.Generator(device=self.device).manual_seed(int(batch_seed)))
        # per-row numbers are fetched only when some row draws random numbers for its own columns
        self._draws = (config.temperature > 0 or self.policy.draws_random) and self._batch_generator is None
        self._next_handle = 0
        self._reset()

    def _reset(self) -> None:
        """No rows: every per-row tensor empty, the prompt width 0."""
        L, device = self.config.gen_length, self.device
        self.forward = make_forward(self.model, self.family, self.config)
        self.P = 0
        self.x = torch.empty(0, L, dtype=torch.long, device=device)  # [left-padded prompt ; generation]
        self.attn = torch.empty(0, L, dtype=torch.long, device=device)
        self.reveal = torch.empty(0, L, dtype=torch.long, device=device)
        self.nfe = torch.empty(0, dtype=torch.long, device=device)
        self.done = torch.empty(0, dtype=torch.bool, device=device)
        self.blocks = BlockState.start(0, self.config.num_blocks, device)
        self.policy_state = self.policy.new_rows(0, device)
        self.handles: list[int] = []  # row -> handle
        self._lengths: list[int] = []  # row -> prompt length
        self._generators: list[torch.Generator] = []
        self._done: list[bool] = []  # row -> finished, as of the last host read
        self._nfe: list[int] = []  # row -> forward passes (host copy: a common step number needs no gather)
        self._columns = torch.arange(L, device=device)
        self._layout_changed()

    # ------------------------------------------------------------------------------------------ API
    @property
    def num_live(self) -> int:
        """Rows admitted and not finished."""
        return self._done.count(False)

    @property
    def canvas(self) -> torch.Tensor:
        """(B, L) the generated region of every row (in the order of `handles`; a view, valid until the next
        call that changes the state)."""
        return self.x[:, self.P:]

    @torch.no_grad()
    def add(self, prompts: list[list[int]], seeds: list[int] | None = None) -> list[int]:
        """Admit rows (token id lists of any lengths) now; returns their handles. `seeds`: one per prompt for
        sampling (default `config.seed + handle`)."""
        check_prompts(prompts, self.model, self.config)
        n = len(prompts)
        handles = list(range(self._next_handle, self._next_handle + n))
        seeds = [self.config.seed + h for h in handles] if seeds is None else list(seeds)
        if len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} prompts")
        self._next_handle += n
        width = max([self.P] + [len(p) for p in prompts])
        if width > self.P:  # a longer prompt: every row gets more left padding
            self._pad_prompts(width - self.P)
        self._append_rows(prompts, seeds, handles)
        self.forward.add_rows(n, self)
        return handles

    @torch.no_grad()
    def remove(self, handle: int) -> None:
        """Drop a row (finished or cancelled); the batch shrinks and loses the padding no row needs."""
        i = self._row(handle)
        if len(self.handles) == 1:
            self._reset()
            return
        self.x, self.attn, self.reveal = _drop_row(self.x, i), _drop_row(self.attn, i), _drop_row(self.reveal, i)
        self.nfe, self.done = _drop_row(self.nfe, i), _drop_row(self.done, i)
        self.blocks = BlockState(_drop_row(self.blocks.opened, i), _drop_row(self.blocks.full, i))
        self.policy_state = {k: _drop_row(v, i) for k, v in self.policy_state.items()}
        for rows in (self.handles, self._lengths, self._generators, self._done, self._nfe):
            del rows[i]
        self._layout_changed()
        self.forward.drop_row(i, self)
        width = max(self._lengths)
        if width < self.P:
            self._pad_prompts(width - self.P)

    @torch.no_grad()
    def step(self) -> list[int]:
        """One forward for every unfinished row; returns the handles that finished in this step ([] and no
        forward when no row is unfinished)."""
        if not self.num_live:
            return []
        plan = self._plan if self._plan is not None else self._make_plan()
        self._advance(plan)
        self._plan = self._make_plan()  # the next step's numbers, and which rows this one finished
        return [h for h, before, now in zip(self.handles, plan.done, self._plan.done) if now and not before]

    def result(self, handle: int) -> RowResult:
        i, L = self._row(handle), self.config.gen_length
        values = torch.cat([self.x[i, self.P:], self.reveal[i], self.nfe[i:i + 1]]).tolist()
        tokens = values[:L]
        stops = set(self.family.stop_token_ids)
        num_tokens = next((j for j, t in enumerate(tokens) if t in stops), L)
        return RowResult(tokens, values[L:2 * L], values[2 * L], num_tokens, self._done[i])

    def final_prefix(self, handle: int) -> list[int]:
        """The generated tokens already final: the unbroken revealed prefix (tokens are never re-masked), cut
        at the first stop token."""
        tokens = self.x[self._row(handle), self.P:].tolist()
        stops = set(self.family.stop_token_ids) | {self.family.mask_token_id}
        end = next((j for j, t in enumerate(tokens) if t in stops), len(tokens))
        return tokens[:end]

    @property
    def joins_free(self) -> bool:
        """Whether a row admitted now adds no forward call to the next step: the step already runs the kind of
        forward a new row needs (with a KV cache: a refresh), or its plan is redone anyway. From the host."""
        if self._plan is None or not self.num_live:
            return True
        return self.forward.refreshes(self._plan.forward_numbers)

    def rows_padded(self, rows: list[int]) -> bool:
        """Whether some of these rows has left padding (a prompt shorter than the batch's widest)."""
        return self.padded and any(self._lengths[i] < self.P for i in rows)

    # ------------------------------------------------------------------------------------ the step
    def _make_plan(self) -> Step:
        """Regions, columns and the forward's plan for every row, and their numbers in one host read."""
        cfg, L = self.config, self.config.gen_length
        masked = self.canvas == self.family.mask_token_id
        block = first_unfinished_block(masked, cfg.block_length)  # the schedule, the cache, fixed-count policies
        blocks = self.blocks
        if cfg.multi_block:
            active, forced, blocks = multi_block_regions(masked, cfg.block_length, blocks, cfg.block_add_threshold,
                                                         cfg.decoded_token_threshold, block, cfg.multi_block_reveal)
        else:
            active, forced = semi_ar_regions(masked, cfg.block_length, block)
        # Only the columns some row may reveal need the vocabulary-sized softmax.
        cols, used = self._columns, active.any(0)
        numbers = [torch.stack([torch.where(used, cols, L).min(), torch.where(used, cols, -1).max() + 1])]
        forward_plan, forward_numbers = self.forward.plan(block, blocks.opened, ~self.done)
        numbers += forward_numbers + [self.done.long()]
        if self._draws:  # each row's own columns, for its own random draws
            numbers += [torch.where(active, cols, L).min(-1).values, torch.where(active, cols, -1).max(-1).values + 1]
        fetched = torch.cat(numbers).tolist()
        n_forward = sum(t.numel() for t in forward_numbers)  # sizes are known on the host: no read
        return self._step_from(fetched, block, active, forced, blocks, forward_plan, n_forward)

    def _step_from(self, fetched, block, active, forced, blocks, forward_plan, n_forward) -> Step:
        """The `Step` of a plan's fetched numbers: [lo, hi, the forward's (n_forward), done (B), ranges (2B)]."""
        B = len(self.handles)
        lo, hi, fetched = fetched[0], fetched[1], fetched[2:]
        forward_numbers, fetched = fetched[:n_forward], fetched[n_forward:]
        done = [bool(v) for v in fetched[:B]]
        live = [i for i in range(B) if not done[i]]
        ranges = [(fetched[B + i], fetched[2 * B + i]) for i in live] if self._draws else []
        if live != self._live_rows:  # the rows of the forward: looked up again only when they change
            order = torch.sort(self.done.to(torch.uint8), stable=True).indices  # unfinished rows first, sorted
            self._rows, self._live_rows = order[:len(live)], live
        self._done = done
        return Step(self._rows, len(live) == B, live, lo, hi, block, active, forced, blocks, forward_plan,
                    forward_numbers, ranges, done)

    def _advance(self, step: Step) -> None:
        """forward -> propose -> select -> write, for the step's rows."""
        self.blocks = step.blocks
        number = self._count_forward(step)
        cand, conf, ent = self.forward.candidates(self, step, lambda logits, start: self._propose(step, logits, start))
        view = policies.StepView(conf, ent, step.pick(step.active)[:, step.lo:step.hi],
                                 step.pick(step.forced)[:, step.lo:step.hi], step.pick(step.block), step.sel,
                                 self.policy_state, lambda: self._uniform(step))
        chosen = self.policy.select(view, self.config)
        self._write(step, chosen, cand, number)

    def _count_forward(self, step: Step):
        """Charge the step's rows one forward; returns their step number (the row's forward count): an int when
        they share it (as in a batch that started together), else (R, 1)."""
        self.nfe[step.sel] += 1
        for i in step.live:
            self._nfe[i] += 1
        counts = {self._nfe[i] for i in step.live}
        return counts.pop() if len(counts) == 1 else step.pick(self.nfe)[:, None]

    def _propose(self, step: Step, logits: torch.Tensor, start):
        """`policies.propose` on logits whose column 0 is generation column `start` (an int, or (R,) per row)."""
        noise = None
        if self.config.temperature > 0 and self._batch_generator is not None:
            noise = torch.rand(logits.shape, generator=self._batch_generator, device=self.device)
        elif self.config.temperature > 0:
            V = logits.shape[-1]
            noise = self._uniform(step, V)
            if isinstance(start, torch.Tensor):  # per-row windows: move each row's draws to its window's columns
                idx = (start[:, None] + torch.arange(logits.shape[1], device=start.device) - step.lo)
                noise = noise.gather(1, idx.clamp(0, step.hi - step.lo - 1)[..., None].expand(-1, -1, V))
        return policies.propose(logits, self.family.mask_token_id, self.config.temperature, noise=noise)

    def _uniform(self, step: Step, *tail: int) -> torch.Tensor:
        """(R, hi - lo, *tail) uniform numbers: row r's from its own generator, for its own columns only (other
        columns: 0, never revealed), so its draws do not depend on the batch. A Python loop over rows: one draw
        per generator (only when sampling or with the random policy). With `batch_seed`: one draw of the batch's
        generator."""
        if self._batch_generator is not None:
            return torch.rand((len(step.live), step.hi - step.lo) + tail, generator=self._batch_generator,
                              device=self.device)
        if len(step.live) == 1 and step.ranges[0] == (step.lo, step.hi):
            gen = self._generators[step.live[0]]
            return torch.rand((1, step.hi - step.lo) + tail, generator=gen, device=gen.device).to(self.device)
        out = torch.zeros((len(step.live), step.hi - step.lo) + tail, device=self.device)
        for r, (i, (a, b)) in enumerate(zip(step.live, step.ranges)):
            gen = self._generators[i]
            out[r, a - step.lo:b - step.lo] = torch.rand((1, b - a) + tail, generator=gen, device=gen.device)[0]
        return out

    def _write(self, step: Step, chosen: torch.Tensor, cand: torch.Tensor, number) -> None:
        """Reveal the chosen candidates; rows finish when nothing is masked or (stop_at_eos) a stop token follows
        an unbroken revealed prefix."""
        P, lo, hi, sel = self.P, step.lo, step.hi, step.sel
        mask_id = self.family.mask_token_id
        self.x[sel, P + lo:P + hi] = torch.where(chosen, cand, self.x[sel, P + lo:P + hi])
        self.reveal[sel, lo:hi] = torch.where(chosen, number, self.reveal[sel, lo:hi])
        gen = self.x[sel, P:]
        revealed = gen != mask_id
        finished = revealed.all(-1)
        if self.config.stop_at_eos and self.stop_ids.numel():
            # rows that revealed a stop token after an unbroken prefix end here: their hidden tail is filled
            # (written for every row, unchanged where nothing ends: no host sync to ask first)
            early = _finished_by_stop(gen, revealed, self.stop_ids) & ~finished
            tail = ~revealed & early[:, None]
            self.x[sel, P:] = torch.where(tail, self.family.fill_token_id, gen)
            self.reveal[sel] = torch.where(tail, number, self.reveal[sel])
            finished = finished | early
        self.done[sel] = finished

    # -------------------------------------------------------------------------- rows joining, leaving
    def _row(self, handle: int) -> int:
        try:
            return self.handles.index(handle)
        except ValueError:
            raise KeyError(f"no row with handle {handle} in this DecodeState") from None

    def _append_rows(self, prompts, seeds, handles) -> None:
        """New rows at the end of the batch, their prompts left-padded to the batch's width `self.P`."""
        n, L, device = len(prompts), self.config.gen_length, self.device
        ids, mask = left_pad(prompts, self.family.fill_token_id, device, width=self.P)
        gen = torch.full((n, L), self.family.mask_token_id, dtype=torch.long, device=device)
        self.x = torch.cat([self.x, torch.cat([ids, gen], 1)])
        self.attn = torch.cat([self.attn, torch.cat([mask, torch.ones_like(gen)], 1)])
        self.reveal = torch.cat([self.reveal, torch.zeros_like(gen)])
        self.nfe = torch.cat([self.nfe, self.nfe.new_zeros(n)])
        self.done = torch.cat([self.done, self.done.new_zeros(n)])
        new = BlockState.start(n, self.config.num_blocks, device)
        self.blocks = BlockState(torch.cat([self.blocks.opened, new.opened]), torch.cat([self.blocks.full, new.full]))
        new_state = self.policy.new_rows(n, device)
        self.policy_state = {k: torch.cat([v, new_state[k]]) for k, v in self.policy_state.items()}
        self.handles += handles
        self._lengths += [len(p) for p in prompts]
        self._generators += [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self._done += [False] * n
        self._nfe += [0] * n
        self._layout_changed()

    def _pad_prompts(self, n: int) -> None:
        """Add `n` padding columns on the left of every row (`n` < 0: drop -`n`)."""
        self.x = _pad_left(self.x, n, self.family.fill_token_id)
        self.attn = _pad_left(self.attn, n, 0)
        self.P += n
        self._layout_changed()
        self.forward.pad_left(n, self)

    def _layout_changed(self) -> None:
        """Rows or columns changed: positions, padding and the plan follow."""
        self.positions = (self.attn.cumsum(-1) - 1).clamp_min(0) if self.family.supports_position_ids else None
        # host-known (no read of the mask): an unpadded batch passes no mask, so attention takes its fastest kernel
        self.padded = any(n < self.P for n in self._lengths)
        self._plan: Step | None = None
        self._live_rows: list[int] | None = None
        self._rows = None
