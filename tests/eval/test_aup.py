"""AUP: the published leaderboards as reference values, plus the edge cases the reference script asserts on."""

import json
import math

import numpy as np
import pytest

from tadllm.eval.aup import aup, aup_table, bootstrap_aup, kept_points, mean_aup, weight
from tadtest import FIXTURES, require_fixture

LEADERBOARD = FIXTURES / "leaderboard_aup.json"  # the published leaderboards, vendored (tests/fixtures/README.md)


@pytest.fixture(scope="module")
def leaderboard():
    return json.loads(require_fixture(LEADERBOARD).read_text())


def _entries(board):
    for table, spec in board.items():
        for task, tspec in spec["tasks"].items():
            for method, mspec in tspec["methods"].items():
                yield table, task, tspec["y_max"], method, mspec


def test_every_published_aup_is_reproduced(leaderboard):
    # The leaderboard stores 4 decimals, so the unrounded AUP can only agree to 5e-5; rounded, it is exact.
    checked, wrong = 0, []
    for table, task, y_max, method, spec in _entries(leaderboard):
        value = aup(spec["points"], y_max)
        checked += 1
        if abs(round(value, 4) - spec["aup"]) > 1e-6 or abs(value - spec["aup"]) > 5e-5:
            wrong.append((table, task, method, value, spec["aup"]))
    assert checked >= 60
    assert not wrong


def test_published_y_max_is_best_accuracy_of_any_method(leaderboard):
    for spec in leaderboard.values():
        for task, tspec in spec["tasks"].items():
            methods = {m: s["points"] for m, s in tspec["methods"].items()}
            table = aup_table(methods)  # default y_max
            for method, value in table.items():
                assert round(value, 4) == pytest.approx(tspec["methods"][method]["aup"], abs=1e-6), (task, method)


def test_every_published_mean_aup_is_reproduced(leaderboard):
    for name, spec in leaderboard.items():
        per_task = {t: aup_table({m: s["points"] for m, s in ts["methods"].items()}, ts["y_max"])
                    for t, ts in spec["tasks"].items()}
        means = mean_aup(per_task, ndigits=4)
        assert set(means) == set(spec["mean_aup"]), name
        for method, ref in spec["mean_aup"].items():
            assert means[method] == pytest.approx(ref, abs=1e-6), (name, method)
        # Unrounded means agree to the leaderboard's precision as well.
        for method, value in mean_aup(per_task).items():
            assert value == pytest.approx(spec["mean_aup"][method], abs=1e-4)


def test_headline_numbers(leaderboard):
    spec = leaderboard["data_llada.yaml"]
    per_task = {t: aup_table({m: s["points"] for m, s in ts["methods"].items()}, ts["y_max"])
                for t, ts in spec["tasks"].items()}
    means = mean_aup(per_task, ndigits=4)
    assert means["TAD-LLaDA-Speed"] == pytest.approx(257.0464, abs=1e-6)
    assert means["LLaDA"] == pytest.approx(46.1875, abs=1e-6)


def test_single_point_is_rho_times_y_unweighted():
    # LLaDA on GSM8K: published AUP 72.55 although W(72.55) < 1 with y_max 80.21.
    assert aup([(1.0, 72.55)], 80.21) == pytest.approx(72.55)
    assert aup([(2.0, 50.0)], 90.0) == pytest.approx(100.0)


