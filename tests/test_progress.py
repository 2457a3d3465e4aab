"""`StepProgress`: a decoding bar moves at every step of a batch, not only when the batch ends."""

import torch

from tadllm.progress import StepProgress


class Bar:
    def __init__(self, n=0):
        self.n = n

    def update(self, delta):
        self.n += delta


def test_the_bar_counts_revealed_fractions_then_settles_on_whole_samples():
    bar = Bar(2)  # 2 samples done before (a resumed run)
    steps = StepProgress(bar, interval=0.0)
    revealed = torch.zeros(4, 8, dtype=torch.bool)
    revealed[:, :2] = True  # each of the batch's 4 rows: a quarter revealed
    steps.on_step(1, None, revealed)
    assert bar.n == 3.0
    revealed[:2] = True
    steps.on_step(2, None, revealed)
    assert bar.n == 2 + 2 + 0.5
    steps.done(4)
    assert bar.n == 6


def test_eval_bar_moves_inside_one_batch(monkeypatch):
    """`evaluate` hands the decoding loop `on_step`: with every example in one batch, the bar moves per step."""
    from tadllm import progress
    from tadllm.decoding import DecodeConfig
    from tadllm.eval.runner import evaluate
    from tadllm.models import load_model
    from tadllm.testbed.quickstart import BUNDLED_TEACHER, testbed_task

    seen = []
    real = StepProgress.on_step

    def spy(self, *args):
        real(self, *args)
        seen.append(self.bar.n)

    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    monkeypatch.setattr(StepProgress, "on_step", spy)
    model, tok, family = load_model(BUNDLED_TEACHER, dtype="float32", device="cpu")
    task, _, _ = testbed_task(BUNDLED_TEACHER)
    examples = task.load(split="test", limit=3)
    evaluate(model, tok, family, task, examples, DecodeConfig(gen_length=64, block_length=32, steps=8),
             batch_size=3, progress=True)
    assert len(seen) == 8 and 0 < seen[0] < seen[-1] <= 3
