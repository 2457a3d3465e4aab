"""`DecodeState`: rows admitted mid-way, removed, streamed, on the fixture model and the exact 1-layer model."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from tadllm.decoding import DecodeConfig, DecodeState, RowResult, generate

from tadtest import decoding_cases, tiny_llada_config

PROMPTS, CONFIGS = decoding_cases()  # prompt lengths 6, 3, 9, 1
SEEDS = [11, 12, 13, 14]
# step before which each prompt joins: the 9-token prompt joins a running batch of shorter ones (the batch is
# re-padded on the left), the 1-token one joins last
ADMIT_AT = [0, 2, 2, 5]


@pytest.fixture(scope="module")
def one_layer():
    """A 1-layer LLaDA: layer-0 keys/values depend only on their own token, so the cache is exact."""
    from tadllm.models.family import resolve_family
    from tadllm.models.llada import LLaDAModelLM

    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_layers=1, vocab_size=64, embedding_size=64, mask_token_id=63))
    model.eval()
    return model, resolve_family(model.config, native=True), [[p % 60 + 2 for p in prompt] for prompt in PROMPTS]


ONE_LAYER_CONFIGS = {  # thresholds at which the 1-layer model's rows progress at different speeds
    "two_per_step": CONFIGS["two_per_step"],
    "confidence": replace(CONFIGS["confidence"], threshold=0.3),
    "entropy_multi": replace(CONFIGS["entropy_multi"], threshold=1.5),
    "sampled_entropy": replace(CONFIGS["entropy_multi"], threshold=1.5, temperature=0.7, stop_at_eos=True),
}


def alone(model, family, cfg, prompt, seed) -> RowResult:
    state = DecodeState(model, family, cfg)
    (handle,) = state.add([prompt], seeds=[seed])
    while state.num_live:
        state.step()
    return state.result(handle)


def staggered(model, family, cfg, prompts, admit_at, remove_at=None) -> dict:
    """Decode with prompt i joining before step admit_at[i]; remove_at = (step, i) cancels prompt i then.
    Returns {i: RowResult} of the rows that stayed, and checks what `step` reports as finished."""
    state = DecodeState(model, family, cfg)
    handles, finished, step = {}, set(), 0
    while step <= max(admit_at) or state.num_live:
        joining = [i for i in range(len(prompts)) if admit_at[i] == step]
        if joining:
            new = state.add([prompts[i] for i in joining], seeds=[SEEDS[i] for i in joining])
            handles.update(zip(joining, new))
        if remove_at is not None and remove_at[0] == step:
            state.remove(handles.pop(remove_at[1]))
        done = state.step()
        assert not finished & set(done)  # a row finishes once
        finished |= set(done)
        assert all(state.result(h).finished for h in done)
        step += 1
    assert finished == set(handles.values())
    return {i: state.result(h) for i, h in handles.items()}


def assert_same(got: RowResult, ref: RowResult, what):
    assert got.tokens == ref.tokens, what
    assert got.reveal_step == ref.reveal_step, what
    assert got.nfe == ref.nfe and got.num_tokens == ref.num_tokens, what


@pytest.mark.parametrize("mode", ["none", "prefix", "dual"])
@pytest.mark.parametrize("name", sorted(ONE_LAYER_CONFIGS))
def test_admitted_mid_way_equals_alone_one_layer(one_layer, name, mode):
    model, family, prompts = one_layer
    cfg = replace(ONE_LAYER_CONFIGS[name], use_cache=mode)
    rows = staggered(model, family, cfg, prompts, ADMIT_AT)
    for i, prompt in enumerate(prompts):
        assert_same(rows[i], alone(model, family, cfg, prompt, SEEDS[i]), (name, mode, i))
    if name in ("confidence", "entropy_multi"):  # the rows really progressed at different speeds
        assert len({r.nfe for r in rows.values()}) > 1


@pytest.mark.parametrize("mode", ["none", "prefix", "dual"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_admitted_mid_way_equals_alone_fixture(fixture_model, name, mode):
    """Two layers: the cache is an approximation, but each row's cache holds only its own keys/values."""
    model, _, family = fixture_model
    cfg = replace(CONFIGS[name], use_cache=mode, temperature=0.7 if name == "random" else 0.0)
    rows = staggered(model, family, cfg, PROMPTS, ADMIT_AT)
    for i, prompt in enumerate(PROMPTS):
        assert_same(rows[i], alone(model, family, cfg, prompt, SEEDS[i]), (name, i))


@pytest.mark.parametrize("mode", ["none", "dual"])
def test_remove_mid_way_leaves_the_other_rows_unchanged(one_layer, mode):
    """The longest prompt is cancelled mid-way (the batch is trimmed on the left); the others decode as alone."""
    model, family, prompts = one_layer
    cfg = replace(ONE_LAYER_CONFIGS["confidence"], use_cache=mode)
    rows = staggered(model, family, cfg, prompts, [0, 0, 0, 1], remove_at=(3, 2))
    assert sorted(rows) == [0, 1, 3]
    for i in rows:
        assert_same(rows[i], alone(model, family, cfg, prompts[i], SEEDS[i]), (mode, i))


