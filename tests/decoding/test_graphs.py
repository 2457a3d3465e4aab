"""CUDA-graph wrapper of the decoding forward (its static-buffer path runs on the CPU without capturing) and
the cache's mask-free path for batches whose rows share one window."""

from dataclasses import replace

import pytest
import torch

from tadllm.decoding import DecodeConfig, generate
from tadllm.decoding.cache import BlockKVCache
from tadllm.decoding.graphs import CUDAGraphModel

from tadtest import decoding_cases

PROMPTS, CONFIGS = decoding_cases()
SAME_LENGTH = [[5, 6, 7, 8], [11, 12, 13, 14], [20, 21, 22, 23]]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_shared_window_without_mask_equals_masked_cache(fixture_model, mode):
    """Unpadded rows at the same block: slicing the cache (no mask) gives the masked path's logits."""
    model, _, family = fixture_model
    L, bl = 32, 8
    prompts = torch.tensor(SAME_LENGTH)
    B, P = prompts.shape
    gen = torch.full((B, L), family.mask_token_id)
    gen[:, :11] = torch.randint(2, 40, (B, 11), generator=torch.Generator().manual_seed(0))
    x = torch.cat([prompts, gen], 1)
    attn = torch.ones_like(x)
    rows, block = torch.arange(B), torch.ones(B, dtype=torch.long)
    ws = block * bl
    results = []
    for force_mask in (False, True):
        cache = BlockKVCache(mode, P, L, attn)
        assert not cache.padded
        cache.padded = force_mask  # True: the general path (cache columns of the window masked out)
        cache.window_logits(model, x, rows, block, ws, ws + bl)  # refresh
        x2 = x.clone()
        x2[:, P + 11:P + 13] = 7  # reveal two more tokens of the window; the cache stays
        results.append(cache.window_logits(model, x2, rows, block, ws, ws + bl)[0])
        assert cache.cached.tolist() == [1] * B
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["none", "prefix", "dual"])
@pytest.mark.parametrize("name", ["two_per_step", "confidence", "entropy_multi"])
def test_graph_wrapper_decodes_the_same_tokens(fixture_model, name, mode):
    """The wrapper's static buffers (copied inputs, in-place kv buffers, replayed entries) change nothing:
    same tokens and forward counts as the bare model, on a fresh wrapper and on a second call that replays."""
    model, _, family = fixture_model
    for prompts in (PROMPTS, SAME_LENGTH):
        cfg = replace(CONFIGS[name], use_cache=mode)
        ref = generate(model, family, prompts, cfg)
        wrapped = CUDAGraphModel(model, capture_after=1)
        for _ in range(2):
            out = generate(wrapped, family, prompts, cfg)
            assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.nfe, ref.nfe)
        assert wrapped.num_graphs > 0 and wrapped.eager_calls == 0


def test_cached_steps_read_the_kv_buffers_in_place(fixture_model):
    """Dual cache through the wrapper: the cached forwards take the keys/values as the wrapper's own buffers
    (no copy on replay), and every entry is replayed on the second call."""
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=32, block_length=8, steps=16, use_cache="dual")
    wrapped = CUDAGraphModel(model, capture_after=1)
    generate(wrapped, family, SAME_LENGTH, cfg)
    entries = list(wrapped._graphs.values())
    replays = [e.replays for e in entries]
    generate(wrapped, family, SAME_LENGTH, cfg)
    cached = [e for e in entries if sum(e.borrowed) > 0]
    assert cached, "no cached forward used the kv buffers"
    n_layers = model.config.n_layers
    assert all(sum(e.borrowed) == 2 * n_layers for e in cached)  # the whole keys and values of each layer
    assert all(e.replays > r for e, r in zip(entries, replays))
    assert wrapped.num_graphs == len(entries)  # nothing new on the second call


def test_graph_budget_falls_back_to_eager(fixture_model):
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=32, block_length=8, steps=16, use_cache="dual")
    ref = generate(model, family, SAME_LENGTH, cfg)
    wrapped = CUDAGraphModel(model, max_graphs=2, capture_after=1)
    out = generate(wrapped, family, SAME_LENGTH, cfg)
    assert torch.equal(out.tokens, ref.tokens)
    assert wrapped.num_graphs == 2 and wrapped.eager_calls > 0


