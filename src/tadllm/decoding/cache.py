"""Fast-dLLM style KV caching for the decoding loop (native LLaDA only).

Without a cache every step runs the model over the whole sequence `[prompt ; generation]`. With a cache,
each row keeps the rotated keys/values of one *refresh* forward and later steps only run the positions
that still change:

- **refresh**: when a row's current block (the first block that still has masks) differs from the block
  its cache was built for — at the first step, and at the step after a block completes — the row runs one
  full forward with `use_cache=True`. Its logits are used for that step's reveal (as in Fast-dLLM), so it
  counts as an ordinary forward pass (NFE), and its keys/values of every position are stored.
- **prefix** cache: the other steps run only the positions from the current block's start to the end of
  the sequence; the positions before the block attend through the stored keys/values.
- **dual** cache: the other steps run only the current window (the current block; with `multi_block`, the
  current block up to the last opened block); the positions before *and after* it come from the cache.

This is an approximation: cached keys/values were computed when the current block (and, for dual, the
suffix) still held other tokens, exactly the trade Fast-dLLM makes. With one transformer layer the
approximation is exact, since layer-0 keys/values depend only on their own token.

The state is per row, so a batch whose rows are at different blocks is handled correctly: in one step the
rows that need a refresh run one full forward together, the others one cached forward together (every row
still runs exactly one forward per step). Rows whose cached windows differ in start or length are padded
to the longest window; padded query positions and cached positions that are not part of a row's context
are removed with the key mask, so each row computes exactly what it would alone. Rows join and leave between
steps (`add_rows`, `drop_row`, `pad_left`: a `DecodeState` admitting a longer prompt pads every row on the
left); a joining row's block is -1, so its first step refreshes it.

`CACHE_KINDS` maps each `use_cache` name to its class (`USE_CACHE`: the names with `none`); a new kind is
a class with `BlockKVCache`'s methods, registered there.
"""

from __future__ import annotations

import torch


