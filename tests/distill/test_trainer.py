import copy
import json

import pytest
import torch

from tadllm.distill.cli import main_train
from tadllm.distill.trainer import build_trainer, model_inputs, response_logits, train
from tadllm.models import load_model

from .conftest import make_records, tiny_config


def full_batch(trainer, n=None):
    ds = trainer.train_dataset
    idx = range(len(ds)) if n is None else range(n)
    return trainer.data_collator([ds[i] for i in idx])


def eval_loss(trainer, batch):
    model = trainer.model
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
    model.train(was)
    return float(loss)


def base_response_logits(model_dir, batch, key="teacher_input_ids"):
    base, _, family = load_model(model_dir, device="cpu")
    mask_key = "teacher_attention_mask" if key.startswith("teacher") else "attention_mask"
    with torch.no_grad():
        out = base(**model_inputs(family, batch[key], batch[mask_key]))
    return response_logits(out.logits, family, batch["labels"].shape[1])


def randomize_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_adapter_disabled_teacher_equals_frozen_base(tiny_model_dir, traj_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_r=4", "lora_alpha=8", "delta=4")
    trainer = build_trainer(cfg)
    assert trainer.teacher is None and trainer.teacher_mode == "disable_adapter"
    randomize_lora(trainer.model)
    trainer.model.train()
    batch = full_batch(trainer, 6)
    teacher = trainer.teacher_logits(trainer.model, batch)
    expected = base_response_logits(tiny_model_dir, batch)
    assert torch.allclose(teacher, expected, atol=1e-5)
    assert trainer.model.training  # mode restored
    lora = [p for n, p in trainer.model.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for p in lora)  # the adapter trains again
    # the adapter is active again for the student: student logits differ from the base
    with torch.no_grad():
        student = trainer.model(**model_inputs(trainer.family, batch["teacher_input_ids"],
                                               batch["teacher_attention_mask"])).logits
    assert not torch.allclose(response_logits(student, trainer.family, 16), expected, atol=1e-3)
    # a full-FT trainer's frozen copy gives the same teacher logits
    full = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "f", "use_peft=false", "delta=4"))
    assert full.teacher_mode == "frozen_copy" and full.teacher is not None
    assert not any(p.requires_grad for p in full.teacher.parameters()) and not full.teacher.training
    assert full.teacher is not full.model
    assert torch.allclose(full.teacher_logits(full.model, batch), teacher, atol=1e-5)


@pytest.mark.parametrize("use_peft", [True, False])
def test_few_steps_reduce_loss(tiny_model_dir, traj_file, tmp_path, use_peft):
    lr = "learning_rate=2e-2" if use_peft else "learning_rate=3e-3"
    cfg = tiny_config(tiny_model_dir, traj_file, tmp_path / "o", f"use_peft={use_peft}", "lora_r=8",
                      "lora_alpha=16", "delta=4", lr, "per_device_train_batch_size=16", "max_steps=15",
                      "steps_per_trajectory=4")
    trainer = build_trainer(cfg)
    batch = full_batch(trainer)
    before = eval_loss(trainer, batch)
    teacher_before = None if use_peft else copy.deepcopy(trainer.teacher.state_dict())
    trainer.train()
    after = eval_loss(trainer, batch)
    assert after < before - 0.05, (before, after)
    logs = [l for l in trainer.state.log_history if "loss" in l]
    assert len(logs) == 15 and all("loss_ce" in l and "loss_kl" in l and l["near_tokens"] > 0 for l in logs)
    for log in logs:  # the logged parts add up to the logged loss (λ = 1, logging every step)
        assert log["loss"] == pytest.approx(log["loss_ce"] + log["loss_kl"], abs=2e-3)
    if not use_peft:  # the frozen teacher did not move
        assert all(torch.equal(v, trainer.teacher.state_dict()[k]) for k, v in teacher_before.items())


def _ga_grads_setup(tiny_model_dir, traj_file, tmp_path, name, *overrides):
    # 4 examples with identical near/distant counts (same reveal order and step), different tokens
    recs = make_records(n=4, length=16, seed=3)
    for r in recs[1:]:
        r["reveal_step"] = recs[0]["reveal_step"]
    items = [{"prompt_ids": r["prompt_ids"], "teacher_prompt_ids": r["teacher_prompt_ids"], "tokens": r["tokens"],
              "reveal_step": r["reveal_step"], "step": 5} for r in recs]
    cfg = tiny_config(tiny_model_dir, traj_file, tmp_path / name, "use_peft=false", "delta=4", "optim=sgd",
                      "learning_rate=0.5", "weight_decay=0", "max_grad_norm=0", "max_steps=1", *overrides)
    trainer = build_trainer(cfg)
    trainer.train_dataset = items
    return trainer, items


def test_gradient_accumulation_matches_bigger_batch(tiny_model_dir, traj_file, tmp_path):
    results = {}
    for name, overrides in {"big": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1"],
                            "ga": ["per_device_train_batch_size=2", "gradient_accumulation_steps=2"],
                            "ga4": ["per_device_train_batch_size=1", "gradient_accumulation_steps=4"]}.items():
        trainer, items = _ga_grads_setup(tiny_model_dir, traj_file, tmp_path, name, *overrides)
        start = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        trainer.train()
        delta = {k: (v.detach() - start[k]) for k, v in trainer.model.named_parameters()}
        results[name] = (delta, trainer.state.log_history[0]["loss"])
    # reference: plain gradient of the mean loss over all 4 examples
    ref_trainer, items = _ga_grads_setup(tiny_model_dir, traj_file, tmp_path, "ref")
    loss = ref_trainer.compute_loss(ref_trainer.model, ref_trainer.data_collator(items))
    loss.backward()
    expected = {k: -0.5 * p.grad for k, p in ref_trainer.model.named_parameters()}
    for name, (delta, logged) in results.items():
        assert logged == pytest.approx(loss.item(), rel=1e-4), name
        for k in expected:
            assert torch.allclose(delta[k], expected[k], atol=1e-6, rtol=1e-4), (name, k)


