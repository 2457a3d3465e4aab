"""Wrappers of the decoding forward (optional): `compile_model` (torch.compile) and CUDA graphs, which replay
a captured forward instead of launching its kernels. A wrapped model is passed to `generate` / `DecodeState`
in place of the model; the decoding code does not know the difference.

At batch 1 a decoding forward of a 1-8B model is launch-bound: the GPU waits for Python to enqueue about a
thousand small kernels, so a forward over 32 cached positions costs as much as one over the whole sequence.
`CUDAGraphModel(model)` captures one CUDA graph per distinct call (input shapes, dtypes, strides and the
non-tensor arguments) the first time it is seen and replays it afterwards, so a step costs the GPU time of its
kernels. It wraps a model like `torch.compile` does and is passed to `generate` in its place
(`tad generate/eval --cuda-graphs`; with `--compile` it wraps `torch.compile(model, dynamic=True)`, whose fused
kernels it then replays).

Contract of a replay (what makes it cheap and what the caller must respect):
- inputs are copied into the graph's static buffers, except tensors that already *are* those buffers (same
  address, shape and strides) — the decoding cache keeps its keys/values in buffers of this wrapper
  (`kv_buffer`), so a cached step copies only its few query ids and positions;
- outputs live in the graphs' shared memory pool and are valid only until the next call of the wrapper: read
  them (or copy them) before calling it again. The decoding loop and `BlockKVCache` do.
- a call is captured the `capture_after`-th time its kind is seen (default 2: shapes that occur once — a batch
  that shrinks as rows finish early — run eagerly instead of paying a capture each), for at most
  `max_graphs` distinct calls; further new calls run eagerly.

On a CPU the wrapper runs the same static-buffer path without capturing, so its
bookkeeping is tested on machines without a GPU.
"""

from __future__ import annotations

import torch
from torch import nn


