"""Native Dream: tiny Dream-format checkpoints (random weights, char tokenizer with a mask token), their
numerics against independent references, padding invariance, the logit shift through the training and
decoding paths, and the whole trajectories -> train (LoRA) -> merge -> decode pipeline."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tadllm.models import aligned_logits, load_model
from tadllm.models.dream import DreamConfig, DreamModel, dream_param_count
from tadllm.models.family import QWEN2_LORA_TARGETS, ModelFamily

QWEN2_NAMES = set(QWEN2_LORA_TARGETS)


def char_tokenizer(path=None):
    from tadllm.testbed.tokenizer import build_char_tokenizer

    return build_char_tokenizer(path)


def tiny_dream_config(tok, **overrides):
    kwargs = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, initializer_range=0.3, rope_theta=10000.0)
    kwargs.update(overrides)
    return DreamConfig(**kwargs)


def make_dream_checkpoint(path, seed=0, **overrides):
    """A tiny random Dream (hidden 32, 2 layers, GQA 4/2) + the char tokenizer, saved in `path`."""
    tok = char_tokenizer(path)
    torch.manual_seed(seed)
    DreamModel(tiny_dream_config(tok, **overrides)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    return make_dream_checkpoint(tmp_path_factory.mktemp("tiny-dream") / "ckpt")


@pytest.fixture(scope="module")
def dream(dream_dir):
    return load_model(dream_dir, dtype="float32", device="cpu")


# ------------------------------------------------------------------------------------------ loading
def test_loads_natively_with_family_from_config(dream, dream_dir):
    model, tok, family = dream
    cfg = json.loads((dream_dir / "config.json").read_text())
    assert isinstance(model, DreamModel) and cfg["model_type"] == "dream"
    assert family.name == "dream" and family.shift_logits and family.supports_position_ids
    assert family.mask_token_id == cfg["mask_token_id"] == tok.mask_token_id
    assert family.eos_token_id == cfg["eos_token_id"] and family.pad_token_id == cfg["pad_token_id"]
    assert family.lora_target_modules == list(QWEN2_LORA_TARGETS)
    names = set(model.state_dict())
    for key in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                "model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias",
                "model.layers.1.self_attn.v_proj.bias", "model.layers.1.self_attn.o_proj.weight",
                "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
                "model.layers.1.post_attention_layernorm.weight"):
        assert key in names
    assert "model.layers.0.self_attn.o_proj.bias" not in names
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (16, 32)  # 2 kv heads of 8
    assert dream_param_count(model.config) == sum(p.numel() for p in model.parameters())


def test_reference_style_config_loads_without_remote_code(tmp_path):
    """A config.json as the Dream-org checkpoints write it ("Dream", auto_map, Qwen2 leftovers) and a
    tokenizer whose class is remote code load natively with trust_remote_code off."""
    path = make_dream_checkpoint(tmp_path / "ref")
    cfg = json.loads((path / "config.json").read_text())
    cfg.update({"model_type": "Dream", "architectures": ["DreamModel"], "rope_scaling": None,
                "sliding_window": None, "use_sliding_window": False, "max_window_layers": 2, "use_cache": False,
                "torch_dtype": "float32",
                "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                             "AutoModel": "modeling_dream.DreamModel"}})
    (path / "config.json").write_text(json.dumps(cfg))
    tcfg = json.loads((path / "tokenizer_config.json").read_text())
    tcfg.update({"tokenizer_class": "DreamTokenizer",
                 "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}})
    (path / "tokenizer_config.json").write_text(json.dumps(tcfg))
    model, tok, family = load_model(path, dtype="float32", device="cpu")
    assert isinstance(model, DreamModel) and family.name == "dream" and family.shift_logits
    assert tok is not None and tok.mask_token_id == family.mask_token_id == cfg["mask_token_id"]
    assert tok.decode(tok("12+3")["input_ids"]) == "12+3"
    with pytest.raises(ValueError, match="trust_remote_code"):  # the checkpoint's own code is opt-in
        load_model(path, device="cpu", native=False)


def dream_style_bpe_tokenizer(path):
    """vocab.json + merges.txt (byte-level BPE, no tokenizer.json) and a tokenizer_config naming the remote
    `DreamTokenizer`, with Dream's special tokens and a Qwen-style chat template: the layout of Dream-7B."""
    from tokenizers import ByteLevelBPETokenizer

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["question 12+3=15; 4*5=20 answer reference "] * 20, vocab_size=300, min_frequency=1)
    bpe.save_model(str(path))
    n = len(json.loads((path / "vocab.json").read_text()))
    specials = {"<|endoftext|>": n, "<|im_start|>": n + 1, "<|im_end|>": n + 2, "<|mask|>": n + 3}
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DreamTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for t, i in specials.items()},
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|mask|>",
        "bos_token": None, "unk_token": None, "model_max_length": 4096, "chat_template": template}))
    return n + 4, specials


