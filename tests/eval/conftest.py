"""Fixtures shared by the evaluation tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny random LLaDA saved with the char tokenizer (no chat template)."""
    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM
    from tadllm.testbed.tokenizer import build_char_tokenizer, save_char_tokenizer

    path = tmp_path_factory.mktemp("ckpt") / "tiny-llada-char"
    tok = build_char_tokenizer()
    cfg = LLaDAConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=len(tok),
                      mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, max_sequence_length=256)
    torch.manual_seed(0)
    LLaDAModelLM(cfg).save_pretrained(path)
    save_char_tokenizer(tok, path)
    return path