def test_empty_input_raises_clear_error():
    with pytest.raises(ValueError, match="at least one"):
        aup([], 80.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_aup([], 80.0)


def test_two_points_hand_computed():
    y_max = 80.0
    expected = 1.0 * 78.0 + 0.5 * (5.0 - 1.0) * (76.0 * weight(76.0, y_max) + 78.0 * weight(78.0, y_max))
    assert aup([(5.0, 76.0), (1.0, 78.0)], y_max) == pytest.approx(expected)  # input order does not matter


def test_duplicate_rho_are_averaged_and_order_independent():
    pts = [(1.0, 70.0), (3.0, 68.0), (3.0, 66.0), (5.0, 65.0)]
    merged = [(1.0, 70.0), (3.0, 67.0), (5.0, 65.0)]
    assert kept_points(pts) == merged
    assert aup(pts, 70.0) == pytest.approx(aup(merged, 70.0))
    assert aup(list(reversed(pts)), 70.0) == pytest.approx(aup(merged, 70.0))


def test_duplicate_lowest_rho_defines_y1_by_mean():
    # y_1 = mean(80, 70) = 75, so the threshold is 70 and the 71 point is kept.
    assert kept_points([(1.0, 80.0), (1.0, 70.0), (2.0, 71.0)]) == [(1.0, 75.0), (2.0, 71.0)]


def test_points_below_offset_are_dropped_not_cut():
    # The middle point drops 10 points: it is dropped, the recovered point after it is kept.
    pts = [(1.0, 80.0), (2.0, 70.0), (3.0, 79.0)]
    assert kept_points(pts) == [(1.0, 80.0), (3.0, 79.0)]
    expected = 80.0 + 0.5 * 2.0 * (79.0 * weight(79.0, 80.0) + 80.0 * weight(80.0, 80.0))
    assert aup(pts, 80.0) == pytest.approx(expected)


def test_last_point_dropping_too_far_is_excluded_instead_of_asserting():
    assert aup([(1.0, 80.0), (4.0, 60.0)], 80.0) == pytest.approx(80.0)


def test_point_exactly_at_the_threshold_is_kept():
    # 43.4 - 5.0 is not exactly 38.4 in floating point; the point must still be kept.
    assert len(kept_points([(1.0, 43.4), (3.42, 38.4)])) == 2


def test_weight_is_capped_at_one_when_y_exceeds_y_max():
    assert weight(60.0, 40.0) == 1.0
    assert aup([(1.0, 50.0), (3.0, 60.0)], 40.0) == pytest.approx(50.0 + 0.5 * 2.0 * (60.0 + 50.0))


def test_zero_accuracy_everywhere_gives_zero():
    assert aup_table({"broken": [(1.0, 0.0), (4.0, 0.0)]}) == {"broken": 0.0}


@pytest.mark.parametrize("points", [[(0.0, 50.0)], [(-1.0, 50.0)], [(1.0, math.nan)], [(1.0, 2.0, 3.0)]])
def test_invalid_points_raise(points):
    with pytest.raises(ValueError):
        aup(points, 80.0)


def test_invalid_y_max_raises():
    with pytest.raises(ValueError, match="y_max"):
        aup([(1.0, 50.0)], -1.0)


def test_fractions_warn():
    with pytest.warns(UserWarning, match="percentages"):
        aup([(1.0, 0.8), (2.0, 0.7)], 0.8)


def test_aup_table_defaults_y_max_to_best_accuracy():
    methods = {"a": [(1.0, 60.0), (4.0, 58.0)], "b": [(1.0, 70.0)]}
    assert aup_table(methods) == aup_table(methods, y_max=70.0)
    assert aup_table({}) == {}


def test_mean_aup_only_over_methods_in_every_task():
    per_task = {"t1": {"a": 10.0, "b": 20.0}, "t2": {"a": 30.0}}
    assert mean_aup(per_task) == {"a": 20.0}


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    sweep = [(1.0, rng.random(200) < 0.7), (3.0, rng.random(200) < 0.68), (5.0, rng.random(200) < 0.66)]
    ci = bootstrap_aup(sweep, 75.0, n_boot=300, seed=3)
    again = bootstrap_aup(sweep, 75.0, n_boot=300, seed=3)
    assert ci == again
    assert ci.paired
    assert ci.low <= ci.estimate <= ci.high
    assert ci.high > ci.low and ci.std > 0
    point_acc = [(t, 100.0 * np.mean(c)) for t, c in sweep]
    assert ci.estimate == pytest.approx(aup(point_acc, 75.0))


def test_bootstrap_all_correct_has_zero_width():
    ci = bootstrap_aup([(1.0, [True] * 10), (2.0, [True] * 10)], n_boot=50)
    assert ci.low == ci.high == pytest.approx(ci.estimate) == pytest.approx(100.0 + 0.5 * 1.0 * 200.0)


def test_bootstrap_unequal_lengths():
    sweep = [(1.0, [True, False, True]), (2.0, [True, False])]
    assert not bootstrap_aup(sweep, 80.0, n_boot=20).paired
    with pytest.raises(ValueError, match="paired"):
        bootstrap_aup(sweep, 80.0, n_boot=20, paired=True)
    with pytest.raises(ValueError, match="no samples"):
        bootstrap_aup([(1.0, [])], 80.0)
