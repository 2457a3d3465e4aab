"""Shared fixtures: the reference LLaDA fixture folder and tiny random LLaDA checkpoints."""

import os
from pathlib import Path

import pytest
import torch

from tadtest import tiny_llada_config

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; TADLLM_SHARED points elsewhere (e.g. a copy carried to the GPU machine)
SHARED = Path(os.environ.get("TADLLM_SHARED", REPO.parent / "shared"))
LLADA_FIXTURE = SHARED / "fixtures" / "llada-tiny"


@pytest.fixture(scope="session")
def llada_fixture_dir():
    if not (LLADA_FIXTURE / "config.json").exists():
        pytest.skip(f"shared fixture missing at {LLADA_FIXTURE}")
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
