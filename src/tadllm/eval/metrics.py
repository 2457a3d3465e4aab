"""Aggregate per-sample evaluation records into accuracy, TPF, throughput and NFE.

A record is a dict with (at least):

- ``correct`` (bool): the verifier's verdict,
- ``nfe`` (int): forward passes the sample's decoding used,
- ``num_tokens`` (int): generated tokens before the first stop token (EOS / end-of-turn),
- ``wall_time`` (float, seconds, optional): the sample's share of its batch's wall time (batch time /
  batch size), so that summing over records gives the total decoding time.

Definitions (``aggregate`` returns all of them):

- ``accuracy`` = 100 * mean(correct).
- ``tpf`` = sum(num_tokens) / sum(nfe): tokens per forward pass over the whole run (the project's TPF,
  and the one AUP uses). Long answers weigh more than short ones.
- ``tpf_sample_mean`` = mean over samples of num_tokens / nfe (samples with nfe = 0 skipped): every
  sample weighs the same. Reported for comparison; it is not the TPF used for AUP.
- ``tokens_per_s`` = sum(num_tokens) / sum(wall_time). When several ranks run concurrently their wall
  times add up, so this is per-device throughput; the cluster throughput is about that times the ranks.
- ``nfe_mean``, ``num_tokens_mean``: plain means; ``wall_time``: the sum of the shares.

Undefined ratios (no forward passes, no wall time) are NaN rather than an exception, so a report can
still be written; an empty record list raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

REQUIRED_KEYS = ("correct", "nfe", "num_tokens")


def _check(records: Sequence[Mapping]) -> None:
    if not records:
        raise ValueError("no records to aggregate")
    for i, rec in enumerate(records):
        missing = [k for k in REQUIRED_KEYS if k not in rec]
        if missing:
            raise KeyError(f"record {i} lacks {missing}; records need {list(REQUIRED_KEYS)}")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def accuracy(records: Sequence[Mapping]) -> float:
    """Accuracy in percent."""
    _check(records)
    return 100.0 * sum(bool(r["correct"]) for r in records) / len(records)


def tpf(records: Sequence[Mapping]) -> float:
    """Tokens per forward pass: total tokens / total forward passes (NaN if no forward pass)."""
    _check(records)
    return _ratio(sum(int(r["num_tokens"]) for r in records), sum(int(r["nfe"]) for r in records))


def tpf_sample_mean(records: Sequence[Mapping]) -> float:
    """Mean of per-sample num_tokens / nfe, skipping samples without forward passes."""
    _check(records)
    ratios = [int(r["num_tokens"]) / int(r["nfe"]) for r in records if int(r["nfe"]) > 0]
    return sum(ratios) / len(ratios) if ratios else math.nan


def tokens_per_second(records: Sequence[Mapping]) -> float:
    """Total tokens / total wall time (NaN if no wall time was recorded)."""
    _check(records)
    return _ratio(sum(int(r["num_tokens"]) for r in records), sum(float(r.get("wall_time", 0.0)) for r in records))


def nfe_mean(records: Sequence[Mapping]) -> float:
    """Mean number of forward passes per sample."""
    _check(records)
    return sum(int(r["nfe"]) for r in records) / len(records)


def aggregate(records: Sequence[Mapping]) -> dict:
    """All run-level metrics of the module docstring, plus the totals they come from."""
    _check(records)
    total_tokens = sum(int(r["num_tokens"]) for r in records)
    total_nfe = sum(int(r["nfe"]) for r in records)
    total_time = sum(float(r.get("wall_time", 0.0)) for r in records)
    return {
        "n": len(records),
        "accuracy": accuracy(records),
        "tpf": _ratio(total_tokens, total_nfe),
        "tpf_sample_mean": tpf_sample_mean(records),
        "tokens_per_s": _ratio(total_tokens, total_time),
        "nfe_mean": total_nfe / len(records),
        "num_tokens_mean": total_tokens / len(records),
        "wall_time": total_time,
        "total_tokens": total_tokens,
        "total_nfe": total_nfe,
    }


def _record_key(rec: Mapping, key: tuple[str, ...]):
    return tuple(rec[k] for k in key)


def merge_records(per_rank: Iterable[Sequence[Mapping]], key: str | Sequence[str] | None = "id") -> list[dict]:
    """Concatenate the records of several ranks (in rank order) and drop duplicates.

    Distributed samplers pad the last batch by repeating samples, so the same problem can come back
    from two ranks; when every record has the ``key`` field(s) (e.g. ``"id"`` or
    ``("problem_id", "sample_idx")``) only its first occurrence is kept. If any record lacks them, or
    ``key`` is None, nothing is dropped.
    """
    merged = [dict(r) for rank in per_rank for r in rank]
    if key is None:
        return merged
    key = (key,) if isinstance(key, str) else tuple(key)
    if not all(all(k in r for k in key) for r in merged):
        return merged
    seen, out = set(), []
    for rec in merged:
        k = _record_key(rec, key)
        if k not in seen:
            seen.add(k)
            out.append(rec)
    return out