def _flatten(value, out: list):
    """Tensors of nested lists/tuples in order; returns the structure with tensors replaced by their index."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        return ("T", len(out) - 1)
    if isinstance(value, (list, tuple)):
        return ("list" if isinstance(value, list) else "tuple", tuple(_flatten(v, out) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _flatten(v, out)) for k, v in value.items()))
    return ("V", value)


def _unflatten(spec, tensors):
    kind, payload = spec
    if kind == "T":
        return tensors[payload]
    if kind in ("list", "tuple"):
        items = [_unflatten(s, tensors) for s in payload]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _unflatten(s, tensors) for k, s in payload}
    return payload


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _load(entry, start: int, tensors) -> bool:
    """Copy `tensors` into the entry's static inputs from index `start`; False when one of them would have to
    overwrite a borrowed buffer (someone else's memory), so the call must run eagerly."""
    for static, given, borrowed in zip(entry.inputs[start:], tensors, entry.borrowed[start:]):
        if _same_view(static, given):
            continue
        if borrowed:
            return False
        static.copy_(given)
    return True


def _signature(t: torch.Tensor):
    return t.shape, t.dtype, t.stride()


def _shift(spec, offset: int):
    """`spec` with every tensor index moved by `offset` (to append one flattened argument to another)."""
    kind, payload = spec
    if kind == "T":
        return ("T", payload + offset)
    if kind in ("list", "tuple"):
        return (kind, tuple(_shift(s, offset) for s in payload))
    if kind == "dict":
        return (kind, tuple((k, _shift(s, offset)) for k, s in payload))
    return spec


class _KVPart:
    def __init__(self, tensors, spec, signature, remembered: bool):
        self.tensors, self.spec, self.signature, self.remembered = tensors, spec, signature, remembered
        self.checked: set[int] = set()  # graphs whose borrowed inputs are known to be exactly these views


class _Graph:
    def __init__(self, inputs: list[torch.Tensor], borrowed: list[bool], spec):
        self.inputs, self.borrowed, self.spec = inputs, borrowed, spec
        self.graph = None  # torch.cuda.CUDAGraph, or None on CPU (static eager run)
        self.output = None
        self.replays = 0


class CUDAGraphModel(nn.Module):
    """Replays CUDA graphs of `model`'s forward; see the module docstring for the contract."""

    def __init__(self, model, max_graphs: int = 64, capture_after: int = 2):
        super().__init__()
        self.inner = model
        self.max_graphs, self.capture_after = max_graphs, capture_after
        self._seen: dict = {}  # calls of each not-yet-captured kind
        device = next(model.parameters()).device
        self.capture = device.type == "cuda"
        self._graphs: dict = {}
        self._buffers: dict = {}
        self._buffer_storages: set[int] = set()
        self._kv_memo: dict = {}
        self._pool = None
        self.eager_calls = 0

    @property
    def config(self):
        return self.inner.config

    def get_base_model(self):
        return self.inner

    def kv_buffer(self, name: str, shape, dtype, device) -> torch.Tensor:
        """A persistent tensor owned by this wrapper (the decoding cache stores keys/values in these so that
        a replay reads them in place)."""
        key = (name, tuple(shape), dtype, str(device))
        buf = self._buffers.get(key)
        if buf is None:
            buf = torch.zeros(shape, dtype=dtype, device=device)
            self._buffers[key] = buf
            self._buffer_storages.add(buf.untyped_storage().data_ptr())
        return buf

    def reset(self) -> None:
        """Drop every captured graph and buffer (frees their memory)."""
        self._graphs.clear()
        self._buffers.clear()
        self._buffer_storages.clear()
        self._kv_memo.clear()
        self._seen.clear()
        self._pool = None

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def forward(self, input_ids, attention_mask=None, position_ids=None, kv_cache=None, use_cache=False,
                logits_range=None, padded=None):
        # Only the arguments given are passed on, so models without KV-cache arguments (Dream, generic) work.
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=use_cache or None, logits_range=logits_range, padded=padded)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        tensors: list[torch.Tensor] = []
        spec = _flatten(kwargs, tensors)
        kv = self._kv_part(kv_cache)
        key = (spec, tuple(_signature(t) for t in tensors), kv.spec, kv.signature)
        if kv_cache is not None:
            kwargs["kv_cache"] = kv_cache
        entry = self._graphs.get(key)
        if entry is None:
            seen = self._seen[key] = self._seen.get(key, 0) + 1
            if seen < self.capture_after or len(self._graphs) >= self.max_graphs:
                if len(self._seen) > 4096:  # only counts; forget them rather than grow without bound
                    self._seen.clear()
                self.eager_calls += 1
                return self.inner(**kwargs)
            entry = self._capture(spec, tensors, kv)
            self._graphs[key] = entry
            return entry.output
        n = len(tensors)
        loaded = _load(entry, 0, tensors)
        if loaded and id(entry) not in kv.checked:  # (a remembered cache list is checked once per graph)
            loaded = _load(entry, n, kv.tensors)
            if loaded and kv.remembered and all(entry.borrowed[n:]):
                kv.checked.add(id(entry))
        if not loaded:
            self.eager_calls += 1
            return self.inner(**kwargs)
        if entry.graph is None:
            entry.output = self.inner(**_unflatten(entry.spec, entry.inputs))
        else:
            entry.graph.replay()
        entry.replays += 1
        return entry.output

    def _kv_part(self, kv_cache) -> _KVPart:
        """The tensors, structure and signature of a `kv_cache` argument. A list made of views of this wrapper's
        buffers is remembered: the decoding cache passes the same list for every step of a block, so this
        Python work (a few hundred tensors for an 8B model) happens once per block, not per step."""
        if kv_cache is None:
            return _KVPart((), None, (), False)
        memo = self._kv_memo.get(id(kv_cache))
        if memo is not None and memo[0] is kv_cache:
            return memo[1]
        tensors: list[torch.Tensor] = []
        spec = _flatten(kv_cache, tensors)
        remembered = all(t.untyped_storage().data_ptr() in self._buffer_storages for t in tensors)
        part = _KVPart(tuple(tensors), spec, tuple(_signature(t) for t in tensors), remembered)
        if remembered:
            if len(self._kv_memo) >= 256:
                self._kv_memo.clear()
            self._kv_memo[id(kv_cache)] = (kv_cache, part)  # holding the list keeps its id unique
        return part

    def _capture(self, spec, tensors, kv: _KVPart) -> _Graph:
        everything = list(tensors) + list(kv.tensors)
        borrowed = [t.untyped_storage().data_ptr() in self._buffer_storages for t in everything]
        inputs = [t if b else t.clone() for t, b in zip(everything, borrowed)]
        if kv.spec is not None:
            spec = ("dict", spec[1] + (("kv_cache", _shift(kv.spec, len(tensors))),))
        entry = _Graph(inputs, borrowed, spec)
        kwargs = _unflatten(spec, inputs)
        if not self.capture:
            entry.output = self.inner(**kwargs)
            return entry
        # Warm up on a side stream (lazy initialisation of cuBLAS/attention kernels must not be captured).
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.inner(**kwargs)
        torch.cuda.current_stream().wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            entry.output = self.inner(**kwargs)
        graph.replay()  # the capture only recorded the kernels; this call's outputs come from a replay
        entry.graph = graph
        return entry


def compile_model(model, dynamic: bool | None = None):
    """`torch.compile` for decoding (optional; what it gains: benchmarks/RESULTS.md, "Performance"). Shapes
    change with the prompt length and the cache window: by default the first calls of a new shape recompile
    (then torch marks the changing sizes dynamic); `dynamic=True` compiles shape-generic code once per kind of
    forward (what CUDA graphs on top need)."""
    return torch.compile(model, dynamic=dynamic)


def cuda_graph_model(model, max_graphs: int = 64, compile: bool = False, capture_after: int = 2):
    """Wrap `model` so that decoding forwards replay CUDA graphs (`CUDAGraphModel`). Needs the model on a CUDA
    device. `compile=True` captures the graphs of `torch.compile(model, dynamic=True)`: fused kernels (fewer,
    so less per-kernel latency at batch 1) replayed without launch overhead."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        raise ValueError(f"--cuda-graphs needs the model on a CUDA device (it is on {device}); drop the flag "
                         "or pass --device cuda")
    return CUDAGraphModel(compile_model(model, dynamic=True) if compile else model, max_graphs=max_graphs,
                          capture_after=capture_after)
