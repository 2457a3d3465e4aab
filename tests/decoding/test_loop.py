"""The decoding loop on the fixture model: termination, accounting, batch invariance, schedules."""

import pytest
import torch

from tadllm.decoding import DecodeConfig, generate
from tadllm.decoding.loop import count_tokens

from tadtest import check_decode_accounting, decoding_cases

PROMPTS, CONFIGS = decoding_cases()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decoding_terminates_without_masks_and_accounts_steps(fixture_model, name):
    model, _, family = fixture_model
    cfg = CONFIGS[name]
    out = generate(model, family, PROMPTS, cfg)
    assert not (out.tokens == family.mask_token_id).any()
    check_decode_accounting(out, name)


@pytest.mark.parametrize("name", ["low_confidence", "confidence", "entropy_multi"])
def test_batch_invariance(fixture_model, name):
    model, _, family = fixture_model
    batched = generate(model, family, PROMPTS, CONFIGS[name])
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, family, [prompt], CONFIGS[name])
        assert torch.equal(alone.tokens[0], batched.tokens[i])
        assert alone.nfe[0] == batched.nfe[i]
    split = generate(model, family, PROMPTS, CONFIGS[name], batch_size=2)
    assert torch.equal(split.tokens, batched.tokens)


def test_semi_ar_blocks_are_decoded_in_order(fixture_model):
    model, _, family = fixture_model
    out = generate(model, family, PROMPTS, CONFIGS["confidence"])
    blocks = out.reveal_step.view(4, 4, 8)
    assert (blocks[:, :-1].max(-1).values < blocks[:, 1:].min(-1).values).all()


def test_reveal_steps_replay_the_decoding_states(fixture_model):
    model, _, family = fixture_model
    states = []
    out = generate(model, family, PROMPTS[:2], CONFIGS["entropy_multi"],
                   on_step=lambda step, toks, revealed, idx: states.append((step, toks, revealed, idx)))
    assert len(states) == int(out.nfe.max())
    for step, toks, revealed, idx in states:
        replay = torch.where(out.reveal_step[idx] <= step, out.tokens[idx], family.mask_token_id)
        live = torch.where(revealed, toks, family.mask_token_id)
        assert torch.equal(replay, live)


def test_seeded_sampling_is_deterministic(fixture_model):
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=16, block_length=8, temperature=1.0, seed=7)
    a, b = generate(model, family, PROMPTS, cfg), generate(model, family, PROMPTS, cfg)
    assert torch.equal(a.tokens, b.tokens)


def test_stop_at_eos_finishes_early_and_counts_tokens(fixture_model):
    model, _, family = fixture_model
    from dataclasses import replace

    cfg = CONFIGS["confidence"]
    full = generate(model, family, PROMPTS, cfg)
    early = generate(model, family, PROMPTS, replace(cfg, stop_at_eos=True))
    assert (early.nfe <= full.nfe).all()
    assert torch.equal(early.num_tokens, count_tokens(early.tokens, family.stop_token_ids))
    n = early.num_tokens
    for i in range(len(PROMPTS)):  # the text before the first stop token is the same
        if n[i] < 32:
            assert early.tokens[i, n[i]] in family.stop_token_ids


def test_count_tokens():
    toks = torch.tensor([[3, 4, 1, 5], [3, 3, 3, 3], [1, 1, 1, 1]])
    assert count_tokens(toks, [1]).tolist() == [2, 4, 0]


def test_prompt_longer_than_model_limit_is_an_error(fixture_model):
    model, _, family = fixture_model
    with pytest.raises(ValueError, match="maximum sequence length"):
        generate(model, family, [[5] * 250], DecodeConfig(gen_length=32, block_length=8))


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the operations that make the host wait for a GPU: reading a value (item/bool/int), nonzero and
    boolean-mask indexing (their output size depends on the data); `.tolist()` is counted by a patch."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if name.startswith(("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero")) or (
                name.startswith("index.") and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                                  for i in (args[1] if len(args) > 1 else ()) or ())):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_loop_reads_the_device_once_per_step(fixture_model, monkeypatch, cache):
    """On a GPU every host read idles the device while Python launches the next kernels; a step's numbers
    are fetched in one read (the GPU test checks the same with CUDA's sync debug mode)."""
    model, _, family = fixture_model
    reads = _HostReads()
    tolist = torch.Tensor.tolist

    def counted_tolist(self):
        reads.count += 1
        return tolist(self)

    # tensors made from Python data: on a GPU each is a host-to-device copy, which waits for the device too
    made = []
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _original=original, **k: made.append(1) or _original(*a, **k))
    monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
    cfg = DecodeConfig(gen_length=32, block_length=8, policy="confidence", threshold=0.9, stop_at_eos=True,
                       use_cache=cache)
    with reads:
        out = generate(model, family, PROMPTS[:1], cfg)
    steps = int(out.nfe.max())
    assert steps >= 4
    assert steps <= reads.count <= steps + 3, (reads.count, steps)  # + the check that ends the loop and setup
    assert len(made) <= 6, len(made)  # setting up and returning the batch only, none per step


# ------------------------------------------------------- multi-block decoding against the reference rules
# The fixture's logits are near uniform (entropy ~5.7 nats): at entropy 0.5 nothing passes, so most steps
# reveal the opened region's best token plus the first block's (two reveals); at 5.5 / confidence 0.02 most
# tokens pass at once.
REFERENCE_CASES = [("entropy", 2.0, 0.5, 0.5), ("entropy", 4.0, 0.25, 0.75), ("entropy", 0.5, 0.1, 0.95),
                   ("entropy", 5.5, 0.5, 0.5), ("confidence", 0.05, 0.5, 0.5), ("confidence", 0.02, 0.1, 0.9)]


@pytest.mark.parametrize("policy,threshold,add,activate", REFERENCE_CASES)
def test_multi_block_matches_the_reference_token_for_token(fixture_model, policy, threshold, add, activate):
    """The vectorised loop, batched with left padding, gives each prompt the tokens, reveal steps and NFE
    of the literal reference decoder (tests/reference_multiblock.py)."""
    from reference_multiblock import reference_multi_block

    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=32, block_length=8, policy=policy, threshold=threshold, multi_block=True,
                       block_add_threshold=add, decoded_token_threshold=activate)
    out = generate(model, family, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        tokens, reveal, nfe = reference_multi_block(model, prompt, family.mask_token_id, 32, 8, policy,
                                                    threshold, add, activate)
        assert out.tokens[i].tolist() == tokens
        assert out.reveal_step[i].tolist() == reveal
        assert int(out.nfe[i]) == nfe
    assert out.nfe.float().mean() < 32  # the cases reveal several tokens per step somewhere


def test_multi_block_reveals_in_later_blocks_before_the_first_is_done(fixture_model):
    """With the reference rule, semi-activated blocks reveal tokens: some position of block 2 or later is
    revealed while block 1 still has masks, and the run needs fewer forwards than revealing fully active
    blocks only."""
    model, _, family = fixture_model
    cfg = DecodeConfig(gen_length=32, block_length=8, policy="entropy", threshold=2.0, multi_block=True,
                       block_add_threshold=0.25, decoded_token_threshold=0.95)
    opened = generate(model, family, PROMPTS, cfg)
    activated = generate(model, family, PROMPTS, DecodeConfig(**{**cfg.to_dict(), "multi_block_reveal": "activated"}))
    blocks = opened.reveal_step.view(4, 4, 8)
    assert (blocks[:, 1:].min(-1).values.min(-1).values < blocks[:, 0].max(-1).values).any()
    assert opened.nfe.sum() < activated.nfe.sum()
