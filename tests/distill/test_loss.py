import math

import pytest
import torch
import torch.nn.functional as F

from tadllm.distill.loss import tad_loss

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def hand_batch():
    """B=1, L=4, V=3. pos 0 revealed; pos 1, 2 near; pos 3 distant."""
    student = torch.tensor([[[5.0, 1.0, 0.0],     # revealed, ignored
                             [0.0, 0.0, 0.0],     # uniform: CE(label 1) = ln 3
                             [0.0, LN2, 0.0],     # p = [1/4, 1/2, 1/4]: CE(label 0) = ln 4
                             [0.0, LN2, 0.0]]])   # distant, p_s = [1/4, 1/2, 1/4]
    teacher = torch.tensor([[[9.0, 9.0, 9.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0],
                             [LN2, 0.0, 0.0]]])   # p_t = [1/2, 1/4, 1/4]
    labels = torch.tensor([[-100, 1, 0, 2]])
    near = torch.tensor([[False, True, True, False]])
    distant = torch.tensor([[False, False, False, True]])
    return student, teacher, labels, near, distant


def test_by_hand_tau1():
    s, t, labels, near, distant = hand_batch()
    loss, stats = tad_loss(s, t, labels, near, distant)
    ce = (LN3 + LN4) / 2
    kl = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.5) + 0.25 * math.log(1.0)  # = ln2 / 4
    assert kl == pytest.approx(LN2 / 4)
    assert float(stats["loss_ce"]) == pytest.approx(ce, abs=1e-6)
    assert float(stats["loss_kl"]) == pytest.approx(kl, abs=1e-6)
    assert float(loss) == pytest.approx(ce + kl, abs=1e-6)
    assert stats["n_near"] == 2 and stats["n_distant"] == 1


def test_by_hand_weights_and_temperature():
    s, t, labels, near, distant = hand_batch()
    tau = 2.0
    loss, stats = tad_loss(s, t, labels, near, distant, ce_weight=0.5, kl_weight=3.0, temperature=tau)
    # softmax(teacher/2) ∝ [√2, 1, 1]; softmax(student/2) ∝ [1, √2, 1]; both normalisers 2 + √2
    r2, z = math.sqrt(2), 2 + math.sqrt(2)
    pt = [r2 / z, 1 / z, 1 / z]
    ps = [1 / z, r2 / z, 1 / z]
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    assert kl == pytest.approx((r2 - 1) / z * 0.5 * LN2)
    ce = (LN3 + LN4) / 2  # CE does not use τ
    assert float(stats["loss_kl"]) == pytest.approx(tau**2 * kl, abs=1e-6)
    assert float(stats["loss_ce"]) == pytest.approx(ce, abs=1e-6)
    assert float(loss) == pytest.approx(0.5 * ce + 3.0 * tau**2 * kl, abs=1e-6)


def test_empty_sets_are_zero_not_nan():
    s, t, labels, near, distant = hand_batch()
    s.requires_grad_(True)
    none = torch.zeros_like(near)
    loss, stats = tad_loss(s, t, labels, none, distant)
    assert float(stats["loss_ce"]) == 0.0 and loss.item() == pytest.approx(LN2 / 4, abs=1e-6)
    loss, stats = tad_loss(s, t, labels, near, none)
    assert float(stats["loss_kl"]) == 0.0 and loss.item() == pytest.approx((LN3 + LN4) / 2, abs=1e-6)
    loss, stats = tad_loss(s, t, labels, none, none)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()  # still part of the graph
    assert s.grad is not None and float(s.grad.abs().sum()) == 0.0


def test_teacher_none_when_kl_weight_zero():
    s, _, labels, near, distant = hand_batch()
    loss, stats = tad_loss(s, None, labels, near, distant, kl_weight=0.0)
    assert float(loss) == pytest.approx((LN3 + LN4) / 2, abs=1e-6) and float(stats["loss_kl"]) == 0.0
    with pytest.raises(ValueError, match="teacher"):
        tad_loss(s, None, labels, near, distant, kl_weight=1.0)


def test_matches_naive_full_tensor_computation():
    torch.manual_seed(0)
    B, L, V, tau = 3, 7, 11, 1.7
    s = torch.randn(B, L, V, requires_grad=True)
    t = torch.randn(B, L, V)
    labels = torch.randint(0, V, (B, L))
    r = torch.randint(-2, 6, (B, L))
    near, distant = (r >= 1) & (r <= 2), r > 2
    loss, _ = tad_loss(s, t, labels, near, distant, ce_weight=0.7, kl_weight=1.3, temperature=tau)
    (g,) = torch.autograd.grad(loss, s)
    # naive: log-softmax over the whole tensor, masked means
    s2 = s.detach().clone().requires_grad_(True)
    ce_all = -F.log_softmax(s2, -1).gather(-1, labels[..., None]).squeeze(-1)
    log_t, log_s = F.log_softmax(t / tau, -1), F.log_softmax(s2 / tau, -1)
    kl_all = (log_t.exp() * (log_t - log_s)).sum(-1)
    naive = 0.7 * (ce_all * near).sum() / near.sum() + 1.3 * tau**2 * (kl_all * distant).sum() / distant.sum()
    (g2,) = torch.autograd.grad(naive, s2)
    assert loss.item() == pytest.approx(naive.item(), abs=1e-5)
    assert torch.allclose(g, g2, atol=1e-6)
    # no gradient to positions outside both sets
    assert float(g[~(near | distant)].abs().sum()) == 0.0


def test_bf16_logits_are_handled_in_float32():
    s, t, labels, near, distant = hand_batch()
    loss, _ = tad_loss(s.bfloat16(), t.bfloat16(), labels, near, distant)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx((LN3 + LN4) / 2 + LN2 / 4, abs=2e-2)


def test_input_errors():
    s, t, labels, near, distant = hand_batch()
    with pytest.raises(ValueError, match="overlap"):
        tad_loss(s, t, labels, near, near)
    with pytest.raises(ValueError, match="shape"):
        tad_loss(s, t[:, :3], labels, near, distant)
    with pytest.raises(ValueError, match="negative"):
        tad_loss(s, t, torch.full_like(labels, -100), near, distant)
