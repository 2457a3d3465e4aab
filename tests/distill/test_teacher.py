"""`tadllm.distill.teacher`: peft's public path and the direct path of `as_teacher` agree."""

import contextlib

import pytest
import torch

from tadllm.distill import teacher as teacher_mod
from tadllm.distill.teacher import as_teacher, fast_path_supported, teacher_parts
from tadllm.distill.trainer import build_trainer, model_inputs, response_logits

from .conftest import tiny_config


def state(model):
    """Every module's training flag, every adapter layer's disabled flag, every parameter's requires_grad."""
    return ({n: m.training for n, m in model.named_modules()},
            {n: m.disable_adapters for n, m in model.named_modules() if hasattr(m, "_disable_adapters")},
            {n: p.requires_grad for n, p in model.named_parameters()})


@pytest.mark.parametrize("version, supported", [
    ("0.21.0", True), ("0.21.2", True), ("0.22.0", False), ("0.20.9", False), ("1.0.0", False),
    ("0.21.0.dev0", True), ("weird", False)])
def test_fast_path_version_range(version, supported):
    assert fast_path_supported(version) is supported


def test_public_and_direct_paths_agree(tiny_model_dir, traj_file, tmp_path):
    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_r=4", "lora_alpha=8"))
    model = trainer.model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.train()
    next(m for n, m in model.named_modules() if n.endswith("blocks.0.ff_norm")).eval()  # a module left in eval
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    kwargs = model_inputs(trainer.family, batch["teacher_input_ids"], batch["teacher_attention_mask"])
    before = state(model)
    parts = teacher_parts(model)
    logits = {}
    for fast in (False, True):
        with torch.no_grad(), as_teacher(model, parts, fast=fast):
            assert not any(m.training for m in model.modules())
            assert all(layer.disable_adapters for layer in parts[1])
            logits[fast] = response_logits(model(**kwargs).logits, trainer.family, 16)
        assert state(model) == before
    assert torch.equal(logits[False], logits[True])
    with torch.no_grad():  # the adapter is on again: the student differs from the teacher
        assert not torch.allclose(response_logits(model(**kwargs).logits, trainer.family, 16), logits[True])


def test_default_follows_the_installed_peft(monkeypatch, tiny_model_dir, traj_file, tmp_path):
    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_r=4", "lora_alpha=8"))
    used = []
    monkeypatch.setattr(teacher_mod, "_direct", lambda *a: used.append("direct") or contextlib.nullcontext())
    monkeypatch.setattr(teacher_mod, "_public", lambda *a: used.append("public") or contextlib.nullcontext())
    for supported in (True, False):
        monkeypatch.setattr(teacher_mod, "fast_path_supported", lambda supported=supported: supported)
        with as_teacher(trainer.model):
            pass
    assert used == ["direct", "public"]