def test_dream_layout_bpe_tokenizer_and_special_ids(tmp_path):
    """Dream-7B's layout: ids come from config.json and the tokenizer (<|mask|>, <|endoftext|> as eos/pad,
    <|im_end|> as end of turn); the remote tokenizer class is replaced by Qwen2's without remote code."""
    path = tmp_path / "bpe-dream"
    vocab, specials = dream_style_bpe_tokenizer(path)
    torch.manual_seed(0)
    cfg = DreamConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, mask_token_id=specials["<|mask|>"],
                      eos_token_id=specials["<|endoftext|>"], pad_token_id=specials["<|endoftext|>"],
                      bos_token_id=specials["<|endoftext|>"])
    DreamModel(cfg).save_pretrained(path)
    model, tok, family = load_model(path, dtype="float32", device="cpu")
    assert tok is not None and tok.convert_tokens_to_ids("<|mask|>") == family.mask_token_id
    assert family.eos_token_id == family.pad_token_id == specials["<|endoftext|>"]
    assert family.eot_token_id == specials["<|im_end|>"]
    assert family.stop_token_ids == sorted([specials["<|endoftext|>"], specials["<|im_end|>"]])
    text = family.format_prompt(tok, "12+3")
    assert text.startswith("<|im_start|>user\n12+3<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert specials["<|im_start|>"] in ids and tok.decode(ids) == text


def test_unsupported_rope_scaling_is_refused():
    with pytest.raises(NotImplementedError, match="RoPE"):
        DreamConfig(hidden_size=32, num_attention_heads=4, rope_scaling={"type": "yarn", "factor": 4.0})
    cfg = DreamConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                      rope_parameters={"rope_type": "default", "rope_theta": 1234.0})
    assert cfg.rope_theta == 1234.0


def test_tied_embeddings_roundtrip(tmp_path):
    path = make_dream_checkpoint(tmp_path / "tied", tie_word_embeddings=True)
    model, _, _ = load_model(path, dtype="float32", device="cpu")
    assert model.get_output_embeddings() is None and "lm_head.weight" not in model.state_dict()
    ids = torch.randint(4, 50, (1, 7))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 7, model.config.vocab_size) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------ numerics
