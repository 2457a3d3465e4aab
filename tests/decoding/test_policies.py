"""Unmasking policies and block schedules on hand-built tensors."""

import math

import pytest
import torch

from tadllm.decoding import policies
from tadllm.decoding.config import DecodeConfig
from tadllm.decoding.policies import select_confidence, select_entropy
from tadllm.decoding.schedule import BlockState, multi_block_regions, semi_ar_regions


def test_propose_never_returns_mask_and_computes_confidence_entropy():
    logits = torch.tensor([[[0.0, 0.0, 10.0], [math.log(3.0), 0.0, 0.0]]])
    tokens, conf, ent = policies.propose(logits.clone(), mask_token_id=2)
    assert tokens.tolist() == [[0, 0]]
    assert conf[0, 0] == pytest.approx(0.5) and conf[0, 1] == pytest.approx(0.75)
    assert ent[0, 0] == pytest.approx(math.log(2.0))
    p = torch.tensor([0.75, 0.25])
    assert ent[0, 1] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-5)


def test_sampling_is_seeded():
    logits = torch.randn(2, 5, 11)
    a = policies.propose(logits.clone(), 10, 1.0, torch.Generator().manual_seed(3))[0]
    b = policies.propose(logits.clone(), 10, 1.0, torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b) and not (a == 10).any()


def test_top_k_per_row_counts_and_ties_break_to_lower_index():
    scores = torch.tensor([[0.5, 0.5, 0.9, 0.1], [0.3, 0.2, 0.1, 0.0]])
    active = torch.tensor([[True, True, True, True], [False, True, True, True]])
    chosen = policies.select_top_k(scores, active, torch.tensor([2, 1]))
    assert chosen.tolist() == [[True, False, True, False], [False, True, False, False]]


def test_confidence_threshold_is_strict_and_forces_one():
    conf = torch.tensor([[0.9, 0.95, 0.2], [0.1, 0.3, 0.2]])
    active = torch.ones(2, 3, dtype=torch.bool)
    chosen = policies.select_confidence(conf, active, active, threshold=0.9)
    assert chosen.tolist() == [[False, True, False], [False, True, False]]


def test_entropy_threshold_reveals_low_entropy_and_forces_lowest():
    ent = torch.tensor([[0.1, 0.6, 0.4], [2.0, 1.5, 3.0]])
    active = torch.ones(2, 3, dtype=torch.bool)
    chosen = policies.select_entropy(ent, active, active, threshold=0.5)
    assert chosen.tolist() == [[True, False, True], [False, True, False]]


def test_inactive_positions_never_chosen_even_when_confident():
    conf = torch.tensor([[0.99, 0.1, 0.2]])
    active = torch.tensor([[False, True, True]])
    chosen = policies.select_confidence(conf, active, active, threshold=0.5)
    assert chosen.tolist() == [[False, False, True]]


def test_semi_ar_region_is_first_unfinished_block():
    masked = torch.tensor([[False, False, True, True, True, True], [False, False, False, False, True, False]])
    active, forced = semi_ar_regions(masked, block_length=2)
    assert active.tolist() == [[False, False, True, True, False, False], [False, False, False, False, True, False]]
    assert torch.equal(active, forced)


def test_multi_block_opens_and_activates_per_thresholds():
    # 3 blocks of 4; block 0 is 50% decoded.
    masked = torch.tensor([[False, False, True, True] + [True] * 8])
    state = BlockState.start(1, 3, "cpu")
    start = state
    active, forced, state = multi_block_regions(masked, 4, state, add_threshold=0.5, activate_threshold=0.75,
                                                reveal="activated")
    assert state.opened.tolist() == [2]  # block 1 opened (block 0 reached 0.5)
    assert state.full.tolist() == [[True, False, False]]  # but not active: block 0 < 0.75 decoded
    assert active[0].tolist() == [False, False, True, True] + [False] * 8
    opened, _, _ = multi_block_regions(masked, 4, start, add_threshold=0.5, activate_threshold=0.75)
    assert opened[0].tolist() == [False, False, True, True] + [True] * 4 + [False] * 4  # the reference's rule
    masked2 = torch.tensor([[False, False, False, True] + [True] * 8])
    active, forced, state = multi_block_regions(masked2, 4, state, add_threshold=0.5, activate_threshold=0.75,
                                                reveal="activated")
    assert state.full.tolist() == [[True, True, False]]
    assert active[0].tolist() == [False, False, False, True] + [True] * 4 + [False] * 4
    assert forced[0].tolist() == [False, False, False, True] + [False] * 8
    assert state.opened.tolist() == [2]  # block 1 is 0% decoded: block 2 stays closed


