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