def test_one_layer_matches_transformers_qwen2_at_the_last_position(tmp_path):
    """With one layer, the last position sees every key under causal and bidirectional attention alike,
    so transformers' own Qwen2 with the same state dict gives the same logits there (checks names, q/k/v
    biases, GQA, RoPE, RMSNorm, SwiGLU and the head)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = char_tokenizer()
    torch.manual_seed(1)
    ours = DreamModel(tiny_dream_config(tok, num_hidden_layers=1)).eval()
    c = ours.config
    qcfg = Qwen2Config(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                       num_hidden_layers=1, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=c.num_key_value_heads, max_position_embeddings=512,
                       rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta, tie_word_embeddings=False,
                       attn_implementation="eager")
    qwen = Qwen2ForCausalLM(qcfg).eval()
    missing, unexpected = qwen.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    ids = torch.randint(4, len(tok), (2, 11))
    with torch.no_grad():
        a = ours(ids).logits[:, -1]
        b = qwen(ids).logits[:, -1]
        a_all, b_all = ours(ids).logits[:, :-1], qwen(ids).logits[:, :-1]
    assert (a - b).abs().max() < 1e-4
    assert (a_all - b_all).abs().max() > 1e-3  # ... and elsewhere bidirectional attention differs


def eager_reference(model: DreamModel, ids, attention_mask, positions):
    """Dream's eager attention written out: 4-D mask, softmax in fp32, repeat_kv, Qwen2 RoPE."""
    c = model.config
    hd, nh, nkv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, hd, 2).float() / hd))
    emb = torch.cat([positions.float()[..., None] * inv] * 2, -1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps))

    def rot(x):
        return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

    bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e9
    x = model.model.embed_tokens.weight[ids]
    B, T, _ = x.shape
    for layer in model.model.layers:
        at = layer.self_attn
        h = rms(x, layer.input_layernorm.weight)
        q = at.q_proj(h).view(B, T, nh, hd).transpose(1, 2)
        k = at.k_proj(h).view(B, T, nkv, hd).transpose(1, 2)
        v = at.v_proj(h).view(B, T, nkv, hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = (t[:, :, None].expand(B, nkv, nh // nkv, T, hd).reshape(B, nh, T, hd) for t in (k, v))
        w = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(hd) + bias, dim=-1, dtype=torch.float32)
        x = x + at.o_proj((w @ v).transpose(1, 2).reshape(B, T, -1))
        h = rms(x, layer.post_attention_layernorm.weight)
        x = x + layer.mlp.down_proj(F.silu(layer.mlp.gate_proj(h)) * layer.mlp.up_proj(h))
    return model.lm_head(rms(x, model.model.norm.weight))


def left_padded(rows, pad):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.as_tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def test_bidirectional_forward_matches_eager_reference(dream):
    model, _, family = dream
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(4, 50, (n,), generator=g).tolist() for n in (9, 5, 7)]
    ids, mask = left_padded(rows, family.fill_token_id)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, position_ids=pos).logits
        ref = eager_reference(model, ids, mask, pos)
    keep = mask.bool()
    assert (ours[keep] - ref[keep]).abs().max() < 1e-4


def test_left_padding_invariance(dream):
    """A left-padded batch gives, on its real tokens, the logits of each row alone (positions skip the
    padding: passed explicitly as the engine does, or derived from the mask by default)."""
    model, _, family = dream
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(4, 50, (n,), generator=g).tolist() for n in (12, 4, 8)]
    ids, mask = left_padded(rows, family.fill_token_id)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        explicit = model(ids, attention_mask=mask, position_ids=pos).logits
        derived = model(ids, attention_mask=mask).logits
        for i, r in enumerate(rows):
            alone = model(torch.tensor([r])).logits[0]
            assert (explicit[i, -len(r):] - alone).abs().max() < 1e-4
            assert (derived[i, -len(r):] - alone).abs().max() < 1e-4
        # RoPE sees only position differences and padding keys are hidden: absolute positions (a uniform
        # offset per row) give the same numbers up to rounding
        absolute = model(ids, attention_mask=mask,
                         position_ids=torch.arange(ids.shape[1]).expand_as(ids)).logits
    assert (absolute[mask.bool()] - explicit[mask.bool()]).abs().max() < 1e-4
    # Dream's own calling conventions: "full" and a 4-D bool mask
    with torch.no_grad():
        full = model(ids[:1], attention_mask="full").logits
        four = model(ids, attention_mask=mask[:, None, None, :].bool(), position_ids=pos).logits
    assert torch.allclose(full, explicit[:1], atol=1e-5)
    with pytest.raises(NotImplementedError, match="KV cache"):
        model(ids, kv_cache=[None])
    assert (four[mask.bool()] - explicit[mask.bool()]).abs().max() < 1e-5


def test_bf16_forward_close_to_fp32(dream_dir):
    m32, _, _ = load_model(dream_dir, dtype="float32", device="cpu")
    m16, _, _ = load_model(dream_dir, dtype="bfloat16", device="cpu")
    ids = torch.randint(4, 50, (2, 10))
    with torch.no_grad():
        a, b = m16(ids).logits.float(), m32(ids).logits
    assert m16.dtype == torch.bfloat16 and (a - b).abs().max() < 0.1 * b.abs().max()