def test_config_errors():
    with pytest.raises(ValueError, match="divide gen_length"):
        DecodeConfig(gen_length=64, block_length=32, steps=48)
    with pytest.raises(ValueError, match="must divide gen_length"):
        DecodeConfig(gen_length=64, block_length=24)
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        DecodeConfig(gen_length=64, block_length=16, steps=2)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        DecodeConfig(policy="confidence", threshold=1.5)
    with pytest.raises(ValueError, match="needs a threshold"):
        DecodeConfig(policy="entropy")
    with pytest.raises(ValueError, match="unknown policy"):
        DecodeConfig(policy="greedy")
    with pytest.raises(ValueError, match="threshold policy"):
        DecodeConfig(multi_block=True)
    with pytest.raises(ValueError, match="unknown decoding option"):
        DecodeConfig.from_dict({"treshold": 0.5})


# ------------------------------------------------- multi-block reveal rules on hand-built entropies
def _two_blocks_step(entropy, masked, reveal="opened", threshold=0.5):
    """One multi-block step on 2 blocks of 4: block 0 is 50 % decoded, so block 1 is opened (add threshold
    0.5) but only semi-activated (activation needs 0.75)."""
    state = BlockState.start(1, 2, "cpu")
    active, forced, state = multi_block_regions(masked, 4, state, add_threshold=0.5, activate_threshold=0.75,
                                                reveal=reveal)
    assert state.opened.tolist() == [2] and state.full.tolist() == [[True, False]]
    return select_entropy(entropy, active, forced, threshold, fallback_anywhere=reveal == "opened")


MASKED = torch.tensor([[False, False, True, True, True, True, True, True]])


def test_a_semi_activated_block_reveals_tokens_that_pass():
    entropy = torch.tensor([[9.0, 9.0, 0.1, 3.0, 3.0, 0.2, 3.0, 0.3]])
    chosen = _two_blocks_step(entropy, MASKED)
    assert chosen[0].nonzero().flatten().tolist() == [2, 5, 7]


def test_nothing_passes_reveals_the_best_of_the_whole_opened_region_and_of_the_first_block():
    """The fallback lands in the semi-activated block; the first block got nothing, so it reveals its best
    position too: two reveals in one step."""
    entropy = torch.tensor([[9.0, 9.0, 2.0, 1.5, 3.0, 0.9, 3.0, 4.0]])
    chosen = _two_blocks_step(entropy, MASKED)
    assert chosen[0].nonzero().flatten().tolist() == [3, 5]


def test_fallback_inside_the_first_block_is_a_single_reveal():
    entropy = torch.tensor([[9.0, 9.0, 2.0, 0.7, 3.0, 0.9, 3.0, 4.0]])
    chosen = _two_blocks_step(entropy, MASKED)
    assert chosen[0].nonzero().flatten().tolist() == [3]


def test_a_pass_only_in_a_later_block_still_forces_the_first_block():
    entropy = torch.tensor([[9.0, 9.0, 2.0, 1.5, 0.1, 3.0, 3.0, 4.0]])
    chosen = _two_blocks_step(entropy, MASKED)
    assert chosen[0].nonzero().flatten().tolist() == [3, 4]


def test_activated_rule_keeps_semi_activated_blocks_silent():
    entropy = torch.tensor([[9.0, 9.0, 2.0, 1.5, 0.1, 0.9, 3.0, 4.0]])
    chosen = _two_blocks_step(entropy, MASKED, reveal="activated")
    assert chosen[0].nonzero().flatten().tolist() == [3]


def test_confidence_policy_follows_the_same_rules():
    confidence = torch.tensor([[1.0, 1.0, 0.2, 0.3, 0.1, 0.8, 0.1, 0.1]])
    state = BlockState.start(1, 2, "cpu")
    active, forced, _ = multi_block_regions(MASKED, 4, state, 0.5, 0.75)
    chosen = select_confidence(confidence, active, forced, 0.9, fallback_anywhere=True)
    assert chosen[0].nonzero().flatten().tolist() == [3, 5]
    chosen = select_confidence(confidence, active, forced, 0.7, fallback_anywhere=True)
    assert chosen[0].nonzero().flatten().tolist() == [3, 5]  # 5 passes; block 0 still needs its best


def test_multi_block_reveal_option_is_validated():
    with pytest.raises(ValueError, match="multi_block_reveal"):
        DecodeConfig(policy="entropy", threshold=0.5, multi_block=True, multi_block_reveal="all")
