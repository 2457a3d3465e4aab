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
