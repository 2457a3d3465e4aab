"""The TAD loss (docs/method.md §4), computed only over the selected rows of the logits.

```
L = ce_weight * mean_{(b,i) in near}    CE(student[b,i], labels[b,i])
  + kl_weight * tau^2 * mean_{(b,i) in distant} KL(softmax(teacher[b,i]/tau) || softmax(student[b,i]/tau))
```

- Each term is a mean over its own token set *in this batch*; an empty set contributes exactly 0 (never
  NaN) and stays connected to the graph so `backward()` works even when both sets are empty.
- Memory: the rows of each set are gathered first (`logits[near]`, `logits[distant]`, shape (N, V)) and the
  log-softmax runs in float32 on those rows only, never on the whole (B, T, V) tensor.
- Logits must already be aligned (index i predicts token i): the caller applies
  `tadllm.models.aligned_logits` and slices the response positions.
- Gradient accumulation: this is a *mean-per-micro-batch* loss. `TADTrainer` lets the Hugging Face Trainer
  divide it by the number of accumulation steps (and disables the `num_items_in_batch` path), so the update
  is the average of the micro-batch means, the same scale as one bigger batch; nothing here divides again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero_like_graph(rows: torch.Tensor) -> torch.Tensor:
    """A float32 zero that is part of `rows`' graph (sum over an empty tensor)."""
    return rows.float().sum() * 0.0


def ce_rows(student_rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of student rows (N, V) against labels (N,); 0 when N == 0."""
    if student_rows.shape[0] == 0:
        return _zero_like_graph(student_rows)
    return F.cross_entropy(student_rows.float(), labels.long(), reduction="mean")


def kl_rows(student_rows: torch.Tensor, teacher_rows: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """tau^2 * mean over rows of KL(softmax(teacher/tau) || softmax(student/tau)); 0 when there are no rows."""
    if student_rows.shape != teacher_rows.shape:
        raise ValueError(f"student rows {tuple(student_rows.shape)} and teacher rows {tuple(teacher_rows.shape)} "
                         f"differ in shape")
    if student_rows.shape[0] == 0:
        return _zero_like_graph(student_rows)
    tau = float(temperature)
    log_s = F.log_softmax(student_rows.float() / tau, dim=-1)
    log_t = F.log_softmax(teacher_rows.detach().float() / tau, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    return kl.mean() * (tau * tau)


def tad_loss_rows(student_near: torch.Tensor, labels_near: torch.Tensor, student_distant: torch.Tensor,
                  teacher_distant: torch.Tensor | None, ce_weight: float = 1.0, kl_weight: float = 1.0,
                  temperature: float = 1.0) -> tuple[torch.Tensor, dict]:
    """The TAD loss on already gathered rows: near rows (Nn, V) with labels (Nn,), distant rows (Nd, V)
    of the student and (Nd, V) of the teacher (may be None when `kl_weight == 0` or Nd == 0)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    loss_ce = ce_rows(student_near, labels_near)
    n_distant = int(student_distant.shape[0])
    if n_distant and kl_weight != 0:
        if teacher_distant is None:
            raise ValueError("teacher logits are required when kl_weight != 0 and the distant set is not empty")
        loss_kl = kl_rows(student_distant, teacher_distant, temperature)
    else:
        loss_kl = _zero_like_graph(student_distant)
    loss = ce_weight * loss_ce + kl_weight * loss_kl
    stats = {"loss_ce": loss_ce.detach(), "loss_kl": loss_kl.detach(), "n_near": int(student_near.shape[0]),
             "n_distant": n_distant}
    return loss, stats


def tad_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
             near: torch.Tensor, distant: torch.Tensor, ce_weight: float = 1.0, kl_weight: float = 1.0,
             temperature: float = 1.0) -> tuple[torch.Tensor, dict]:
    """TAD loss over aligned logits.

    Args:
        student_logits: (..., V), e.g. (B, L, V) over the response positions, index i predicting token i.
        teacher_logits: same shape as `student_logits`, or None when `kl_weight == 0`.
        labels: (...) long, the trajectory tokens; only entries under `near` are read (must be >= 0).
        near, distant: (...) bool masks (disjoint), see `tadllm.distill.partition.near_distant_masks`.
        ce_weight, kl_weight: λ_CE and λ_KL.  temperature: τ of the distillation softmax (the KL term is
            multiplied by τ²; the CE term does not use τ).

    Returns:
        `(loss, stats)`: a scalar float32 loss and `{"loss_ce", "loss_kl"` (detached scalars; `loss_kl`
        already includes τ², so `loss = ce_weight * loss_ce + kl_weight * loss_kl`), `"n_near", "n_distant"}`
        (ints).
    """
    near, distant = near.bool(), distant.bool()
    shape = student_logits.shape[:-1]
    for name, t in (("labels", labels), ("near", near), ("distant", distant)):
        if t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {tuple(shape)} (student logits "
                             f"{tuple(student_logits.shape)} without the vocabulary dimension)")
    if teacher_logits is not None and teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} differ in shape; both must be aligned the same way")
    if bool((near & distant).any()):
        raise ValueError("near and distant masks overlap; a position belongs to at most one set")
    labels_near = labels[near]
    if labels_near.numel() and bool((labels_near < 0).any()):
        raise ValueError("labels under the near mask must be token ids (found a negative / ignore label)")
    student_near = student_logits[near]
    student_distant = student_logits[distant]
    teacher_distant = None
    if teacher_logits is not None and kl_weight != 0:
        teacher_distant = teacher_logits[distant]
    return tad_loss_rows(student_near, labels_near, student_distant, teacher_distant, ce_weight=ce_weight,
                         kl_weight=kl_weight, temperature=temperature)