def base_model(model):
    """The module under torch.compile / peft wrappers."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
            continue
        get_base = getattr(model, "get_base_model", None)  # peft
        if callable(get_base):
            base = get_base()
            if base is not model:
                model = base
                continue
    return model


def check_cache_support(model, family, mode: str) -> None:
    """Raise ValueError when `mode` is a cache mode and the model's family cannot run it
    (`ModelFamily.supports_kv_cache`)."""
    if mode == "none":
        return
    if mode not in CACHE_KINDS:
        raise ValueError(f"use_cache must be {', '.join(USE_CACHE[:-1])} or {USE_CACHE[-1]}, got {mode!r}")
    if getattr(family, "shift_logits", False):
        raise ValueError(f"use_cache={mode!r} does not support shifted-logit families (family "
                         f"{family.name!r} has shift_logits=True); use use_cache='none'")
    if not getattr(family, "supports_kv_cache", False):
        raise ValueError(
            f"use_cache={mode!r} needs a native LLaDA model (tadllm.models.llada.LLaDAModelLM, loaded without "
            f"remote code); this model is {type(base_model(model)).__name__} (family "
            f"{getattr(family, 'name', '?')!r}), which has no KV-cache support in tadllm. Use use_cache='none' "
            f"(CLI: --use-cache none).")


class BlockKVCache:
    """Per-row Fast-dLLM cache state of one decoding batch.

    `prompt_len` P and `gen_len` L: the batch is `(B, P + L)` with the generation at columns `P..P+L-1`.
    `attention_mask` (B, P + L) covers the left padding; `positions` (B, P + L) are the RoPE positions the
    uncached forward uses (None = 0..T-1, the model's default). `padded`: whether any key is masked (computed
    from the mask when None; a caller that knows it spares the host read).
    """

    def __init__(self, mode: str, prompt_len: int, gen_len: int, attention_mask: torch.Tensor,
                 positions: torch.Tensor | None = None, padded: bool | None = None):
        if mode not in CACHE_KINDS:
            raise ValueError(f"cache mode must be one of {tuple(CACHE_KINDS)}, got {mode!r}")
        self.mode = mode
        self.L = gen_len
        B = attention_mask.shape[0]
        device = attention_mask.device
        self._adopt(attention_mask, positions, padded)
        if self.P != prompt_len:
            raise ValueError(f"attention_mask has {self.T} columns, not prompt_len {prompt_len} + gen_len {gen_len}")
        self.block = torch.full((B,), -1, dtype=torch.long, device=device)
        self.keys: list[torch.Tensor] | None = None  # per layer (B, kv_heads, T, head_dim)
        self.values: list[torch.Tensor] | None = None
        self._kv_buffer = None  # the CUDA-graph wrapper's buffer allocator, once a refresh has seen it
        # statistics: forwards per row of each kind (refresh + cached = NFE of the row)
        self.refreshes = torch.zeros(B, dtype=torch.long, device=device)
        self.cached = torch.zeros(B, dtype=torch.long, device=device)

    def _adopt(self, attention_mask: torch.Tensor, positions: torch.Tensor | None, padded: bool | None) -> None:
        """Take the batch's mask and positions (at the start and after every change of rows or columns)."""
        B, T = attention_mask.shape
        self.B, self.T, self.P = B, T, T - self.L
        self.attn = attention_mask.long()
        self.key_ok = attention_mask.bool()
        # Unpadded batches pass no mask where none is needed, so attention can use its fastest kernel.
        self.padded = not bool(self.key_ok.all()) if padded is None else padded
        self.first_key = self.key_ok.int().argmax(-1)  # each row's first unpadded column
        if positions is None:
            positions = torch.arange(T, device=attention_mask.device).expand(B, T)
        self.positions = positions
        self._views: dict = {}  # window start -> per-layer (keys, values, start) of the whole batch

    # ------------------------------------------------------------------------------------------ API
    def plan(self, block: torch.Tensor, win_start: torch.Tensor, win_end: torch.Tensor,
             live: torch.Tensor) -> torch.Tensor:
        """What `window_logits` branches on, for the `live` rows, from arguments given for every row of the
        batch (`Plan`'s fields). One device tensor, so the decoding loop fetches it in the same host sync as
        its own numbers."""
        return self._numbers(self.block != block, win_start, win_end - win_start, self.first_key, live)

    def _numbers(self, need, win_start, width, first_key, live=None) -> torch.Tensor:
        if live is None:
            live = torch.ones_like(need)
        big = self.T + 1

        def spans(rows):  # smallest and largest window start, widest and narrowest window of `rows`
            return [torch.where(rows, win_start, big).min(), torch.where(rows, win_start, -1).max(),
                    torch.where(rows, width, 0).max(), torch.where(rows, width, big).min()]

        fresh = need & live
        first = [torch.where(fresh, first_key, big).min(), torch.where(fresh, first_key, -1).max()]
        return torch.stack([fresh.sum(), *spans(live), *first, *spans(~need & live)])

    def window_logits(self, model, x: torch.Tensor, rows: torch.Tensor, block: torch.Tensor,
                      win_start: torch.Tensor, win_end: torch.Tensor,
                      planned: list[int] | None = None) -> tuple[torch.Tensor, int | None]:
        """One forward for each of `rows` (sorted indices into the batch). Returns `(logits, start)`:
        logits (R, W, V) where `[r, j]` predicts generation column `win_start[r] + j`, W = max(win_end -
        win_start), and `start` = the common window start when every row has the same one, else None.

        `block` (R,) is each row's current block (the cache is rebuilt where it changed); `win_start`,
        `win_end` (R,) the generation columns the row may reveal this step. Columns j >= win_end - win_start
        of a row hold unspecified (finite) values. `planned`: `plan(...)` of these rows, already on the host
        (the loop passes it to save a host sync); computed here when None.
        """
        R = rows.numel()
        need = self.block[rows] != block
        width = win_end - win_start
        if planned is None:
            planned = self._numbers(need, win_start, width, self.first_key[rows]).tolist()
        n_need, ws_min, ws_max, W, W_min, first_min, first_max, kws_min, kws_max, kW, kW_min = map(int, planned)
        # the head runs on the columns every refreshed row needs (one range: no host sync to narrow it)
        head = (self.P + ws_min, min(self.P + ws_max + W, self.T))
        if n_need == R:
            logits = self._refresh(model, x, rows, win_start, W, head, first_min, first_max)
        elif n_need == 0:
            logits = self._cached(model, x, rows, win_start, win_end, W, ws_min, ws_max, W_min == W)
        elif self._packs(model, R, W_min == W):
            logits = self._packed(model, x, rows, need, win_start, W, first_min, first_max)
        else:
            fresh, keep = need.nonzero().squeeze(1), (~need).nonzero().squeeze(1)
            lf = self._refresh(model, x, rows[fresh], win_start[fresh], W, head, first_min, first_max)
            lk = self._cached(model, x, rows[keep], win_start[keep], win_end[keep], W, kws_min, kws_max,
                              kW_min == kW == W)
            logits = lf.new_empty((R,) + tuple(lf.shape[1:]))
            logits[fresh], logits[keep] = lf, lk
        self.block[rows] = block
        return logits, (ws_min if ws_min == ws_max else None)

    # ----------------------------------------------------------- rows joining and leaving between steps
    def add_rows(self, n: int, attention_mask: torch.Tensor, positions: torch.Tensor | None, padded: bool) -> None:
        """`n` rows appended to the batch (the mask and positions given are the whole new batch's). Their block
        is -1: their first step refreshes them."""
        self.block = torch.cat([self.block, self.block.new_full((n,), -1)])
        self.refreshes = torch.cat([self.refreshes, self.refreshes.new_zeros(n)])
        self.cached = torch.cat([self.cached, self.cached.new_zeros(n)])
        self._reshape(lambda t: torch.cat([t, t.new_zeros((n,) + tuple(t.shape[1:]))]))
        self._adopt(attention_mask, positions, padded)

    def drop_row(self, i: int, attention_mask: torch.Tensor, positions: torch.Tensor | None, padded: bool) -> None:
        """Row `i` left the batch."""
        drop = lambda t: torch.cat([t[:i], t[i + 1:]])  # noqa: E731 - slices: no index tensor to copy over
        self.block, self.refreshes, self.cached = drop(self.block), drop(self.refreshes), drop(self.cached)
        self._reshape(drop)
        self._adopt(attention_mask, positions, padded)

    def pad_left(self, n: int, attention_mask: torch.Tensor, positions: torch.Tensor | None, padded: bool) -> None:
        """`n` > 0 padding columns added on the left of every row (a longer prompt joined), or -`n` dropped.
        The cached keys/values stay valid: RoPE positions come from the mask, which padding does not shift."""
        def pad(t):
            if n < 0:
                return t[:, :, -n:].contiguous()
            return torch.cat([t.new_zeros(t.shape[:2] + (n,) + tuple(t.shape[3:])), t], dim=2)

        self._reshape(pad)
        self._adopt(attention_mask, positions, padded)

    def _reshape(self, change) -> None:
        """Apply `change` to every layer's keys and values (kept in the CUDA-graph wrapper's buffers under one)."""
        if self.keys is None:
            return
        keys, values = [change(k) for k in self.keys], [change(v) for v in self.values]
        if self._kv_buffer is not None:
            own = lambda name, t: self._kv_buffer(name, t.shape, t.dtype, t.device).copy_(t)  # noqa: E731
            keys = [own(("k", i), k) for i, k in enumerate(keys)]
            values = [own(("v", i), v) for i, v in enumerate(values)]
        self.keys, self.values = keys, values

    # ------------------------------------------------------------------------------------ internals
    def _refresh(self, model, x, rows, win_start, W, head, first_min, first_max):
        """A full forward of `rows` from column `first_min` on (the padding every one of them has is skipped:
        a short prompt in a batch with a long one costs its own length), storing its keys/values."""
        n = rows.numel()
        c0 = first_min if self.padded else 0
        cols = (self.P + win_start[:, None] + torch.arange(W, device=x.device)).clamp_max(self.T - 1)
        pick = (lambda t: t[:, c0:]) if n == self.B else (lambda t: t[rows, c0:])  # noqa: E731
        # a mask only when some of these rows is padded past c0 (then the model is told so: no host sync)
        mask = pick(self.attn) if first_max > c0 else None
        out = model(pick(x), attention_mask=mask, position_ids=pick(self.positions), use_cache=True,
                    logits_range=(head[0] - c0, head[1] - c0), **({"padded": True} if mask is not None else {}))
        self._store(model, rows, out.kv_cache, c0)
        self.refreshes[rows] += 1
        return out.logits[torch.arange(n, device=x.device)[:, None], cols - head[0]]

    def _store(self, model, rows, kv, c0: int = 0):
        """Keep the keys/values of a refresh of `rows` (columns c0.. of the batch)."""
        everything = rows.numel() == self.B
        self._views = {}
        # Under CUDA graphs the keys/values live in the wrapper's persistent buffers: a replay's outputs are
        # overwritten by the next replay, and cached steps then read the buffers without a copy.
        kv_buffer = self._kv_buffer = getattr(model, "kv_buffer", None)
        if self.keys is None:
            if everything and kv_buffer is None and c0 == 0:
                self.keys, self.values = [k for k, _ in kv], [v for _, v in kv]
                return
            shape = lambda t: (self.B, t.shape[1], self.T) + tuple(t.shape[3:])  # noqa: E731
            if kv_buffer is None:
                self.keys = [k.new_zeros(shape(k)) for k, _ in kv]
                self.values = [v.new_zeros(shape(v)) for _, v in kv]
            else:
                self.keys = [kv_buffer(("k", i), shape(k), k.dtype, k.device) for i, (k, _) in enumerate(kv)]
                self.values = [kv_buffer(("v", i), shape(v), v.dtype, v.device) for i, (_, v) in enumerate(kv)]
        # columns before c0 are padding of every refreshed row: never attended, left as they are
        for i, (k, v) in enumerate(kv):
            if everything and kv_buffer is None and c0 == 0:
                self.keys[i], self.values[i] = k, v
            elif everything:
                self.keys[i][:, :, c0:].copy_(k)
                self.values[i][:, :, c0:].copy_(v)
            elif c0 == 0:
                self.keys[i].index_copy_(0, rows, k)
                self.values[i].index_copy_(0, rows, v)
            else:
                self.keys[i][:, :, c0:].index_copy_(0, rows, k)
                self.values[i][:, :, c0:].index_copy_(0, rows, v)

    def _packs(self, model, n_rows: int, same_width: bool) -> bool:
        """Whether a step with both refreshed and cached rows runs as one packed pass (`_packed`): dual cache, the
        whole batch, windows as wide, and a model with `forward_packed` (native LLaDA, not wrapped)."""
        return (self.mode == "dual" and n_rows == self.B and same_width
                and callable(getattr(model, "forward_packed", None)))

    def _packed(self, model, x, rows, need, win_start, W, first_min, first_max):
        """Refresh the rows where `need` and run every row's window against the cache in one pass. The refreshed rows'
        windows run too (their results are dropped, and their writes into the cache are overwritten by their
        new keys/values below): the whole cache is attended in place, with no copy of the cached rows."""
        fresh = need.nonzero().squeeze(1)
        c0 = first_min if self.padded else 0
        cols = self.P + win_start[:, None] + torch.arange(W, device=x.device)  # (B, W), inside the generation
        refresh_mask = self.attn[fresh, c0:] if first_max > c0 else None
        window, refreshed, kv = model.forward_packed(
            x.gather(1, cols), self.positions.gather(1, cols), [(k, v, cols) for k, v in zip(self.keys, self.values)],
            self.key_ok.long() if self.padded else None, x[fresh, c0:], self.positions[fresh, c0:], refresh_mask,
            cols[fresh].clamp_max(self.T - 1) - c0, window_padded=self.padded,
            refresh_padded=refresh_mask is not None)
        self._store(model, rows[fresh], kv, c0)
        window[fresh] = refreshed
        self.refreshes[rows] += need.long()
        self.cached[rows] += (~need).long()
        return window

    def _cached(self, model, x, rows, win_start, win_end, W, ws_min, ws_max, same_width):
        P, L, T = self.P, self.L, self.T
        device = x.device
        if ws_min == ws_max and same_width and not self.padded:
            return self._cached_uniform(model, x, rows, ws_min, W)
        if self.mode == "dual" and same_width:
            return self._cached_in_place(model, x, rows, win_start, W)
        if self.mode == "prefix":  # queries: block start .. end of the sequence; keys: cached prefix
            # at least W queries: a wider window of another row may start earlier (the extra ones are masked)
            Lq, K = max(L - ws_min, W), P + ws_max
            q_end = torch.full_like(win_start, L)
        else:  # dual: queries: the window; keys: everything else from the cache
            Lq, K = W, T
            q_end = win_end
        gen_col = win_start[:, None] + torch.arange(Lq, device=device)  # (n, Lq)
        q_ok = gen_col < q_end[:, None]
        idx = (P + gen_col).clamp_max(T - 1)
        ids = x[rows].gather(1, idx)
        pos = self.positions[rows].gather(1, idx)
        k_abs = torch.arange(K, device=device)
        ctx = k_abs[None, :] < (P + win_start)[:, None]
        if self.mode == "dual":
            ctx = ctx | (k_abs[None, :] >= (P + win_end)[:, None])
        key_ok = self.key_ok[rows, :K] & ctx
        mask = torch.cat([key_ok, q_ok], dim=1).long()
        if rows.numel() == self.B:
            past = [(k[:, :, :K], v[:, :, :K], None, None) for k, v in zip(self.keys, self.values)]
        else:
            past = [(k[rows, :, :K], v[rows, :, :K], None, None) for k, v in zip(self.keys, self.values)]
        # dual: the window's own cached columns are always masked, so the model need not check (a host sync)
        padded = True if self.mode == "dual" else None
        out = model(ids, attention_mask=mask, position_ids=pos, kv_cache=past, logits_range=(0, W), padded=padded)
        self.cached[rows] += 1
        return out.logits

    def _cached_in_place(self, model, x, rows, win_start, W):
        """Dual cache, windows as wide but at different starts or with padding (a server's rows at different
        blocks, prompts of different lengths): each row's fresh window keys/values are written into the cache at
        its own columns and attention runs over the whole cache with the padding mask only. The keys are those of
        the general path below, without its per-layer concatenation, which copied the whole cache every step."""
        everything = rows.numel() == self.B
        sel = slice(None) if everything else rows
        cols = self.P + win_start[:, None] + torch.arange(W, device=x.device)  # (R, W), inside the generation
        # a subset of rows gets copies (its writes need not persist: the window is recomputed every step)
        if everything:
            past = [(k, v, cols) for k, v in zip(self.keys, self.values)]
        else:
            past = [(k[rows], v[rows], cols) for k, v in zip(self.keys, self.values)]
        mask = self.key_ok[sel].long() if self.padded else None
        out = model(x[sel].gather(1, cols), attention_mask=mask, position_ids=self.positions[sel].gather(1, cols),
                    kv_cache=past, logits_range=(0, W), **({"padded": True} if mask is not None else {}))
        self.cached[rows] += 1
        return out.logits

    def _cached_uniform(self, model, x, rows, ws, W):
        """Every row has the same window and no padding: the window's fresh keys/values are written into the
        cache at the window (which is recomputed at every step anyway) and attention runs over the whole cache
        without a mask: no concatenation per layer, the fastest attention kernel, fixed shapes per block."""
        P = self.P
        before, after = P + ws, (self.T if self.mode == "prefix" else P + ws + W)
        everything = rows.numel() == self.B
        # The same list for every step of a block (until the next refresh): CUDA-graph replays recognise it
        # without re-inspecting every tensor. A subset of rows gets copies (its writes need not persist).
        past = self._views.get(before) if everything else None
        if past is None:
            if everything:
                past = [(k, v, before) for k, v in zip(self.keys, self.values)]
                self._views[before] = past
            else:
                past = [(k[rows], v[rows], before) for k, v in zip(self.keys, self.values)]
        sel = slice(None) if everything else rows  # a view of x, not a gathered copy, for the whole batch
        out = model(x[sel, before:after], attention_mask=None, position_ids=self.positions[sel, before:after],
                    kv_cache=past, logits_range=(0, W))
        self.cached[rows] += 1
        return out.logits


# ------------------------------------------------------------------------------------------ kinds
CACHE_KINDS = {"prefix": BlockKVCache, "dual": BlockKVCache}
USE_CACHE = ("none", *CACHE_KINDS)


def scatter_window(values: torch.Tensor, win_start: torch.Tensor, lo: int, hi: int, fill) -> torch.Tensor:
    """Move per-row window values (R, W) (column j = generation column win_start[r] + j) to the columns
    `lo..hi-1` of the generation, (R, hi - lo); columns outside a row's window get `fill`."""
    R, W = values.shape
    width = hi - lo
    col = win_start[:, None] + torch.arange(W, device=values.device) - lo
    col = torch.where((col >= 0) & (col < width), col, width)
    full = values.new_full((R, width + 1), fill)
    full.scatter_(1, col, values)
    return full[:, :width]
