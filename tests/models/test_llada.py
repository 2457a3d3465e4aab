"""Native LLaDA: the reference fixture's logits, GQA, weight tying, save/load, load_model errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tadtest import tiny_llada_config
from tadllm.models import load_model
from tadllm.models.llada import LLaDAModelLM


def test_fixture_logits_match_reference(fixture_model, llada_fixture_dir):
    model, tokenizer, family = fixture_model
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    with torch.no_grad():
        logits = model(ref["input_ids"]).logits
        padded = model(ref["padded_input_ids"], attention_mask=ref["padded_attention_mask"]).logits
    assert (logits - ref["logits"]).abs().max() <= 1e-5
    assert (padded - ref["padded_logits"]).abs().max() <= 1e-5
    assert tokenizer is None


def test_fixture_family_ids_come_from_config(fixture_model, llada_fixture_dir):
    _, _, family = fixture_model
    cfg = json.loads((llada_fixture_dir / "config.json").read_text())
    assert family.name == "llada"
    assert family.mask_token_id == cfg["mask_token_id"]
    assert family.eos_token_id == cfg["eos_token_id"]
    assert not family.shift_logits
    assert set(family.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj",
                                               "ff_out"}


def test_parameter_names_match_fixture(llada_fixture_dir):
    shapes = json.loads((llada_fixture_dir / "state_dict_shapes.json").read_text())
    cfg = json.loads((llada_fixture_dir / "config.json").read_text())
    from tadllm.models.llada import LLaDAConfig

    model = LLaDAModelLM(LLaDAConfig(**cfg))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes


def test_skipping_left_padding_in_positions_keeps_logits(fixture_model, llada_fixture_dir):
    model, _, _ = fixture_model
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    mask = ref["padded_attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        shifted = model(ref["padded_input_ids"], attention_mask=mask, position_ids=positions).logits
    keep = mask.bool()
    assert (shifted[keep] - ref["padded_logits"][keep]).abs().max() < 1e-4


def test_padded_flag_spares_the_mask_check(fixture_model, llada_fixture_dir, monkeypatch):
    """`padded=True` uses the mask as given (no host read of it), `padded=False` ignores it; both give the
    logits of the checked mask where they are right."""
    model, _, _ = fixture_model
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    ids, mask = ref["padded_input_ids"], ref["padded_attention_mask"]
    with torch.no_grad():
        checked = model(ids, attention_mask=mask).logits
        monkeypatch.setattr(torch.Tensor, "all", lambda *a, **k: pytest.fail("the mask was read"))
        told = model(ids, attention_mask=mask, padded=True).logits
        ones = torch.ones_like(ref["input_ids"])
        unmasked = model(ref["input_ids"], attention_mask=ones, padded=False).logits
    assert torch.equal(told, checked)
    assert (unmasked - ref["logits"]).abs().max() <= 1e-5


def test_gqa_and_weight_tying_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_kv_heads=2, weight_tying=True)).eval()
    assert "model.transformer.ff_out.weight" not in model.state_dict()
    assert model.model.transformer.blocks[0].k_proj.weight.shape == (16, 32)
    model.save_pretrained(tmp_path / "m")
    loaded, tok, family = load_model(tmp_path / "m", dtype="float32", device="cpu")
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert tok is None and family.mask_token_id == 47


def test_bf16_forward_close_to_fp32(llada_fixture_dir):
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    m16, _, _ = load_model(llada_fixture_dir, dtype="bfloat16", device="cpu")
    m32, _, _ = load_model(llada_fixture_dir, dtype="float32", device="cpu")
    with torch.no_grad():
        a = m16(ref["input_ids"]).logits.float()
        b = m32(ref["input_ids"]).logits
    assert a.dtype == torch.float32 and (a - b).abs().max() < 0.25 * b.abs().max()


def test_missing_shard_is_reported(tmp_path, tiny_llada):
    index = {"metadata": {}, "weight_map": {"model.transformer.wte.weight": "model-00001-of-00002.safetensors",
                                            "model.transformer.ln_f.weight": "model-00002-of-00002.safetensors"}}
    (tiny_llada / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="missing shard"):
        load_model(tiny_llada, device="cpu")


def test_unknown_model_type_needs_remote_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery-diffusion"}))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(tmp_path, device="cpu")


def test_missing_mask_token_is_a_clear_error():
    from tadllm.models.family import resolve_family

    class Cfg:
        model_type = "generic"
        eos_token_id = 2

    with pytest.raises(ValueError, match="mask token"):
        resolve_family(Cfg(), None)
    assert resolve_family(Cfg(), None, mask_token_id=5).mask_token_id == 5


def test_sharded_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    loaded, _, _ = load_model(tmp_path / "sharded", dtype="float32", device="cpu")
    ids = torch.randint(0, 40, (1, 7))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_fused_projections_match_the_reference_and_keep_the_state_dict(llada_fixture_dir):
    model, _, _ = load_model(llada_fixture_dir, dtype="float32", device="cpu")
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.fuse_projections() == model.config.n_layers
    block = model.model.transformer.blocks[0]
    assert block._fused_weights() is None  # gradients enabled: the separate matmuls (training path)
    with torch.no_grad():
        assert block._fused_weights() is not None
        assert block.k_proj.weight.data_ptr() == block._fused[0].data_ptr() + block.q_proj.weight.numel() * 4
        logits = model(ref["input_ids"]).logits
        padded = model(ref["padded_input_ids"], attention_mask=ref["padded_attention_mask"]).logits
    assert (logits - ref["logits"]).abs().max() <= 1e-5
    assert (padded - ref["padded_logits"]).abs().max() <= 1e-5
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    model.unfuse_projections()
    assert block._fused_weights() is None and block.k_proj.weight.data_ptr() != block.q_proj.weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(model(ref["input_ids"]).logits, logits)


def test_fused_projections_step_aside_for_peft_and_moved_weights():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_kv_heads=2)).eval()
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        ref = model(ids).logits
    model.fuse_projections()
    block = model.model.transformer.blocks[0]
    model.double()  # new storage for every weight: the fused tensors no longer back the projections
    with torch.no_grad():
        assert block._fused_weights() is None
        torch.testing.assert_close(model(ids).logits.float(), ref, atol=1e-4, rtol=0)
    model.float()
    model.fuse_projections()
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "ff_proj"], init_lora_weights=False))
    with torch.no_grad():
        assert block._fused_weights() is None  # peft wraps q_proj: its adapter must not be skipped
        with lora.disable_adapter():
            torch.testing.assert_close(lora(input_ids=ids).logits, ref, atol=1e-5, rtol=0)
        assert not torch.allclose(lora(input_ids=ids).logits, ref, atol=1e-3)


def test_keys_written_in_place_equal_the_concatenated_keys():
    """The cache's whole-batch form (keys, values, start) gives the same logits as (before, after) pieces."""
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(n_kv_heads=2)).eval()
    ids = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        full = model(ids, use_cache=True)
        window = ids[:, 4:8].clone()
        window[:, 1] = 5  # the window changed since the keys were cached
        pieces = [(k[:, :, :4], v[:, :, :4], k[:, :, 8:], v[:, :, 8:]) for k, v in full.kv_cache]
        positions = torch.arange(4, 8).expand(2, 4)
        ref = model(window, position_ids=positions, kv_cache=pieces).logits
        buffers = [(k.clone(), v.clone(), 4) for k, v in full.kv_cache]
        got = model(window, position_ids=positions, kv_cache=buffers).logits
    assert torch.equal(got, ref)


def test_fused_model_saves_and_reloads_the_same_weights(tmp_path):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        ref = model(ids).logits
    model.fuse_projections()
    model.save_pretrained(tmp_path / "m")
    loaded, _, _ = load_model(tmp_path / "m", dtype="float32", device="cpu")
    assert all(getattr(b, "_fused", None) is None for b in loaded.model.transformer.blocks)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, ref)
