"""Fast-dLLM style KV cache (prefix / dual) of the decoding loop, on the fixture model and tiny models."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from tadllm.decoding import DecodeConfig, generate
from tadllm.decoding.cache import BlockKVCache, check_cache_support
from tadllm.decoding.loop import left_pad
from tadllm.models.family import ModelFamily, resolve_family

from tadtest import check_decode_accounting, decoding_cases, tiny_llada_config

PROMPTS, CONFIGS = decoding_cases()
MODES = ("prefix", "dual")


class Spy(nn.Module):
    """Records every forward (cached or refresh, batch size, inputs); unwraps like a peft model."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    @property
    def config(self):
        return self.model.config

    def get_base_model(self):
        return self.model

    def forward(self, input_ids, **kwargs):
        out = self.model(input_ids, **kwargs)
        kind = "refresh" if kwargs.get("use_cache") else ("cached" if kwargs.get("kv_cache") else "full")
        self.calls.append({"kind": kind, "input_ids": input_ids.clone(), "kwargs": kwargs,
                           "logits": out.logits.detach().clone()})
        return out


def _state(prompts, pad_id, mask_id, gen_len, revealed_upto, seed=0):
    """A batch [left-padded prompts ; generation] with the first `revealed_upto[b]` generation positions of
    row b revealed (random ids < 40), the rest masked."""
    ids, attn = left_pad(prompts, pad_id, "cpu")
    B = ids.shape[0]
    g = torch.Generator().manual_seed(seed)
    gen = torch.randint(2, 40, (B, gen_len), generator=g)
    col = torch.arange(gen_len)[None, :]
    gen = torch.where(col < torch.as_tensor(revealed_upto)[:, None], gen, mask_id)
    x = torch.cat([ids, gen], 1)
    attn = torch.cat([attn, torch.ones(B, gen_len, dtype=torch.long)], 1)
    return x, attn, (attn.cumsum(-1) - 1).clamp_min(0)


def _window_ref(model, x, attn, pos, P, win_start, W):
    full = model(x, attention_mask=attn, position_ids=pos).logits
    cols = P + win_start[:, None] + torch.arange(W)
    return full[torch.arange(x.shape[0])[:, None], cols.clamp_max(x.shape[1] - 1)]


@pytest.fixture(scope="module")
def one_layer():
    """A 1-layer LLaDA: layer-0 keys/values depend only on their own token, so the cache is exact."""
    from tadllm.models.family import resolve_family
    from tadllm.models.llada import LLaDAModelLM

    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_layers=1, vocab_size=64, embedding_size=64, mask_token_id=63))
    model.eval()
    return model, resolve_family(model.config, native=True)


# ---------------------------------------------------------------------------------------------- loop
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cached_decoding_terminates_and_accounts_steps(fixture_model, name, mode):
    model, _, family = fixture_model
    cfg = replace(CONFIGS[name], use_cache=mode)
    out = generate(model, family, PROMPTS, cfg)
    assert not (out.tokens == family.mask_token_id).any()
    check_decode_accounting(out, name)
    if not cfg.multi_block:  # blocks are still decoded in order
        nb = cfg.num_blocks
        blocks = out.reveal_step.view(4, nb, 32 // nb)
        assert (blocks[:, :-1].max(-1).values < blocks[:, 1:].min(-1).values).all()


@pytest.mark.parametrize("mode", MODES)
def test_refresh_at_first_step_of_each_block_with_exact_logits(fixture_model, mode):
    """Every block starts with one full forward whose logits equal the uncached forward's; the other
    steps of the block are cached forwards; every row-forward is one NFE."""
    model, _, family = fixture_model
    spy = Spy(model)
    cfg = replace(CONFIGS["two_per_step"], use_cache=mode)  # 4 blocks x 4 steps, rows in lockstep
    out = generate(spy, family, PROMPTS, cfg)
    kinds = [c["kind"] for c in spy.calls]
    assert kinds == (["refresh"] + ["cached"] * 3) * 4
    assert sum(c["input_ids"].shape[0] for c in spy.calls) == int(out.nfe.sum())
    block = -1
    for c in spy.calls:
        if c["kind"] == "refresh":
            block += 1
            kw = c["kwargs"]
            plain = model(c["input_ids"], attention_mask=kw["attention_mask"], position_ids=kw["position_ids"])
            first, last = kw.get("logits_range", (0, None))  # the head may run on the block's columns only
            torch.testing.assert_close(c["logits"], plain.logits[:, first:last], atol=1e-5, rtol=0)
        else:  # prefix: the current block to the end; dual: the current block only
            assert c["input_ids"].shape[1] == (32 - 8 * block if mode == "prefix" else 8)


@pytest.mark.parametrize("mode", MODES)
def test_block_of_one_token_refreshes_every_step_and_equals_no_cache(fixture_model, mode):
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=12, block_length=1, steps=12)
    ref = generate(model, family, PROMPTS, cfg)
    spy = Spy(model)
    out = generate(spy, family, PROMPTS, replace(cfg, use_cache=mode))
    assert {c["kind"] for c in spy.calls} == {"refresh"}
    assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.reveal_step, ref.reveal_step)
    assert torch.equal(out.nfe, ref.nfe)


