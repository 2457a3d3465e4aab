"""Report: results.json files -> markdown, PNGs, AUP; published-points YAML."""

import json
from pathlib import Path

import pytest

from tadllm.eval.aup import aup
from tadllm.eval.report import (
    aup_from_yaml,
    aup_main,
    load_results,
    published_points_from_yaml,
    report_main,
    run_labels,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHIPPED_YAML = Path(__file__).resolve().parents[2] / "configs" / "published" / "tad_llada.yaml"
LLADA_AUP = {  # the data_llada table of the published leaderboard
    "GSM8K-CoT": {"LLaDA": 72.55, "TAD-LLaDA-Speed": 648.9793, "TAD-LLaDA-Quality": 503.7575},
    "MATH": {"d3LLM-LLaDA": 100.0681, "TAD-LLaDA-Speed": 190.9874},
    "MBPP": {"TAD-LLaDA-Quality": 89.2655, "D2F": 52.9606},
    "HumanEval": {"TAD-LLaDA-Speed": 107.9659, "Qwen-2.5-7B-it": 67.73},
}


def _records(n_correct, n, nfe, tokens):
    return [{"id": str(i), "correct": i < n_correct, "nfe": nfe, "num_tokens": tokens, "wall_time": 0.1}
            for i in range(n)]


def _run(threshold, n_correct, nfe, with_aggregate=True):
    recs = _records(n_correct, 20, nfe, 64)
    run = {"config": {"policy": "entropy", "threshold": threshold, "gen_length": 256}, "records": recs}
    if with_aggregate:
        run["aggregate"] = {"accuracy": 100.0 * n_correct / 20, "tpf": 64 / nfe, "tokens_per_s": 640.0,
                            "wall_time": 2.0, "n": 20}
    return run


@pytest.fixture
def two_results(tmp_path):
    base = {"model": "llada-8b", "method": "LLaDA", "task": "gsm8k", "runs": [_run(0.0, 15, 64)]}
    tad = {"model": "llada-8b-tad", "method": "TAD-Speed", "task": "gsm8k",
           "runs": [_run(0.3, 16, 16), _run(0.5, 15, 10, with_aggregate=False)]}
    dirs = []
    for name, data in [("base", base), ("tad", tad)]:
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps(data))
        dirs.append(d)
    return dirs


def test_report_writes_markdown_pngs_and_aup(two_results, tmp_path):
    out = report_main(two_results, tmp_path / "report", n_boot=50)
    for key in ("accuracy_vs_tpf", "aup_bar"):
        data = Path(out[key]).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    md = Path(out["markdown"]).read_text()
    assert "LLaDA" in md and "TAD-Speed" in md and "threshold=0.3" in md and "gsm8k" in md
    # y_max = best accuracy of any run (80%); AUP from the runs' (TPF, accuracy) points.
    assert out["y_max"]["gsm8k"] == pytest.approx(80.0)
    expected = aup([(4.0, 80.0), (6.4, 75.0)], 80.0)
    assert out["aup"]["gsm8k"]["TAD-Speed"] == pytest.approx(expected)
    assert out["aup"]["gsm8k"]["LLaDA"] == pytest.approx(75.0)
    assert set(out["aup_ci95"]["gsm8k"]) == {"LLaDA", "TAD-Speed"}
    assert json.loads(Path(out["aup_json"]).read_text())["aup"] == out["aup"]


def test_report_with_published_points(two_results, tmp_path):
    out = report_main(two_results, tmp_path / "report", published=SHIPPED_YAML, n_boot=0)
    table = out["aup"]["gsm8k"]
    # The published GSM8K-CoT methods join the gsm8k task; one's own "LLaDA" keeps its name.
    assert "TAD-LLaDA-Speed" in table and "LLaDA (published)" in table and table["LLaDA"] == pytest.approx(75.0)
    assert out["y_max"]["gsm8k"] == pytest.approx(80.21)
    assert table["TAD-LLaDA-Speed"] == pytest.approx(648.9793, abs=5e-5)
    assert Path(out["aup_bar"]).read_bytes()[:8] == PNG_MAGIC


def test_load_results_fills_missing_aggregate(two_results):
    data = load_results(two_results[1] / "results.json")
    agg = data["runs"][1]["aggregate"]
    assert agg["accuracy"] == pytest.approx(75.0) and agg["tpf"] == pytest.approx(6.4) and agg["n"] == 20


def test_load_results_rejects_bad_schema(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"model": "m", "method": "x", "runs": []}))
    with pytest.raises(ValueError, match="task"):
        load_results(bad)


def test_run_labels():
    runs = [{"config": {"threshold": 0.3, "steps": 256}}, {"config": {"threshold": 0.5, "steps": 256}},
            {"config": {"threshold": 0.7, "steps": 256}, "label": "fast"}]
    assert run_labels(runs) == ["threshold=0.3", "threshold=0.5", "fast"]
    assert run_labels([{"config": {"policy": "entropy", "seed": 1}}]) == ["policy=entropy"]
    assert run_labels([{"config": {}}]) == ["default"]


def test_shipped_yaml_reproduces_published_aup():
    tables = aup_from_yaml(SHIPPED_YAML)
    assert set(tables) == set(LLADA_AUP)
    for task, expected in LLADA_AUP.items():
        for method, value in expected.items():
            assert round(tables[task][method], 4) == pytest.approx(value, abs=1e-6)
    md = aup_main(SHIPPED_YAML)
    assert "| TAD-LLaDA-Speed | 257.0464 |" in md and "| LLaDA | 46.1875 |" in md


def test_yaml_without_y_max_uses_best_accuracy(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("t:\n  methods:\n    a: [[1.0, 60.0], [3.0, 58.0]]\n    b: [[1.0, 70.0]]\n")
    spec = published_points_from_yaml(path)
    assert spec["t"]["y_max"] is None and spec["t"]["methods"]["a"] == [(1.0, 60.0), (3.0, 58.0)]
    assert aup_from_yaml(path)["t"]["a"] == pytest.approx(aup([(1.0, 60.0), (3.0, 58.0)], 70.0))


@pytest.mark.parametrize("text", ["[]", "t: {y_max: 3}", "t: {methods: {a: [[1.0]]}}", "t: {methods: {a: []}}"])
def test_bad_yaml_raises(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ValueError):
        published_points_from_yaml(path)


def test_aup_bars_carry_the_confidence_intervals_and_plots_say_what_the_points_are(two_results, tmp_path):
    pytest.importorskip("matplotlib")
    from tadllm.eval.report import aup_note, plot_aup_bars, points_note, result_rows

    tables = {"gsm8k": {"LLaDA": 75.0, "TAD-Speed": 90.0}}
    plain = plot_aup_bars(tables, tmp_path / "plain.png").read_bytes()
    cis = {"gsm8k": {"LLaDA": (60.0, 80.0), "TAD-Speed": (70.0, 120.0)}}
    with_ci = plot_aup_bars(tables, tmp_path / "ci.png", cis=cis).read_bytes()
    assert with_ci[:8] == PNG_MAGIC and with_ci != plain
    rows = result_rows([load_results(d / "results.json") for d in two_results])
    assert points_note(rows) == "Points: one per threshold, scored on 20 problems; TPF = generated tokens / " \
                                "forward passes."
    assert "95 % CI, 200 bootstrap resamples" in aup_note({"gsm8k": 80.0}, 200)
    assert "CI" not in aup_note({"gsm8k": 80.0}, 0)