def test_foreign_tensor_in_a_borrowed_slot_runs_eagerly(fixture_model):
    """A call whose tensor sits where an entry borrowed a kv buffer must not overwrite that buffer."""
    model, _, _ = fixture_model
    wrapped = CUDAGraphModel(model, capture_after=1)
    ids = torch.tensor([[5, 6, 7]])
    buf = wrapped.kv_buffer("k", (1, 3), torch.float32, "cpu")
    buf.fill_(1.0)
    spy = []
    original = wrapped.inner.forward

    def record(**kwargs):
        spy.append(kwargs["position_ids"].data_ptr())
        return original(input_ids=kwargs["input_ids"])

    wrapped.inner.forward = record
    try:
        wrapped(ids, position_ids=buf)  # captured with the buffer as a borrowed input
        other = torch.full((1, 3), 2.0)
        wrapped(ids, position_ids=other)
    finally:
        del wrapped.inner.forward
    assert wrapped.eager_calls == 1
    assert spy[-1] == other.data_ptr() and torch.equal(buf, torch.ones(1, 3))


def test_wrapper_unwraps_for_the_cache_check(fixture_model):
    from tadllm.decoding.cache import base_model as _base_model

    model, _, _ = fixture_model
    assert _base_model(CUDAGraphModel(model)) is model


@pytest.mark.parametrize("mode,expected", [("none", 4), ("prefix", 8), ("dual", 8)])
def test_one_graph_per_block_and_kind(fixture_model, mode, expected):
    """The head runs on whole blocks and the cache passes fixed slices per block, so a decode needs one graph
    per block (no cache) or two (refresh + cached), whichever columns of the block are still masked."""
    model, _, family = fixture_model
    # a fixed number of tokens per step keeps the rows at the same block (rows at different blocks widen the
    # head's range: at most one graph per pair of blocks); no early stop (a smaller batch is a new shape)
    cfg = DecodeConfig(gen_length=32, block_length=8, steps=16, use_cache=mode, stop_at_eos=False)
    wrapped = CUDAGraphModel(model, capture_after=1)
    generate(wrapped, family, SAME_LENGTH, cfg)
    assert wrapped.num_graphs == expected
    if mode != "none":
        assert len(wrapped._kv_memo) == 4  # one remembered list of cache views per block


@pytest.mark.slow
def test_graphs_of_a_shape_generic_compiled_model(fixture_model):
    """`--compile --cuda-graphs`: torch.compile(dynamic=True) under the wrapper compiles once per kind of
    forward (not per block) and decodes the eager tokens (on the CPU: no capture, the compiled code runs)."""
    model, _, family = fixture_model
    compiled = torch.compile(model, dynamic=True)
    for mode in ("none", "dual"):
        cfg = DecodeConfig(gen_length=32, block_length=8, steps=16, use_cache=mode)
        ref = generate(model, family, SAME_LENGTH, cfg)
        wrapped = CUDAGraphModel(compiled, capture_after=1)
        out = generate(wrapped, family, SAME_LENGTH, cfg)
        assert torch.equal(out.tokens, ref.tokens) and wrapped.eager_calls == 0


def test_kinds_seen_once_run_eagerly_by_default(fixture_model):
    """Default capture_after=2: the first call of each kind runs eagerly, the second is captured, so a decode
    whose refresh shapes occur once per call captures them on the next call; tokens never change."""
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=32, block_length=8, steps=16, use_cache="dual", stop_at_eos=False)
    ref = generate(model, family, SAME_LENGTH, cfg)
    wrapped = CUDAGraphModel(model)
    out = generate(wrapped, family, SAME_LENGTH, cfg)
    assert torch.equal(out.tokens, ref.tokens)
    assert wrapped.num_graphs == 4  # the 4 cached kinds (one per block, 3 steps each); no refresh yet
    assert wrapped.eager_calls == 8  # 4 refreshes + the first cached step of each block
    out = generate(wrapped, family, SAME_LENGTH, cfg)
    assert torch.equal(out.tokens, ref.tokens)
    assert wrapped.num_graphs == 8 and wrapped.eager_calls == 8  # refreshes captured on their second sighting