def test_mixed_refresh_and_cached_rows_account_every_forward(fixture_model):
    """Threshold decoding puts rows at different blocks: one step then has a refresh forward for some rows
    and a cached forward for the others; each row is charged exactly one forward per step."""
    model, _, family = fixture_model
    for mode in MODES:
        spy = Spy(model)
        out = generate(spy, family, PROMPTS, replace(CONFIGS["confidence"], use_cache=mode))
        assert sum(c["input_ids"].shape[0] for c in spy.calls) == int(out.nfe.sum())
        assert sum(c["input_ids"].shape[0] for c in spy.calls if c["kind"] == "refresh") == 4 * 4


@pytest.mark.parametrize("mode", MODES)
def test_cache_batch_of_different_prompt_lengths(fixture_model, mode):
    model, _, family = fixture_model
    cfg = replace(CONFIGS["confidence"], use_cache=mode)  # rows reach their blocks at different steps
    batched = generate(model, family, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, family, [prompt], cfg)
        assert torch.equal(alone.tokens[0], batched.tokens[i])
        assert alone.nfe[0] == batched.nfe[i]
    assert torch.equal(generate(model, family, PROMPTS, cfg, batch_size=3).tokens, batched.tokens)


def test_cache_with_stop_at_eos(fixture_model):
    model, _, family = fixture_model
    for mode in MODES:
        cfg = replace(CONFIGS["confidence"], use_cache=mode, stop_at_eos=True)
        out = generate(model, family, PROMPTS, cfg)
        assert not (out.tokens == family.mask_token_id).any()
        assert torch.equal(out.reveal_step.max(1).values, out.nfe)


# ------------------------------------------------------------------------------- cache vs full forward
@pytest.mark.parametrize("mode", MODES)
def test_cached_logits_equal_full_forward_when_nothing_changed(fixture_model, mode):
    """Refresh on a state, then a cached forward on the same state: the window logits equal the full
    forward's (rows with different prompt lengths and at different blocks in one cached call)."""
    model, _, family = fixture_model
    L, bl = 32, 8
    x, attn, pos = _state(PROMPTS, family.fill_token_id, family.mask_token_id, L, [0, 8, 19, 27])
    P = x.shape[1] - L
    block = torch.tensor([0, 1, 2, 3])
    ws = block * bl
    cache = BlockKVCache(mode, P, L, attn, pos)
    rows = torch.arange(4)
    first, start = cache.window_logits(model, x, rows, block, ws, ws + bl)
    assert start is None  # rows at different blocks
    again, _ = cache.window_logits(model, x, rows, block, ws, ws + bl)
    ref = _window_ref(model, x, attn, pos, P, ws, bl)
    assert cache.refreshes.tolist() == [1] * 4 and cache.cached.tolist() == [1] * 4
    torch.testing.assert_close(first, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, ref, atol=1e-5, rtol=0)
    # a subset of rows (the cache is per row) and a mixed refresh / cached call
    sub = torch.tensor([1, 3])
    torch.testing.assert_close(cache.window_logits(model, x, sub, block[sub], ws[sub], ws[sub] + bl)[0], ref[sub],
                               atol=1e-5, rtol=0)
    moved = block.clone()
    moved[0] = 1  # row 0 moves on: refresh; rows 1-3 stay cached
    ws2 = moved * bl
    mixed, _ = cache.window_logits(model, x, rows, moved, ws2, ws2 + bl)
    torch.testing.assert_close(mixed, _window_ref(model, x, attn, pos, P, ws2, bl), atol=1e-5, rtol=0)
    assert cache.refreshes.tolist() == [2, 1, 1, 1]


