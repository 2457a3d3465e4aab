"""`tad quickstart` stages: failure modes (the full run is in test_pipeline.py)."""

import shutil

import pytest
import torch


def test_untrained_teacher_stops_with_a_clear_message(tmp_path):
    """A teacher that gets nothing right leaves no trajectories; the quickstart says so instead of failing
    later in training with a missing-file error."""
    from tadllm.models.llada import LLaDAModelLM
    from tadllm.testbed.quickstart import (BUNDLED_TEACHER, QuickstartConfig, build_trajectories, problems,
                                           testbed_task)

    teacher = tmp_path / "untrained"
    config = LLaDAModelLM.config_class.from_pretrained(BUNDLED_TEACHER)
    torch.manual_seed(0)
    LLaDAModelLM(config).save_pretrained(teacher)
    for name in ("tokenizer.json", "tokenizer_config.json", "testbed.json"):
        shutil.copy(BUNDLED_TEACHER / name, teacher / name)
    cfg = QuickstartConfig(out_dir=str(tmp_path / "q"), teacher=str(teacher), device="cpu", train_problems=4,
                           test_problems=4, batch_size=4)
    task, spec, meta = testbed_task(cfg.teacher)
    train, _ = problems(spec, meta, 4, 4)
    with pytest.raises(RuntimeError, match="no verified-correct trajectory"):
        build_trajectories(cfg, task, train, meta, tmp_path / "q")


def _results(points):
    runs = [{"config": {"policy": "confidence", "threshold": t, "gen_length": 64, "steps": None},
             "aggregate": {"accuracy": acc, "tpf": tpf}} for t, acc, tpf in points]
    return {"runs": runs}


def test_summary_table_labels_points_by_threshold_and_drops_empty_tpf_columns():
    from tadllm.testbed.quickstart import summary_table

    table, numbers = summary_table({
        "teacher": _results([(0.99, 90.0, 11.0), (0.9, 85.0, 14.0)]),
        "tad-speed": _results([(0.99, 96.0, 12.5), (0.9, 93.0, 17.0)]),
    })
    lines = table.splitlines()
    assert lines[0] == "| run (acc % @ TPF) | threshold 0.99 | threshold 0.9 | AUP |"
    assert lines[2].startswith("| teacher | 90.0 @ 11.0 | 85.0 @ 14.0 | ")
    # TPF 4 and 8 lie below every sweep: no column; 12 only in teacher's, 16 only in tad-speed's
    header = next(line for line in lines if line.startswith("| method |"))
    assert header == "| method | runs | AUP mean ± sd | acc % @ TPF 12 | acc % @ TPF 16 |"
    assert "–" in table and numbers["methods"]["teacher"]["acc_at_tpf"][16] is None


def test_stage_estimates_scale_with_the_measured_speed(capsys, monkeypatch):
    from tadllm.testbed import quickstart
    from tadllm.testbed.quickstart import QuickstartConfig, Stages, stage_estimates

    est = stage_estimates(QuickstartConfig(), ["tad-quality", "tad-speed"], 64)
    done = ["load teacher and problems", "teacher trajectories"]
    assert list(est)[:3] == done + ["train tad-quality"]
    predicted = est[done[0]] + est[done[1]]
    clock = iter([0.0, 0.0, 0.0, 2 * predicted])  # both stages take twice their estimate
    monkeypatch.setattr(quickstart.time, "monotonic", lambda: next(clock))
    stages = Stages(est)
    stages.begin(done[0])
    assert "(first estimate)" in capsys.readouterr().out  # nothing measured yet: the COST guess
    stages.begin(done[1])
    stages.begin("train tad-quality")  # so will the rest
    left = 2 * sum(v for k, v in est.items() if k not in done)
    assert f"about {quickstart._fmt(left)} left" in capsys.readouterr().out.splitlines()[-1]


def test_options_parse_alike_as_flags_key_value_and_yaml(tmp_path):
    from tadtest import parsed_three_ways

    from tadllm.testbed.quickstart import QuickstartConfig, build_parser

    settings = {"thresholds": "0.9,0.5", "train_steps": "10", "baselines": "true", "device": "cuda", "threads": "2"}
    parsed = parsed_three_ways(build_parser, [], settings, tmp_path)
    assert parsed[0] == parsed[1] == parsed[2] == (QuickstartConfig(thresholds=[0.9, 0.5], train_steps=10,
                                                                    baselines=True, device="cuda", threads=2),)
    (cfg,) = build_parser().parse(["--tpf1-point", "--seeds", "3"])
    assert cfg.tpf1_point and cfg.seeds == 3 and cfg.thresholds == [0.999, 0.99, 0.95, 0.9, 0.7]
