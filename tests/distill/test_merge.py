import json

import pytest
import torch

from tadllm.distill.merge import main_merge, merge_adapter
from tadllm.distill.trainer import build_trainer, save_result
from tadllm.models import load_model

from .conftest import tiny_config


def test_merge_gives_same_logits_as_peft_model(tiny_model_dir, traj_file, tmp_path):
    out = tmp_path / "adapter"
    trainer = build_trainer(tiny_config(tiny_model_dir, traj_file, out, "lora_r=4", "lora_alpha=8"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    save_result(trainer)
    assert (out / "adapter_config.json").exists() and (out / "tad_config.json").exists()

    merged_dir = merge_adapter(out, base=tiny_model_dir, out_dir=tmp_path / "merged")
    model, tok, family = load_model(merged_dir, device="cpu")
    assert family.mask_token_id == 39 and model.config.mask_token_id == 39
    assert json.loads((merged_dir / "config.json").read_text())["mask_token_id"] == 39
    assert not any("lora" in k for k in model.state_dict())

    ids = torch.randint(2, 39, (3, 12), generator=g)
    ids[:, 6:] = 39
    attn = torch.ones_like(ids)
    attn[0, :2] = 0
    peft_model = trainer.model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=ids, attention_mask=attn).logits
        got = model(input_ids=ids, attention_mask=attn).logits
        base_logits = load_model(tiny_model_dir, device="cpu")[0](input_ids=ids, attention_mask=attn).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base_logits, atol=1e-3)  # the adapter did change something

    # CLI, base read from the adapter's config
    assert main_merge([str(out), "--out", str(tmp_path / "merged2")]) == 0
    again = load_model(tmp_path / "merged2", device="cpu")[0]
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids, attention_mask=attn).logits, expected, atol=1e-5)


def test_merge_rejects_non_adapter(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        merge_adapter(tiny_model_dir, base=tiny_model_dir, out_dir=tmp_path / "m")