def test_ce_only_mode_needs_no_teacher(tiny_model_dir, traj_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "use_peft=false", "loss_mode=ce_only",
                      "max_steps=2", "per_device_train_batch_size=8")
    trainer = build_trainer(cfg)
    assert trainer.teacher is None
    trainer.train()
    logs = [l for l in trainer.state.log_history if "loss" in l]
    assert all(l["loss_kl"] == 0 and l["distant_tokens"] == 0 for l in logs)


def test_nonfinite_loss_raises_with_step(tiny_model_dir, traj_file, tmp_path):
    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "use_peft=false",
                                        "kl_weight=0"))
    with torch.no_grad():
        trainer.model.model.transformer.ff_out.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="global step 0"):
        trainer.compute_loss(trainer.model, full_batch(trainer, 4))


def test_build_errors(tiny_model_dir, traj_file, tmp_path):
    bad = make_records(n=2)
    bad[1]["tokens"][3] = 39  # the model's mask id
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"p1.*mask token id 39"):
        build_trainer(tiny_config(tiny_model_dir, path, tmp_path / "o"))
    bad[1]["tokens"][3] = 50  # beyond the vocabulary
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ValueError, match=r"p1.*vocabulary size 40"):
        build_trainer(tiny_config(tiny_model_dir, path, tmp_path / "o"))
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        build_trainer(tiny_config(tiny_model_dir, path, tmp_path / "o"))
    with pytest.raises(ValueError, match="train_data"):
        build_trainer(tiny_config(tiny_model_dir, "", tmp_path / "o"))
    with pytest.raises(ValueError, match="match no linear layer"):
        build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_target_modules=nope"))


def test_lora_targets_cover_blocks_not_head(tiny_model_dir, traj_file, tmp_path):
    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_r=2"))
    names = {n.rsplit(".lora_", 1)[0] for n, p in trainer.model.named_parameters() if p.requires_grad}
    leaf = {n.split(".")[-1] for n in names}
    assert leaf == {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"}
    assert len(names) == 2 * 7 and not any(n.endswith("transformer.ff_out") for n in names)


def test_main_train_end_to_end_and_resume(tiny_model_dir, traj_file, tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dir}\ntrain_data: {traj_file}\nuse_peft: true\n"
                      f"lora_r: 4\nuse_cpu: true\nreport_to: none\ndisable_tqdm: true\n")
    argv = ["--config", str(recipe), f"output_dir={out}", "max_steps=2", "save_steps=1", "logging_steps=1",
            "per_device_train_batch_size=4", "preset=speed"]
    assert main_train(argv) == 0
    saved = json.loads((out / "tad_config.json").read_text())
    assert saved["tad"]["delta"] == 16 and saved["family"]["mask_token_id"] == 39
    assert (out / "adapter_config.json").exists() and (out / "checkpoint-2").is_dir()
    # resume from the last checkpoint and go on to 3 steps
    cfg = tiny_config(tiny_model_dir, traj_file, out, "lora_r=4", "preset=speed", "max_steps=3",
                      "per_device_train_batch_size=4", "resume_from_checkpoint=auto")
    assert train(cfg).state.global_step == 3
    fresh = tiny_config(tiny_model_dir, traj_file, tmp_path / "none", "resume_from_checkpoint=true")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train(fresh)


def test_response_logits_alignment_for_shifted_families():
    from tadllm.models.family import ModelFamily, aligned_logits

    logits = torch.randn(2, 9, 5)
    plain = ModelFamily("llada", 4, 1, 1)
    shifted = ModelFamily("dream", 4, 1, 1, shift_logits=True)
    assert torch.equal(response_logits(logits, plain, 3), logits[:, -3:])
    assert torch.equal(response_logits(logits, shifted, 3), aligned_logits(logits, shifted)[:, -3:])
    assert torch.equal(response_logits(logits, shifted, 3), logits[:, -4:-1])


def test_as_teacher_switches_off_and_restores_exactly(tiny_model_dir, traj_file, tmp_path):
    """Inside: every module in eval mode and every adapter layer off. After: each module's own training flag
    and adapter flag as before (also a module that was deliberately in eval mode), requires_grad untouched."""
    from tadllm.distill.teacher import as_teacher, teacher_parts

    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, tmp_path / "o", "lora_r=4", "lora_alpha=8"))
    model = trainer.model
    model.train()
    frozen_sub = next(m for n, m in model.named_modules() if n.endswith("blocks.0.ff_norm"))
    frozen_sub.eval()
    before = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    modules, layers, prompt_learning = parts = teacher_parts(model)
    assert layers and not prompt_learning
    with as_teacher(model, parts):
        assert not any(m.training for m in model.modules())
        assert all(layer.disable_adapters for layer in layers)
    assert {n: m.training for n, m in model.named_modules()} == before
    assert not any(layer.disable_adapters for layer in layers)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
