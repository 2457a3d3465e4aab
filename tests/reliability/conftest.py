"""Fixtures of the reliability tests: a tiny random LLaDA with the testbed's char tokenizer, arith data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def make_char_checkpoint(path, mask_token_id: int | None = None, seed: int = 0) -> Path:
    """A tiny random LLaDA (d_model 32, 2 layers, 256 positions) + the testbed char tokenizer in `path`."""
    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM
    from tadllm.testbed.tokenizer import build_char_tokenizer, save_char_tokenizer

    path = Path(path)
    tok = build_char_tokenizer()
    cfg = LLaDAConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=len(tok),
                      mask_token_id=tok.mask_token_id if mask_token_id is None else mask_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_sequence_length=256)
    torch.manual_seed(seed)
    LLaDAModelLM(cfg).save_pretrained(path)
    save_char_tokenizer(tok, path)
    return path


@pytest.fixture(scope="session")
def char_ckpt(tmp_path_factory):
    return make_char_checkpoint(tmp_path_factory.mktemp("rel-ckpt") / "tiny")


@pytest.fixture(scope="session")
def char_model(char_ckpt):
    from tadllm.models import load_model

    return load_model(char_ckpt, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def arith_file(tmp_path_factory):
    """24 arith problems as JSONL (tadllm.tasks.arith.write_jsonl), split `test`."""
    from tadllm.tasks.arith import generate_problems, write_jsonl

    return write_jsonl(generate_problems(24, seed=7), tmp_path_factory.mktemp("rel-data") / "test.jsonl")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, like the `OMP_NUM_THREADS=1` subprocesses: the same float results in both, and
    the tiny models run much faster than with several threads on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli_env() -> dict:
    """Environment of a `python -m tadllm.cli` subprocess: this checkout first on the path, one thread."""
    src = str(REPO / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1"}


def tad_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "tadllm.cli", *map(str, args)]