def test_generate_equals_the_rows_decoded_alone(fixture_model):
    model, _, family = fixture_model
    cfg = replace(CONFIGS["entropy_multi"], seed=11)  # generate seeds the prompt at sorted position k with 11 + k
    out = generate(model, family, PROMPTS, cfg)
    for k, i in enumerate(sorted(range(4), key=lambda i: len(PROMPTS[i]))):
        ref = alone(model, family, cfg, PROMPTS[i], 11 + k)
        assert out.tokens[i].tolist() == ref.tokens and out.reveal_step[i].tolist() == ref.reveal_step
        assert int(out.nfe[i]) == ref.nfe and int(out.num_tokens[i]) == ref.num_tokens


@pytest.mark.parametrize("stop_at_eos", [False, True])
def test_final_prefix_grows_and_ends_as_the_result(fixture_model, stop_at_eos):
    model, _, family = fixture_model
    cfg = replace(CONFIGS["confidence"], stop_at_eos=stop_at_eos)
    state = DecodeState(model, family, cfg)
    handles = state.add(PROMPTS)
    prefixes = {h: [] for h in handles}
    grew = 0
    while state.num_live:
        state.step()
        for h in handles:
            now = state.final_prefix(h)
            assert now[:len(prefixes[h])] == prefixes[h]  # only ever extended
            assert family.mask_token_id not in now and not set(now) & set(family.stop_token_ids)
            grew += len(now) > len(prefixes[h])
            prefixes[h] = now
    assert grew > len(handles)  # streamed in several pieces
    for h in handles:
        result = state.result(h)
        assert result.finished and prefixes[h] == result.tokens[:result.num_tokens]


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, **kwargs):
        self.calls += 1
        return self.model(input_ids, **kwargs)


def test_empty_state_steps_do_nothing(fixture_model):
    model, _, family = fixture_model
    counting = Counting(model)
    state = DecodeState(counting, family, DecodeConfig(gen_length=8, block_length=8, policy="confidence",
                                                       threshold=0.05))
    assert state.num_live == 0 and state.step() == [] and counting.calls == 0
    a, b = state.add(PROMPTS[:2])
    steps = 0
    while state.num_live:
        state.step()
        steps += 1
    assert counting.calls == steps and state.step() == [] and counting.calls == steps  # finished rows: no forward
    state.remove(a)
    state.remove(b)
    assert state.step() == [] and counting.calls == steps
    (c,) = state.add(PROMPTS[2:3])
    assert c not in (a, b)  # handles stay unique after removals
    with pytest.raises(KeyError):
        state.result(a)


@pytest.mark.parametrize("mode", ["none", "dual"])
def test_graph_wrapper_with_rows_joining_and_leaving(one_layer, mode):
    """Under the CUDA-graph wrapper (its static-buffer path runs on the CPU) the cache keeps its keys/values in
    the wrapper's buffers across re-padding, joining and leaving rows: same rows as the bare model alone."""
    from tadllm.decoding.graphs import CUDAGraphModel

    model, family, prompts = one_layer
    cfg = replace(ONE_LAYER_CONFIGS["confidence"], use_cache=mode)
    wrapped = CUDAGraphModel(model, capture_after=1)
    rows = staggered(wrapped, family, cfg, prompts, ADMIT_AT, remove_at=(4, 0))
    for i in rows:
        assert_same(rows[i], alone(model, family, cfg, prompts[i], SEEDS[i]), (mode, i))
    assert wrapped.num_graphs > 0


def test_cache_keeps_its_keys_in_the_wrapper_buffers_after_rows_join(one_layer):
    """Cached steps read the keys/values in place (no copy per replay) only if they live in the wrapper's buffers."""
    from tadllm.decoding.graphs import CUDAGraphModel

    model, family, prompts = one_layer
    wrapped = CUDAGraphModel(model, capture_after=1)
    state = DecodeState(wrapped, family, replace(ONE_LAYER_CONFIGS["confidence"], use_cache="dual"))
    state.add(prompts[1:2])
    state.step()
    cache = state.forward.cache
    owned = lambda: all(k.untyped_storage().data_ptr() in wrapped._buffer_storages  # noqa: E731
                        for k in cache.keys + cache.values)
    assert owned()
    state.add(prompts[2:3])  # longer: every row is padded on the left, and a row joins
    assert cache.P == 9 and owned()
    state.step()
    state.remove(state.handles[1])  # the batch is trimmed back
    assert cache.P == 3 and cache.B == 1 and owned()


def test_uncached_forward_passes_the_mask_only_for_padded_rows(fixture_model):
    """The rows of a step decide the mask on the host: padded rows pass it with `padded=True` (the model then
    need not read it), rows without padding pass none, even while a finished padded row is still in the batch."""
    model, _, family = fixture_model
    calls = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, input_ids, attention_mask=None, position_ids=None, logits_range=None, padded=None):
            calls.append((input_ids.shape[0], attention_mask is not None, padded))
            return model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         logits_range=logits_range, padded=padded)

    state = DecodeState(Spy(), family, CONFIGS["two_per_step"])
    short, long = state.add([PROMPTS[1], PROMPTS[2]])  # 3 and 9 tokens: the first row is padded
    state.step()
    assert calls[-1] == (2, True, True)
    assert state.rows_padded([1]) is False and state.rows_padded([0, 1]) is True
    state.done[0] = True  # as if the padded row had finished (it stays in the batch until removed)
    state._plan = None  # planned again from the device state
    state.step()
    assert calls[-1] == (1, False, None)
