import pytest
import torch

from tadllm.distill.partition import masked_at, near_distant_masks
from tadllm.trajectories import storage


def state_at(tokens, reveal_step, step, mask_id):
    """The batched form the collator uses: the one `state_at`, of the trajectory storage."""
    return storage.state_at({"tokens": tokens, "reveal_step": reveal_step}, step, mask_id)


def test_near_distant_by_hand():
    reveal = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    step = torch.tensor([2, 0])
    near, distant = near_distant_masks(reveal, step, delta=2)
    # row 0: r = reveal - 2 = [-1, 0, 1, 2, 3, 4]; row 1: r = [6, 5, 4, 3, 2, 1]
    assert near.tolist() == [[False, False, True, True, False, False], [False, False, False, False, True, True]]
    assert distant.tolist() == [[False, False, False, False, True, True], [True, True, True, True, False, False]]
    assert not (near & distant).any()
    # every masked position is in exactly one set
    assert ((near | distant) == masked_at(reveal, step)).all()


def test_delta_boundary_and_large_delta():
    reveal = torch.tensor([[3, 4, 5]])
    near, distant = near_distant_masks(reveal, torch.tensor([2]), delta=1)
    assert near.tolist() == [[True, False, False]] and distant.tolist() == [[False, True, True]]
    near, distant = near_distant_masks(reveal, torch.tensor([0]), delta=100)
    assert near.all() and not distant.any()


def test_state_at():
    tokens = torch.tensor([[11, 12, 13, 14]])
    reveal = torch.tensor([[2, 1, 4, 3]])
    assert state_at(tokens, reveal, torch.tensor([0]), 39).tolist() == [[39, 39, 39, 39]]
    assert state_at(tokens, reveal, torch.tensor([1]), 39).tolist() == [[39, 12, 39, 39]]
    assert state_at(tokens, reveal, torch.tensor([3]), 39).tolist() == [[11, 12, 39, 14]]
    assert state_at(tokens, reveal, torch.tensor([4]), 39).tolist() == [[11, 12, 13, 14]]


@pytest.mark.parametrize("delta", [0, -1, 2.5])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        near_distant_masks(torch.tensor([[1, 2]]), torch.tensor([0]), delta)


def test_bad_shapes():
    with pytest.raises(ValueError, match="step"):
        near_distant_masks(torch.tensor([[1, 2]]), torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="shape"):
        state_at(torch.tensor([[1, 2]]), torch.tensor([[1, 2, 3]]), torch.tensor([0]), 39)