class PackedSpy(Spy):
    """A Spy that also offers the packed pass, recording its calls."""

    def forward_packed(self, window_ids, *args, **kwargs):
        self.calls.append({"kind": "packed", "input_ids": window_ids.clone(), "refresh_ids": args[3].clone()})
        return self.model.forward_packed(window_ids, *args, **kwargs)


@pytest.mark.parametrize("padded", [False, True])
def test_a_mixed_step_runs_as_one_packed_pass_with_the_split_result(fixture_model, padded):
    """Dual cache, some rows refreshing and the others cached: one `forward_packed` call (no separate refresh and
    cached forwards), the same logits as the two forwards of a model without it and as the full forward, and the
    same cache afterwards (the next cached step agrees too)."""
    model, _, family = fixture_model
    L, bl = 32, 8
    prompts = PROMPTS if padded else [PROMPTS[0]] * 4
    x, attn, pos = _state(prompts, family.fill_token_id, family.mask_token_id, L, [0, 8, 19, 27])
    P = x.shape[1] - L
    block = torch.tensor([0, 1, 2, 3])
    rows = torch.arange(4)
    moved = block.clone()
    moved[[0, 2]] += 1  # rows 0 and 2 move on (refresh); rows 1 and 3 stay cached
    x2 = x.clone()  # they revealed tokens in their old block: their cached keys are stale, the refresh is exact
    for b in (0, 2):
        x2[b, P + block[b] * bl + torch.tensor([1, 4])] = torch.tensor([7, 9])
    results = {}
    for name, wrap in (("packed", PackedSpy), ("split", Spy)):
        spy = wrap(model)
        cache = BlockKVCache("dual", P, L, attn, pos)
        cache.window_logits(spy, x, rows, block, block * bl, block * bl + bl)
        mixed, _ = cache.window_logits(spy, x2, rows, moved, moved * bl, moved * bl + bl)
        after, _ = cache.window_logits(spy, x2, rows, moved, moved * bl, moved * bl + bl)
        results[name] = (spy.calls[1:], mixed, after, cache)
    calls, mixed, after, cache = results["packed"]
    assert [c["kind"] for c in calls] == ["packed", "cached"]
    assert calls[0]["refresh_ids"].shape[0] == 2
    assert [c["kind"] for c in results["split"][0]] == ["refresh", "cached", "cached"]
    assert cache.refreshes.tolist() == [2, 1, 2, 1] and cache.cached.tolist() == [1, 2, 1, 2]
    torch.testing.assert_close(mixed, results["split"][1], atol=1e-5, rtol=0)
    torch.testing.assert_close(after, results["split"][2], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed, _window_ref(model, x2, attn, pos, P, moved * bl, bl), atol=1e-5, rtol=0)
    for mine, theirs in zip(cache.keys, results["split"][3].keys):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_refresh_skips_the_padding_its_rows_share(fixture_model, mode):
    """A refresh runs only from the first column some refreshed row attends to: a short prompt in a batch with
    a long one costs its own length, without a mask when the refreshed rows are padded alike, and its stored
    keys/values serve the later cached steps exactly."""
    model, _, family = fixture_model
    L, bl = 32, 8
    x, attn, pos = _state(PROMPTS, family.fill_token_id, family.mask_token_id, L, [0, 0, 0, 0])
    T, P = x.shape[1], x.shape[1] - L
    lengths = [len(p) for p in PROMPTS]
    short = min(range(4), key=lengths.__getitem__)
    assert lengths[short] < P  # the fixture's prompts differ in length
    spy = Spy(model)
    cache = BlockKVCache(mode, P, L, attn, pos)
    rows, block = torch.arange(4), torch.zeros(4, dtype=torch.long)
    cache.window_logits(spy, x, rows, block, block * bl, block * bl + bl)
    assert spy.calls[-1]["input_ids"].shape[1] == T  # the longest prompt has no padding
    moved = block.clone()
    moved[short] = 1  # the short row alone moves on: its refresh starts at its first column
    got, _ = cache.window_logits(spy, x, rows, moved, moved * bl, moved * bl + bl)
    refresh = [c for c in spy.calls[1:] if c["kind"] == "refresh"]
    assert len(refresh) == 1 and refresh[0]["input_ids"].shape == (1, T - (P - lengths[short]))
    assert refresh[0]["kwargs"]["attention_mask"] is None
    ref = _window_ref(model, x, attn, pos, P, moved * bl, bl)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    again, _ = cache.window_logits(spy, x, rows, moved, moved * bl, moved * bl + bl)  # cached, every row
    assert spy.calls[-1]["kind"] == "cached"
    torch.testing.assert_close(again, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_cache_is_exact_when_cached_keys_cannot_change(one_layer, mode):
    """With one layer, the cached keys/values of positions outside the window depend only on their own
    tokens, which did not change: cached logits equal the full forward's after the block changed."""
    model, family = one_layer
    L, bl = 32, 8
    x, attn, pos = _state(PROMPTS, family.fill_token_id, family.mask_token_id, L, [8, 8, 16, 0], seed=1)
    P = x.shape[1] - L
    block = torch.tensor([1, 1, 2, 0])
    ws = block * bl
    cache = BlockKVCache(mode, P, L, attn, pos)
    rows = torch.arange(4)
    cache.window_logits(model, x, rows, block, ws, ws + bl)
    x2 = x.clone()
    for b in range(4):  # reveal three tokens inside each row's current block
        x2[b, P + ws[b] + torch.tensor([0, 3, 5])] = torch.tensor([7, 8, 9])
    got, _ = cache.window_logits(model, x2, rows, block, ws, ws + bl)
    assert cache.cached.tolist() == [1] * 4
    torch.testing.assert_close(got, _window_ref(model, x2, attn, pos, P, ws, bl), atol=1e-5, rtol=0)


ONE_LAYER_CONFIGS = {  # thresholds at which the 1-layer model's rows progress at different speeds
    "two_per_step": CONFIGS["two_per_step"],
    "confidence": replace(CONFIGS["confidence"], threshold=0.3),
    "entropy_multi": replace(CONFIGS["entropy_multi"], threshold=1.5),
    "single_block": replace(CONFIGS["single_block"], threshold=1.5),
}


@pytest.mark.parametrize("name", sorted(ONE_LAYER_CONFIGS))
def test_one_layer_cached_decoding_equals_uncached(one_layer, name):
    """End to end, rows at different blocks / windows included: the cache changes nothing when it is exact."""
    model, family = one_layer
    prompts = [[p % 60 + 2 for p in prompt] for prompt in PROMPTS]
    cfg = ONE_LAYER_CONFIGS[name]
    ref = generate(model, family, prompts, cfg)
    if name in ("confidence", "entropy_multi"):
        assert len(set(ref.nfe.tolist())) > 1
    for mode in MODES:
        out = generate(model, family, prompts, replace(cfg, use_cache=mode))
        assert torch.equal(out.tokens, ref.tokens), mode
        assert torch.equal(out.reveal_step, ref.reveal_step), mode
        assert torch.equal(out.nfe, ref.nfe), mode


# ------------------------------------------------------------------------------------------ errors
def test_cache_needs_native_llada(fixture_model):
    model, _, family = fixture_model

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.config = model.config

        def forward(self, input_ids, attention_mask=None, **kwargs):
            return model(input_ids, attention_mask=attention_mask)

    other = Other()
    # the family says whether the cache can run: a LLaDA checkpoint loaded with its remote code has no cache
    assert family.supports_kv_cache
    remote = resolve_family(model.config, native=False)
    assert not remote.supports_kv_cache
    with pytest.raises(ValueError, match="native LLaDA.*this model is Other"):
        generate(other, remote, PROMPTS, replace(CONFIGS["low_confidence"], use_cache="prefix"))
    assert generate(other, remote, PROMPTS[:1], DecodeConfig(gen_length=8, block_length=8)).nfe.tolist() == [8]
    shifted = ModelFamily("dream", family.mask_token_id, family.eos_token_id, family.pad_token_id,
                          shift_logits=True)
    with pytest.raises(ValueError, match="shift"):
        check_cache_support(model, shifted, "dual")
    check_cache_support(other, family, "none")  # no cache: anything goes
    with pytest.raises(ValueError, match="use_cache"):
        DecodeConfig(use_cache="full")
