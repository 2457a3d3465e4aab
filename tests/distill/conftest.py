"""Shared fixtures of the distill tests: a tiny random LLaDA checkpoint and hand-made trajectories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

TINY = dict(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=40, mask_token_id=39,
            eos_token_id=1, pad_token_id=1, max_sequence_length=128)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llada")
    LLaDAModelLM(LLaDAConfig(**TINY)).save_pretrained(path)
    return path


def make_records(n: int = 8, length: int = 16, seed: int = 0, vocab: int = 40, mask_id: int = 39) -> list[dict]:
    """Trajectories with one reveal per step (S = L), random order; ids avoid pad/eos (1) and mask."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        records.append(dict(
            problem_id=f"p{i}", sample_idx=0,
            prompt_ids=rng.integers(2, mask_id, size=int(rng.integers(3, 7))).tolist(),
            teacher_prompt_ids=rng.integers(2, mask_id, size=int(rng.integers(8, 12))).tolist(),
            tokens=rng.integers(2, mask_id, size=length).tolist(),
            reveal_step=(rng.permutation(length) + 1).tolist(), num_steps=length, correct=True,
            text="", answer="", meta=json.dumps({"i": i})))
    return records


@pytest.fixture
def records():
    return make_records()


@pytest.fixture
def traj_file(tmp_path, records):
    path = tmp_path / "traj.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tiny_config(model_dir, train_data, output_dir, *overrides, **kwargs):
    from tadllm.distill.config import load_config

    base = [f"model_name_or_path={model_dir}", f"train_data={train_data}", f"output_dir={output_dir}",
            "use_cpu=true", "save_strategy=no", "logging_steps=1", "disable_tqdm=true", "seed=0",
            "dataloader_num_workers=0"]
    return load_config(None, base + list(overrides), **kwargs)
