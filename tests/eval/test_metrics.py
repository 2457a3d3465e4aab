"""Run-level metrics from hand-built per-sample records."""

import math

import pytest

from tadllm.eval.metrics import (
    accuracy,
    aggregate,
    merge_records,
    nfe_mean,
    tokens_per_second,
    tpf,
    tpf_sample_mean,
)

RECORDS = [
    {"id": "a", "correct": True, "nfe": 10, "num_tokens": 100, "wall_time": 0.5},
    {"id": "b", "correct": False, "nfe": 40, "num_tokens": 80, "wall_time": 0.5},
    {"id": "c", "correct": True, "nfe": 50, "num_tokens": 20, "wall_time": 1.0},
    {"id": "d", "correct": True, "nfe": 100, "num_tokens": 200, "wall_time": 2.0},
]


def test_individual_metrics():
    assert accuracy(RECORDS) == pytest.approx(75.0)
    assert tpf(RECORDS) == pytest.approx(400 / 200)  # ratio of totals
    assert tpf_sample_mean(RECORDS) == pytest.approx((10 + 2 + 0.4 + 2) / 4)  # mean of ratios
    assert tokens_per_second(RECORDS) == pytest.approx(400 / 4.0)
    assert nfe_mean(RECORDS) == pytest.approx(50.0)


def test_aggregate_has_the_results_json_keys():
    agg = aggregate(RECORDS)
    assert {"accuracy", "tpf", "tokens_per_s", "wall_time", "n"} <= set(agg)
    assert agg["n"] == 4 and agg["wall_time"] == pytest.approx(4.0)
    assert agg["total_tokens"] == 400 and agg["total_nfe"] == 200
    assert agg["num_tokens_mean"] == pytest.approx(100.0)


def test_undefined_ratios_are_nan():
    recs = [{"correct": False, "nfe": 0, "num_tokens": 0}]
    agg = aggregate(recs)
    assert math.isnan(agg["tpf"]) and math.isnan(agg["tpf_sample_mean"]) and math.isnan(agg["tokens_per_s"])
    assert agg["accuracy"] == 0.0


def test_empty_and_malformed_records():
    with pytest.raises(ValueError, match="no records"):
        aggregate([])
    with pytest.raises(KeyError, match="nfe"):
        aggregate([{"correct": True, "num_tokens": 3}])


def test_merge_records_drops_sampler_padding_duplicates():
    rank0, rank1 = RECORDS[:2], RECORDS[2:] + [dict(RECORDS[0])]  # rank 1 repeats "a" as padding
    merged = merge_records([rank0, rank1])
    assert [r["id"] for r in merged] == ["a", "b", "c", "d"]
    assert aggregate(merged) == aggregate(RECORDS)


def test_merge_records_with_composite_key_or_without_key():
    recs = [{"problem_id": 1, "sample_idx": 0, "correct": True, "nfe": 1, "num_tokens": 1},
            {"problem_id": 1, "sample_idx": 1, "correct": True, "nfe": 1, "num_tokens": 1}]
    assert len(merge_records([recs, recs[:1]], key=("problem_id", "sample_idx"))) == 2
    assert len(merge_records([recs, recs[:1]], key=None)) == 3
    assert len(merge_records([recs, recs[:1]])) == 3  # no "id" field: nothing can be deduplicated
