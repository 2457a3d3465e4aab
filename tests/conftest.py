"""Shared fixtures: the reference LLaDA fixture folder and tiny random LLaDA checkpoints."""

from pathlib import Path

import pytest
import torch

from tadtest import FIXTURES, require_fixture, tiny_llada_config

LLADA_FIXTURE = FIXTURES / "llada-tiny"  # vendored in the repository: see tests/fixtures/README.md


@pytest.fixture(scope="session")
def llada_fixture_dir() -> Path:
    for name in ("config.json", "model.safetensors", "reference_logits.safetensors", "state_dict_shapes.json"):
        require_fixture(LLADA_FIXTURE / name)
    return LLADA_FIXTURE


@pytest.fixture(scope="session")
def fixture_model(llada_fixture_dir):
    from tadllm.models import load_model

    return load_model(llada_fixture_dir, dtype="float32", device="cpu")


@pytest.fixture
def tiny_llada(tmp_path):
    from tadllm.models.llada import LLaDAModelLM

    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config())
    path = tmp_path / "tiny-llada"
    model.save_pretrained(path)
    return path