# ------------------------------------------------------------------------------------ the logit shift
class ShiftOracle(nn.Module):
    """A Dream-convention model that knows the answer: logits at index i are a one-hot (scaled) of the
    *true* token at i+1 of the sequence (prompt, then `response` in the last positions)."""

    def __init__(self, vocab, response: torch.Tensor, key: dict | None = None):
        super().__init__()
        # (N, L) true responses; row b uses response b, or response key[last prompt token] when `key` is given
        # (the decoding engine reorders rows by prompt length)
        self.vocab, self.response, self.key = vocab, response, key
        self.weight = nn.Parameter(torch.zeros(1))  # so next(model.parameters()) has a device

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        B, T = input_ids.shape
        L = self.response.shape[1]
        truth = input_ids.clone()
        rows = (torch.arange(B) if self.key is None
                else torch.tensor([self.key[int(t)] for t in input_ids[:, T - L - 1]]))
        truth[:, T - L:] = self.response[rows]
        nxt = torch.cat([truth[:, 1:], truth[:, -1:]], 1)  # index i -> token i+1
        return type("Out", (), {"logits": 50.0 * F.one_hot(nxt, self.vocab).float()})()


def test_aligned_logits_give_zero_ce_for_a_shifted_oracle():
    """Through the TAD collator and the trainer's logit selection: a model whose index i predicts token
    i+1 has (near) zero CE on every masked position once its family says shift_logits, and a large CE if
    the shift were ignored."""
    from tadllm.distill.data import TADCollator
    from tadllm.distill.loss import tad_loss_rows
    from tadllm.distill.trainer import model_inputs, response_logits

    V, mask_id, pad = 20, 19, 0
    g = torch.Generator().manual_seed(0)
    L = 8
    examples = [{"prompt_ids": torch.randint(1, 18, (n,), generator=g).tolist(),
                 "teacher_prompt_ids": torch.randint(1, 18, (n + 3,), generator=g).tolist(),
                 "tokens": torch.randint(1, 18, (L,), generator=g).tolist(),
                 "reveal_step": (torch.randperm(L, generator=g) + 1).tolist(), "step": s}
                for n, s in ((3, 2), (6, 0), (4, 5))]
    batch = TADCollator(mask_id, pad, mode="ce_only")(examples)
    oracle = ShiftOracle(V, torch.tensor([e["tokens"] for e in examples]))
    labels, near = batch["labels"], batch["near"]
    assert near.sum() > 0
    for shift, small in ((True, True), (False, False)):
        family = ModelFamily("dream", mask_id, pad, pad, shift_logits=shift, supports_position_ids=True)
        logits = oracle(**model_inputs(family, batch["input_ids"], batch["attention_mask"])).logits
        student = response_logits(logits, family, L)
        assert torch.equal(student, aligned_logits(logits, family)[:, -L:])
        loss, stats = tad_loss_rows(student[near], labels[near], student[near][:0], None)
        assert (float(stats["loss_ce"]) < 1e-6) == small, (shift, float(stats["loss_ce"]))


def test_decoding_undoes_the_shift():
    """The engine reads aligned logits: the oracle's response comes out exactly, with any policy."""
    from tadllm.decoding import DecodeConfig, generate

    V, mask_id, pad = 20, 19, 0
    response = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [12, 11, 10, 9, 8, 7, 6, 5]])
    oracle = ShiftOracle(V, response, key={3: 0, 5: 1})
    family = ModelFamily("dream", mask_id, None, pad, shift_logits=True, supports_position_ids=True)
    for cfg in (DecodeConfig(gen_length=8, block_length=4, policy="low_confidence"),
                DecodeConfig(gen_length=8, block_length=4, policy="entropy", threshold=0.5, multi_block=True)):
        out = generate(oracle, family, [[1, 2, 3], [4, 5]], cfg)
        assert torch.equal(out.tokens, response)
    wrong = ModelFamily("dream", mask_id, None, pad, shift_logits=False)
    out = generate(oracle, wrong, [[1, 2, 3], [4, 5]], DecodeConfig(gen_length=8, block_length=4))
    assert not torch.equal(out.tokens, response)


# ------------------------------------------------------------------------------------- end to end
from tadllm.tasks import Example  # noqa: E402  (the real record type, not a copy)


