"""Fixtures of the trajectory tests: one tiny random LLaDA checkpoint (char tokenizer) per session."""

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import trajhelpers  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model is fastest (and reproducible between processes) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def traj_checkpoint(tmp_path_factory):
    return trajhelpers.make_checkpoint(tmp_path_factory.mktemp("traj-ckpt") / "tiny")


@pytest.fixture(scope="session")
def traj_model(traj_checkpoint):
    from tadllm.models import load_model

    return load_model(traj_checkpoint, dtype="float32", device="cpu")
