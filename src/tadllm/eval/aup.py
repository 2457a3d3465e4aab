"""AUP (Accuracy Under Parallelism, from d3LLM): one number for an accuracy-vs-TPF curve.

For one method's sweep points ``(rho, y)`` (rho = TPF, y = accuracy in %):

1. merge points with the same rho (their accuracies are averaged),
2. sort by rho; ``y_1`` is the accuracy at the lowest rho,
3. keep only points with ``y >= y_1 - offset`` (offset 5); points below are *dropped*, later points that
   recover are kept (the reference filters, it does not cut the curve at the first drop),
4. ``AUP = rho_1*y_1 + sum_{i>=2} 1/2 (rho_i - rho_{i-1}) (y_i W(y_i) + y_{i-1} W(y_{i-1}))`` with
   ``W(y) = min(exp(-alpha (1 - y/y_max)), 1)``, alpha = 3, y_max = best accuracy of any method on the task.

The first term ``rho_1*y_1`` is *not* weighted: the published single-point entries (e.g. LLaDA on GSM8K:
AUP 72.55 with y_max 80.21) equal rho*y exactly. With these semantics every per-task AUP of the
published LLaDA and Dream leaderboards (``tests/fixtures/leaderboard_aup.json``) is reproduced after
rounding to 4 decimals, which is the precision the leaderboard stores.

Where the reference script asserts, this module has defined behaviour instead: empty input raises
``ValueError``; a single point gives ``rho*y``; duplicate rho are averaged; a curve whose last point drops
more than ``offset`` loses the points below the threshold; ``y > y_max`` gives W = 1.

``bootstrap_aup`` adds a seeded percentile-bootstrap confidence interval over per-sample correctness.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_OFFSET = 5.0
DEFAULT_ALPHA = 3.0
# A point exactly at y_1 - offset is kept; the slack absorbs float error in that subtraction
# (e.g. 43.4 - 5.0 != 38.4 in binary floating point).
_BOUNDARY_TOL = 1e-9

Point = tuple[float, float]


def weight(y: float, y_max: float, alpha: float = DEFAULT_ALPHA) -> float:
    """Quality weight W(y) = min(exp(-alpha (1 - y/y_max)), 1); 1 at or above y_max."""
    if y >= y_max:  # also covers y_max == 0 (a task nobody solves), where the formula divides by zero
        return 1.0
    return min(math.exp(-alpha * (1.0 - y / y_max)), 1.0)


def _validate(points: Sequence[Sequence[float]]) -> list[Point]:
    if points is None or len(points) == 0:
        raise ValueError("AUP needs at least one (tpf, accuracy) point; got none")
    out = []
    for p in points:
        if len(p) != 2:
            raise ValueError(f"each AUP point must be (tpf, accuracy); got {p!r}")
        rho, y = float(p[0]), float(p[1])
        if not (math.isfinite(rho) and math.isfinite(y)):
            raise ValueError(f"AUP point must be finite; got {p!r}")
        if rho <= 0:
            raise ValueError(f"TPF must be > 0; got {p!r}")
        out.append((rho, y))
    ys = [y for _, y in out]
    if 0 < max(ys) <= 1.0:
        # Same check as the reference: accuracies are percentages, and a fraction silently gives a tiny AUP.
        warnings.warn("all accuracies are <= 1: AUP expects percentages (0-100), not fractions",
                      stacklevel=3)
    return out


def _merge_duplicates(points: list[Point]) -> list[Point]:
    # The reference's order among equal rho depends on input order and changes the trapezoids;
    # averaging makes the result order-independent.
    groups: dict[float, list[float]] = {}
    for rho, y in points:
        groups.setdefault(rho, []).append(y)
    return sorted((rho, sum(ys) / len(ys)) for rho, ys in groups.items())


def kept_points(points: Sequence[Sequence[float]], offset: float = DEFAULT_OFFSET) -> list[Point]:
    """The points AUP integrates: validated, duplicates averaged, sorted by TPF, filtered at y_1 - offset."""
    merged = _merge_duplicates(_validate(points))
    threshold = merged[0][1] - offset - _BOUNDARY_TOL
    return [(rho, y) for rho, y in merged if y >= threshold]


def aup(points: Sequence[Sequence[float]], y_max: float, offset: float = DEFAULT_OFFSET,
        alpha: float = DEFAULT_ALPHA) -> float:
    """AUP of one method's points ``[(tpf, accuracy%), ...]`` given the task's ``y_max`` (see module doc)."""
    if not (math.isfinite(y_max) and y_max >= 0):
        raise ValueError(f"y_max must be a non-negative accuracy in %; got {y_max!r}")
    kept = kept_points(points, offset)
    rho_1, y_1 = kept[0]
    total = rho_1 * y_1  # unweighted, as in the reference and the published single-point entries
    for (rho_a, y_a), (rho_b, y_b) in zip(kept, kept[1:]):
        total += 0.5 * (rho_b - rho_a) * (y_b * weight(y_b, y_max, alpha) + y_a * weight(y_a, y_max, alpha))
    return total


def default_y_max(methods: Mapping[str, Sequence[Sequence[float]]]) -> float:
    """Best accuracy of any point of any method (the leaderboard's y_max)."""
    ys = [float(p[1]) for pts in methods.values() for p in pts]
    if not ys:
        raise ValueError("cannot take y_max of methods without points")
    return max(ys)


def aup_table(methods: Mapping[str, Sequence[Sequence[float]]], y_max: float | None = None,
              offset: float = DEFAULT_OFFSET, alpha: float = DEFAULT_ALPHA) -> dict[str, float]:
    """AUP of every method on one task; ``y_max`` defaults to the best accuracy of any method."""
    if not methods:
        return {}
    y_max = default_y_max(methods) if y_max is None else y_max
    return {name: aup(pts, y_max, offset, alpha) for name, pts in methods.items()}


def mean_aup(per_task: Mapping[str, Mapping[str, float]], ndigits: int | None = None) -> dict[str, float]:
    """Mean AUP over tasks for the methods present in *every* task (others are not comparable).

    With ``ndigits`` the per-task values are rounded before averaging and the mean is rounded too, which
    is how the published leaderboard's ``mean_aup`` was computed (``ndigits=4`` reproduces it exactly).
    """
    tables = list(per_task.values())
    if not tables:
        return {}
    common = [m for m in tables[0] if all(m in t for t in tables[1:])]
    out = {}
    for method in common:
        vals = [t[method] if ndigits is None else round(t[method], ndigits) for t in tables]
        mean = sum(vals) / len(vals)
        out[method] = mean if ndigits is None else round(mean, ndigits)
    return out


@dataclass(frozen=True)
class AUPInterval:
    """Point estimate and percentile-bootstrap interval of AUP."""

    estimate: float
    low: float
    high: float
    std: float
    confidence: float
    n_boot: int
    paired: bool


def _correctness_matrix(sweep: Sequence[tuple[float, Sequence[bool]]]) -> tuple[list[float], list[np.ndarray]]:
    if not sweep:
        raise ValueError("bootstrap_aup needs at least one (tpf, correctness) sweep point; got none")
    tpfs, arrays = [], []
    for tpf, correct in sweep:
        arr = np.asarray(correct, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise ValueError(f"sweep point with tpf={tpf} has no samples")
        tpfs.append(float(tpf))
        arrays.append(arr)
    return tpfs, arrays


def _resampled_accuracies(arrays: list[np.ndarray], n_boot: int, paired: bool,
                          rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_points) accuracies in % from resampled per-sample correctness."""
    if paired:
        # Same problems for every sweep point: one index draw keeps the points' correlation.
        idx = rng.integers(0, arrays[0].size, size=(n_boot, arrays[0].size))
        return np.stack([100.0 * a[idx].mean(axis=1) for a in arrays], axis=1)
    cols = [100.0 * a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1) for a in arrays]
    return np.stack(cols, axis=1)


def bootstrap_aup(sweep: Sequence[tuple[float, Sequence[bool]]], y_max: float | None = None, *,
                  n_boot: int = 2000, confidence: float = 0.95, seed: int = 0, paired: bool | None = None,
                  offset: float = DEFAULT_OFFSET, alpha: float = DEFAULT_ALPHA) -> AUPInterval:
    """Percentile-bootstrap CI of AUP from per-sample correctness at each sweep point.

    ``sweep`` is ``[(tpf, correct_array), ...]``, one entry per decoding setting. Samples are resampled
    with replacement; TPF is held fixed (its sampling spread is small next to accuracy's). ``paired``
    (default: when all arrays have the same length) resamples the same problem indices at every point,
    which is right when every setting was run on the same problems in the same order. ``y_max`` is held
    fixed (it belongs to the comparison, not to this method); it defaults to the best point accuracy.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    tpfs, arrays = _correctness_matrix(sweep)
    same_len = len({a.size for a in arrays}) == 1
    if paired and not same_len:
        raise ValueError("paired bootstrap needs the same number of samples at every sweep point")
    paired = same_len if paired is None else paired
    point_acc = [100.0 * a.mean() for a in arrays]
    y_max = max(point_acc) if y_max is None else y_max
    estimate = aup(list(zip(tpfs, point_acc)), y_max, offset, alpha)
    accs = _resampled_accuracies(arrays, n_boot, paired, np.random.default_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples near 0% would re-trigger the fraction warning
        samples = np.array([aup(list(zip(tpfs, row)), y_max, offset, alpha) for row in accs])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    std = float(samples.std(ddof=1)) if n_boot > 1 else 0.0
    return AUPInterval(estimate=estimate, low=float(low), high=float(high), std=std,
                       confidence=confidence, n_boot=n_boot, paired=paired)
