"""Smoke checks of benchmark scripts whose logic is not covered elsewhere."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_swapped_response_swaps_add_and_mul_only():
    from teacher_targets import swapped_response

    assert swapped_response("74+29=103;103*6=618;618-45=573;####573") == "29+74=103;6*103=618;618-45=573;####573"
    assert swapped_response("no answer marker") is None


def test_teacher_targets_runs_on_the_bundled_teacher(tmp_path):
    from teacher_targets import main

    assert main(["--n", "4", "--out", str(tmp_path), "--name", "t.json"]) == 0
    rows = {r["positions"]: r for r in json.loads((tmp_path / "t.json").read_text())["rows"]}
    near, distant = rows["near (r <= delta)"], rows["distant (r > delta)"]
    assert near["count"] > 0 and distant["count"] > 0
    for r in (near, distant):
        assert 0.0 <= r["p(label)"] <= 1.0 and r["top1=label %"] <= r["top1 valid %"] <= 100.0
    assert distant["p(label)"] > 0.5  # the trained teacher mostly agrees with its own verified trajectories


def test_forward_time_bound_is_the_slower_of_weight_reads_and_matmuls():
    from bench_decoding import forward_time_bound

    # 1e9 weight bytes at 1e12 B/s = 1 ms; 1e8 layer params x 10 positions x 2 FLOPs = 2e9 FLOPs -> 0.002 ms at 1e15
    assert forward_time_bound(10**9, 10**8, 0, 1, 8, 1, 10, 10, 0, 1e12, 1e15) == 1e-3
    # 10,000 positions: 2e12 layer FLOPs + head 2 x 1e6 x 5 + attention 4 x 2 layers x 8 x 1e4 x 1e4 = 2.0081e12
    expected = (2e12 + 1e7 + 4 * 2 * 8 * 1e4 * 1e4) / 1e15
    assert abs(forward_time_bound(10**9, 10**8, 10**6, 2, 8, 1, 10_000, 10_000, 5, 1e12, 1e15) - expected) < 1e-12


def test_roofline_speedup_of_a_cache():
    from bench_decoding import roofline_speedup

    args = dict(weight_bytes=10**9, layer_params=10**8, head_params=0, n_layers=1, d_model=8, batch=1, gen=64,
                block=16, steps=32, bandwidth=1e12, flops=1e15)
    # bandwidth-bound even without a cache: nothing to gain
    assert abs(roofline_speedup("dual", prompt=16, **args) - 1.0) < 1e-9
    # compute-bound full forwards (40,064 positions: 8.0128 ms at peak) against 1 ms cached ones; per block of
    # 8 steps one refresh and 7 cached forwards: 8 x 8.0128 / (8.0128 + 7 x 1) plus attention
    full = (2e8 * 40_064 + 32 * 40_064 ** 2) / 1e15
    cached = max(1e-3, (2e8 * 16 + 32 * 16 * 40_064) / 1e15)
    assert abs(roofline_speedup("dual", prompt=40_000, **args) - 8 * full / (full + 7 * cached)) < 1e-9
    # prefix runs the block start to the end: never ahead of dual, behind once cached forwards are compute-bound
    assert roofline_speedup("prefix", prompt=40_000, **args) == roofline_speedup("dual", prompt=40_000, **args)
    fast_memory = dict(args, bandwidth=1e15)
    assert roofline_speedup("prefix", prompt=40_000, **fast_memory) < roofline_speedup("dual", prompt=40_000,
                                                                                        **fast_memory)


def test_bench_decoding_runs_several_prompt_lengths(tmp_path):
    from bench_decoding import main

    assert main(["--small", "--out", str(tmp_path), "--batch-sizes", "1", "--prompt-length", "8", "24",
                 "--modes", "none", "dual", "--repeat", "1"]) == 0
    rows = json.loads((tmp_path / "decoding_small.json").read_text())["results"]
    assert [(r["prompt_length"], r["mode"]) for r in rows] == [(8, "none"), (8, "dual"), (24, "none"), (24, "dual")]
    for r in rows:  # ratios are within a prompt length; every mode spends the same forwards (TPF 2)
        assert r["tpf"] == 2.0 and (r["x none"] == 1.0) == (r["mode"] == "none")


def test_bench_serve_small_runs_levels_against_one_at_a_time(tmp_path):
    from bench_serve import main

    assert main(["--small", "--out", str(tmp_path), "--clients", "2", "--requests", "3", "--warmup", "0"]) == 0
    levels = json.loads((tmp_path / "serve_small.json").read_text())["levels"]
    assert [level["clients"] for level in levels] == [1, 2]  # one at a time is always measured
    for level in levels:  # random weights, low_confidence over 16 positions in 8 steps, no EOS stop
        assert level["requests"] == 3 and level["nfe"] == 8 and level["tokens"] > 0
        assert level["p95 s"] >= level["p50 s"] > 0 and level["ttft p50 s"] <= level["p95 s"]
        assert [r["index"] for r in level["per_request"]] == [0, 1, 2]  # every request, each once
    assert levels[0]["x one"] == 1.0 and levels[0]["p95 slowdown"] == 1.0


def test_bench_serve_slowdown_pairs_each_request_with_itself_alone():
    from bench_serve import slowdowns

    lone = [{"index": 0, "latency_s": 1.0}, {"index": 1, "latency_s": 4.0}]
    busy = [{"index": 1, "latency_s": 6.0}, {"index": 0, "latency_s": 3.0}]  # finished in another order
    assert slowdowns(busy, lone) == [1.5, 3.0]


def test_profile_serve_step_small_alternates_packed_and_split(tmp_path):
    from profile_serve_step import main

    assert main(["--small", "--device", "cpu", "--out", str(tmp_path), "--batch-sizes", "4", "--steps", "3",
                 "--every", "1", "--rounds", "2"]) == 0
    result = json.loads((tmp_path / "profile_serve_step.json").read_text())["results"]["4"]
    packed, split = result["packed"], result["split"]
    assert len(packed["step_ms_by_round"]) == len(split["step_ms_by_round"]) == 2
    # rows joined a step apart: some measured steps mix refreshing and cached rows, one call packed, two split
    assert packed["calls_per_step"]["packed"] > 0 and split["calls_per_step"]["packed"] == 0
    assert split["calls_per_step"]["refresh"] > 0 and split["calls_per_step"]["cached"] > 0
    for variant in (packed, split):  # the median of all steps lies between the rounds' medians
        assert min(variant["step_ms_by_round"]) <= variant["step_ms"] <= max(variant["step_ms_by_round"])
    assert packed["top_ops"]
