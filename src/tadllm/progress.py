"""Progress bars that move during a decoding batch, not only after it.

A batch of a few hundred problems takes minutes on a CPU; a bar counted in finished samples would sit at
0 for that long and then jump. `StepProgress` feeds a tqdm bar (counted in samples) from the decoding
loop's two callbacks: after every step (at most every `interval` seconds) the bar shows the finished
samples plus each running row's revealed fraction of its canvas, and a finished batch settles it to the
exact count. tqdm's rate and ETA then come from work actually done.
"""

from __future__ import annotations

import time

INTERVAL = 0.5  # seconds between two updates of a running batch
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}{postfix}]"


def sample_bar(total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0, **kwargs):
    """A tqdm bar on stderr for `total` samples, showing whole samples while counting fractions."""
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr, bar_format=BAR_FORMAT, **kwargs)


class StepProgress:
    """Callbacks for `tadllm.decoding.generate`: `on_step` (partial progress of the running batch) and
    `done` (its `progress` callback: n samples finished)."""

    def __init__(self, bar, interval: float | None = None):
        self.bar, self.interval = bar, INTERVAL if interval is None else interval
        self.base = float(bar.n)  # samples finished before (a resumed run starts above 0)
        self.last = 0.0

    def on_step(self, step, tokens, revealed, indices=None) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        self._show(self.base + float(revealed.float().mean(-1).sum()))

    def done(self, n: int) -> None:
        self.base += n
        self._show(self.base)

    def _show(self, value: float) -> None:
        if value > self.bar.n:
            self.bar.update(value - self.bar.n)
