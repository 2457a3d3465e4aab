"""The generic family (any masked-diffusion checkpoint with its own remote code), the 8B/7B recipes, the
accelerate configs, the memory estimate, and a 2-process CPU (gloo) run of `tad train`."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tadllm.models import load_model

REPO = Path(__file__).resolve().parents[2]

CONFIG_PY = '''
from transformers import PretrainedConfig


class TinyDiffConfig(PretrainedConfig):
    model_type = "tiny-diffusion"

    def __init__(self, vocab_size=64, hidden=16, shift_logits=False, **kwargs):
        self.vocab_size = vocab_size
        self.hidden = hidden
        self.shift_logits = shift_logits
        super().__init__(**kwargs)
'''

MODELING_PY = '''
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tinydiff import TinyDiffConfig


class TinyDiffModel(PreTrainedModel):
    """A bidirectional toy denoiser: token embedding + mean of the visible context."""

    config_class = TinyDiffConfig
    base_model_prefix = "tinydiff"

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden)
        self.mix = nn.Linear(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.5)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        h = self.embed(input_ids)
        m = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        m = m[..., None].to(h.dtype)
        ctx = (h * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
        return MaskedLMOutput(logits=self.out(torch.tanh(h + self.mix(ctx))))
'''


def write_remote_checkpoint(path: Path, shift_logits=False, mask_in_config=None, tokenizer=True) -> Path:
    """A checkpoint whose model class is remote code (auto_map -> local .py files)."""
    from transformers import AutoConfig, AutoModel

    path.mkdir(parents=True)
    (path / "configuration_tinydiff.py").write_text(CONFIG_PY)
    (path / "modeling_tinydiff.py").write_text(MODELING_PY)
    if tokenizer:
        from tadllm.testbed.tokenizer import build_char_tokenizer

        tok = build_char_tokenizer(path)
        vocab, eos, pad = len(tok), tok.eos_token_id, tok.pad_token_id
    else:
        vocab, eos, pad = 60, 0, 0
    cfg = {"model_type": "tiny-diffusion", "architectures": ["TinyDiffModel"], "vocab_size": vocab, "hidden": 16,
           "shift_logits": shift_logits, "eos_token_id": eos, "pad_token_id": pad,
           "auto_map": {"AutoConfig": "configuration_tinydiff.TinyDiffConfig",
                        "AutoModel": "modeling_tinydiff.TinyDiffModel"}}
    if mask_in_config is not None:
        cfg["mask_token_id"] = mask_in_config
    (path / "config.json").write_text(json.dumps(cfg))
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    torch.manual_seed(0)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------ generic
def test_remote_code_model_loads_and_decodes(tmp_path):
    from tadllm.decoding import DecodeConfig, generate

    path = write_remote_checkpoint(tmp_path / "remote")
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(path, device="cpu")
    model, tok, family = load_model(path, dtype="float32", device="cpu", trust_remote_code=True)
    assert type(model).__name__ == "TinyDiffModel"
    # mask id from the tokenizer (the config has none), special ids from the config
    assert family.name == "tiny-diffusion" and family.mask_token_id == tok.mask_token_id
    assert family.eos_token_id == tok.eos_token_id and not family.shift_logits
    assert family.lora_target_modules == ["all-linear"] and not family.supports_position_ids
    prompts = [tok("12+3", add_special_tokens=False)["input_ids"], tok("7", add_special_tokens=False)["input_ids"]]
    for cfg in (DecodeConfig(gen_length=8, block_length=4),
                DecodeConfig(gen_length=8, block_length=4, policy="entropy", threshold=0.5, multi_block=True)):
        out = generate(model, family, prompts, cfg)
        assert out.tokens.shape == (2, 8) and not (out.tokens == family.mask_token_id).any()
        assert (out.nfe >= 1).all() and (out.nfe <= 8).all()
    # an explicit mask id wins over the tokenizer's
    _, _, fam2 = load_model(path, device="cpu", trust_remote_code=True, mask_token_id=tok.unk_token_id)
    assert fam2.mask_token_id == tok.unk_token_id


def test_shift_flag_from_config_or_user(tmp_path):
    path = write_remote_checkpoint(tmp_path / "shifted", shift_logits=True, mask_in_config=3)
    _, _, family = load_model(path, device="cpu", trust_remote_code=True)
    assert family.shift_logits and family.mask_token_id == 3
    _, _, family = load_model(path, device="cpu", trust_remote_code=True, shift_logits=False)
    assert not family.shift_logits


def test_missing_mask_token_is_explained(tmp_path):
    path = write_remote_checkpoint(tmp_path / "nomask", tokenizer=False)
    with pytest.raises(ValueError, match="mask_token_id"):
        load_model(path, device="cpu", trust_remote_code=True)
    model, tok, family = load_model(path, device="cpu", trust_remote_code=True, mask_token_id=59)
    assert tok is None and family.mask_token_id == 59


# ------------------------------------------------------------------------------------------ recipes
RECIPES = ["llada-8b-quality", "llada-8b-speed", "dream-7b-quality", "dream-7b-speed"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_load_with_release_settings(name):
    from tadllm.distill import PRESETS, load_config

    cfg = load_config(REPO / "configs" / f"{name}.yaml", ["use_cpu=true"])  # bf16 needs a GPU otherwise
    assert cfg.use_peft and (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (128, 128, 0.05)
    assert cfg.lora_target_modules is None  # the family default
    assert cfg.learning_rate == 2e-5 and getattr(cfg.lr_scheduler_type, "value", cfg.lr_scheduler_type) == "constant"
    assert (cfg.weight_decay, cfg.max_grad_norm, cfg.num_train_epochs) == (0.01, 1.0, 1.0)
    assert cfg.bf16 and cfg.model_dtype == "bfloat16" and not cfg.trust_remote_code
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 256
    preset = name.rsplit("-", 1)[1]
    assert cfg.preset == preset and cfg.delta == PRESETS[preset]
    assert ("LLaDA" in cfg.model_name_or_path) == name.startswith("llada")


def test_accelerate_configs_parse():
    import yaml

    folder = REPO / "configs" / "accelerate"
    kinds = {"ddp.yaml": "MULTI_GPU", "zero2.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP"}
    for name, kind in kinds.items():
        cfg = yaml.safe_load((folder / name).read_text())
        assert cfg["distributed_type"] == kind and cfg["num_processes"] == 8 and cfg["num_machines"] == 1
    ds_file = yaml.safe_load((folder / "zero2.yaml").read_text())["deepspeed_config"]["deepspeed_config_file"]
    ds = json.loads((REPO / ds_file).read_text())
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["gradient_accumulation_steps"] == ds["train_micro_batch_size_per_gpu"] == "auto"
    fsdp = yaml.safe_load((folder / "fsdp.yaml").read_text())["fsdp_config"]
    assert fsdp["fsdp_use_orig_params"] is True


def test_memory_estimate_arithmetic():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import memory_estimate as me
    finally:
        sys.path.pop(0)
    assert abs(me.LLADA_8B.params() / 1e9 - 8.02) < 0.01
    assert abs(me.DREAM_7B.params() / 1e9 - 7.62) < 0.01  # Qwen2.5-7B
    from tadllm.models.dream import DreamConfig, dream_param_count

    dream = DreamConfig()  # Dream-7B dimensions
    assert dream_param_count(dream) == me.DREAM_7B.params()
    ddp = me.estimate(me.LLADA_8B, "ddp", 8, checkpointing=False)
    ckpt = me.estimate(me.LLADA_8B, "ddp", 8, checkpointing=True)
    z2 = me.estimate(me.LLADA_8B, "zero2", 8, checkpointing=True)
    fsdp = me.estimate(me.LLADA_8B, "fsdp", 8, checkpointing=True)
    assert ckpt["activations"] < ddp["activations"] / 10
    assert fsdp["total"] < z2["total"] < ckpt["total"] < ddp["total"]
    assert "| zero2 | on |" in me.table(me.DREAM_7B)


# ------------------------------------------------------------------------------------------ 2 processes
def _records(n=8, length=12, vocab=40, mask_id=39):
    import numpy as np

    rng = np.random.default_rng(0)
    return [dict(problem_id=f"p{i}", sample_idx=0, prompt_ids=rng.integers(2, mask_id, 4).tolist(),
                 teacher_prompt_ids=rng.integers(2, mask_id, 7).tolist(),
                 tokens=rng.integers(2, mask_id, length).tolist(),
                 reveal_step=(rng.permutation(length) + 1).tolist(), num_steps=length, correct=True, text="",
                 answer="", meta="{}") for i in range(n)]


def test_train_two_processes_gloo(tmp_path):
    """`torchrun --nproc_per_node 2 -m tadllm.cli train` on a tiny Dream, CPU / gloo, 2 steps: both ranks
    train, rank 0 saves the adapter, and the logged loss is finite."""
    from tadllm.models.dream import DreamConfig, DreamModel

    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-dream"
    DreamModel(DreamConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, mask_token_id=39, eos_token_id=1,
                           pad_token_id=1, max_position_embeddings=128)).save_pretrained(model_dir)
    data = tmp_path / "traj.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        model_name_or_path: {model_dir}
        train_data: {data}
        output_dir: {out}
        use_peft: true
        lora_r: 2
        lora_alpha: 4
        delta: 4
        use_cpu: true
        max_steps: 2
        per_device_train_batch_size: 2
        gradient_accumulation_steps: 1
        logging_steps: 1
        save_strategy: "no"
        disable_tqdm: true
        dataloader_num_workers: 0
        ddp_backend: gloo
        ddp_find_unused_parameters: false
        report_to: none
        log_level: info
        """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tadllm.cli", "train", "--config", str(recipe)]
    start = time.time()
    # own process group, so that a hang kills the launcher and both ranks, and nothing else
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail("2-process training hung:\n" + log[-3000:])
    assert proc.returncode == 0, log[-5000:]
    saved = json.loads((out / "tad_config.json").read_text())
    assert saved["family"]["name"] == "dream" and saved["family"]["shift_logits"] is True
    assert (out / "adapter_model.safetensors").exists()
    # 2 per device x 2 processes: the Trainer saw the process group
    assert re.search(r"Total train batch size \(w\. parallel, distributed & accumulation\) = 4", log), log[-3000:]
    losses = [float(x) for x in re.findall(r"'loss': '?([0-9.]+)", log)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), log[-3000:]
    # δ = 4 < 12 response tokens: distant tokens exist, so the teacher (adapter disabled) ran under DDP
    assert re.search(r"'distant_tokens': '?[1-9]", log), log[-3000:]
    assert time.time() - start < 180
