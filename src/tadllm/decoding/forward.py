"""The forward of a decoding step: the model run on the step's rows, turned into candidates per position.

`make_forward(model, family, config)` picks the object by `config.use_cache`:

- `Uncached`: the whole sequence of every row of the step; the output head runs on whole blocks around the
  columns some row may reveal (`logits_range`, where the model has it: few distinct shapes for CUDA graphs).
- `Cached`: the Fast-dLLM KV cache (`cache.CACHE_KINDS`): a refresh or a forward over the row's window
  against cached keys/values (`cache.BlockKVCache`).

A CUDA-graph or compiled model (`graphs.py`) is just the `model` here. Both objects answer the same calls of
`DecodeState`: `plan` (device numbers the step's host read must include), `candidates` (tokens, confidence,
entropy on the step's generation columns lo..hi, through the state's `propose`) and the batch changes
between steps (`add_rows`, `drop_row`, `pad_left`). A cache kind is a class in cache.py, not a change here.
"""

from __future__ import annotations

import inspect

from ..models.family import ModelFamily, aligned_logits
from .cache import CACHE_KINDS, scatter_window


class Uncached:
    """Every step runs the model over the whole `[prompt ; generation]` sequence of its rows."""

    def __init__(self, model, family: ModelFamily, config):
        self.model, self.family = model, family
        self.L, self.bl = config.gen_length, config.block_length
        parameters = inspect.signature(model.forward).parameters
        self.head_on_slice = family.supports_logits_range and "logits_range" in parameters
        self.says_padded = "padded" in parameters

    def plan(self, block, opened, live):
        """(what `candidates` needs back, device numbers to fetch with the step's): nothing here."""
        return None, []

    def refreshes(self, numbers) -> bool:
        """Whether a planned step runs a forward that a joining row could share: every step's does."""
        return True

    def candidates(self, state, step, propose):
        """(tokens, confidence, entropy) (R, hi - lo) of the step's rows on generation columns lo..hi."""
        P, lo, hi, bl = state.P, step.lo, step.hi, self.bl
        extra = {"position_ids": step.pick(state.positions)} if state.positions is not None else {}
        # The head runs on whole blocks around the active columns: few distinct shapes (CUDA graphs).
        head_lo, head_hi = (lo // bl) * bl, min(-(-hi // bl) * bl, self.L)
        if self.head_on_slice:
            extra["logits_range"] = (P + head_lo, P + head_hi)
        # Without padding among the step's rows no mask is passed, so attention can take its fastest kernel; with
        # padding the model is told so, sparing its check of the mask (a host sync). Both known on the host.
        mask = step.pick(state.attn) if state.rows_padded(step.live) else None
        if mask is not None and self.says_padded:
            extra["padded"] = True
        logits = self.model(step.pick(state.x), attention_mask=mask, **extra).logits
        if self.head_on_slice:
            logits = logits[:, lo - head_lo:hi - head_lo]
        else:
            logits = aligned_logits(logits, self.family)[:, P + lo:P + hi]
        return propose(logits, lo)

    def add_rows(self, n, state):
        pass

    def drop_row(self, i, state):
        pass

    def pad_left(self, n, state):
        pass


class Cached:
    """The Fast-dLLM KV cache: each row refreshes when its first block with masks changes, else runs its window
    (the first block with masks up to the last opened block with `multi_block`, else to that block's end)."""

    def __init__(self, model, family: ModelFamily, config):
        self.model, self.mode, self.kind = model, config.use_cache, CACHE_KINDS[config.use_cache]
        self.L, self.bl, self.multi_block = config.gen_length, config.block_length, config.multi_block
        self.cache = None  # built when the first rows join

    def plan(self, block, opened, live):
        """Each row's window (every active position lies inside it) and the cache's numbers for it."""
        start = block * self.bl
        end = opened * self.bl if self.multi_block else start + self.bl
        return (start, end), [self.cache.plan(block, start, end, live)]

    def refreshes(self, numbers) -> bool:
        """Whether a planned step refreshes some row (a joining row's first step is a refresh: it then shares
        that forward instead of splitting the step into a refresh and a cached forward)."""
        return numbers[0] > 0

    def candidates(self, state, step, propose):
        start_all, end_all = step.forward_plan
        win_start = step.pick(start_all)
        lo, hi = step.lo, step.hi
        logits, start = self.cache.window_logits(self.model, state.x, step.rows, step.pick(step.block), win_start,
                                                 step.pick(end_all), step.forward_numbers)
        if start is not None:  # one window start for all rows: columns lo..hi are a slice of it
            return propose(logits[:, lo - start:hi - start], lo)
        cand, conf, ent = propose(logits, win_start)
        mask_id = state.family.mask_token_id
        return (scatter_window(cand, win_start, lo, hi, mask_id), scatter_window(conf, win_start, lo, hi, 0.0),
                scatter_window(ent, win_start, lo, hi, 0.0))

    def add_rows(self, n, state):
        if self.cache is None:
            self.cache = self.kind(self.mode, state.P, self.L, state.attn, state.positions, state.padded)
        else:
            self.cache.add_rows(n, state.attn, state.positions, state.padded)

    def drop_row(self, i, state):
        self.cache.drop_row(i, state.attn, state.positions, state.padded)

    def pad_left(self, n, state):
        if self.cache is not None:
            self.cache.pad_left(n, state.attn, state.positions, state.padded)


def make_forward(model, family: ModelFamily, config):
    """The forward object of `config.use_cache` (`none`: `Uncached`, a cache kind: `Cached`)."""
    return Uncached(model, family, config) if config.use_cache == "none" else Cached(model, family, config)