class CharTask:
    """Correct iff the response contains the answer character (random models get some right)."""

    name, kind = "chars", "synthetic"

    def user_prompt(self, ex):
        return f"q {ex.question}"

    def privileged_prompt(self, ex, template=None):
        return f"q {ex.question} ref {ex.reference}"

    def extract_answer(self, text):
        return text[:1] or None

    def is_correct(self, text, ex):
        return ex.answer in text

    def score_batch(self, texts, examples):
        return [self.is_correct(t, e) for t, e in zip(texts, examples)]


def test_trajectories_train_merge_decode_end_to_end(dream_dir, tmp_path):
    from tadllm.decoding import DecodeConfig, generate
    from tadllm.distill import load_config, merge_adapter, train
    from tadllm.trajectories import generate_trajectories, read_trajectories

    torch.set_num_threads(1)
    model, tok, family = load_model(dream_dir, dtype="float32", device="cpu")
    examples = [Example(f"p{i}", "x" * (1 + i % 3) + str(i), f"{i}+{i}={2 * i}", "0123"[i % 4]) for i in range(6)]
    traj_cfg = DecodeConfig(gen_length=16, block_length=8, policy="entropy", threshold=1e-6, temperature=0.2)
    summary = generate_trajectories(model, tok, family, CharTask(), examples, traj_cfg, tmp_path / "traj",
                                    batch_size=3, keep="all", progress=False, model_name="tiny-dream")
    assert summary["samples"] == 6
    rows = read_trajectories(tmp_path / "traj", as_list=True)
    assert len(rows) == 6 and all(len(r["tokens"]) == 16 and min(r["reveal_step"]) >= 1 for r in rows)

    cfg = load_config(None, [f"model_name_or_path={dream_dir}", f"train_data={tmp_path / 'traj'}",
                             f"output_dir={tmp_path / 'tad'}", "use_peft=true", "lora_r=4", "lora_alpha=8",
                             "only_correct=false", "max_steps=2", "per_device_train_batch_size=4",
                             "steps_per_trajectory=2", "preset=quality", "use_cpu=true", "save_strategy=no",
                             "logging_steps=1", "disable_tqdm=true", "learning_rate=1e-2",
                             "dataloader_num_workers=0", "report_to=none"])
    assert cfg.lora_target_modules is None  # the family default
    trainer = train(cfg)
    assert trainer.family.name == "dream" and trainer.family.shift_logits
    lora = {n.split(".lora_")[0].split(".")[-1] for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert lora == QWEN2_NAMES  # every linear layer of the blocks, not lm_head
    assert not any("lm_head" in n and p.requires_grad for n, p in trainer.model.named_parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    saved = json.loads((tmp_path / "tad" / "tad_config.json").read_text())
    assert saved["family"]["name"] == "dream" and saved["family"]["shift_logits"] is True

    prompts = [list(r["prompt_ids"]) for r in rows[:3]]
    dcfg = DecodeConfig(gen_length=16, block_length=8, policy="entropy", threshold=0.4, multi_block=True,
                        block_add_threshold=0.1, decoded_token_threshold=0.95)
    trainer.model.eval()
    out = generate(trainer.model, trainer.family, prompts, dcfg)
    assert out.tokens.shape == (3, 16) and (out.tokens != family.mask_token_id).all() and (out.nfe >= 1).all()

    merged = merge_adapter(tmp_path / "tad", out_dir=tmp_path / "merged")
    m2, tok2, fam2 = load_model(merged, dtype="float32", device="cpu")
    assert isinstance(m2, DreamModel) and fam2.name == "dream" and fam2.mask_token_id == family.mask_token_id
    again = generate(m2, fam2, prompts, dcfg)
    assert torch.equal(again.tokens, out.tokens)


def test_gradient_checkpointing_gives_the_same_gradients(dream_dir):
    model, _, _ = load_model(dream_dir, dtype="float32", device="cpu")
    model.train()
    ids = torch.randint(4, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0

    def grads():
        model.zero_grad()
        model(ids, attention_mask=mask).logits.float().pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert model.gradient_checkpointing
    ckpt = grads()
    assert plain.keys() == ckpt.keys() and all(torch.allclose(plain[k], ckpt[k], atol=1e-6) for k in plain)
