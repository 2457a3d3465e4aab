"""Native Dream: a Hugging Face `PreTrainedModel` for the Dream masked-diffusion architecture.

Dream (Dream-org/Dream-v0-Instruct-7B, Dream-v0-Base-7B, and fine-tunes of them) is a Qwen2.5 backbone run
with **bidirectional** attention and trained to predict token i from hidden state i-1 (its logits are
shifted by one position; `tadllm.models.aligned_logits` undoes that for every consumer). This module loads
Dream checkpoints without `trust_remote_code`; built from a small config it is a tiny Dream for tests.

Parameter names are those of the checkpoints (and of transformers' Qwen2): `model.embed_tokens`,
`model.layers.{i}.self_attn.{q,k,v,o}_proj` (biases on q/k/v only), `model.layers.{i}.mlp.{gate,up,down}_proj`,
`model.layers.{i}.input_layernorm`, `model.layers.{i}.post_attention_layernorm`, `model.norm`, `lm_head`.

Numerics follow the reference code (Dream's `modeling_dream.py`, itself Qwen2's): RMSNorm in fp32 cast back
before the weight; RoPE tables computed in fp32 from absolute positions and cast to the activation dtype
(rotate-half); grouped-query attention through `scaled_dot_product_attention` with `is_causal=False`;
SwiGLU MLP `down(act(gate(x)) * up(x))`. The model does not use transformers' Qwen2 modules: their
attention-mask and RoPE APIs differ between transformers 4.5x and 5.x, and this small implementation is
the same on both.

Masks and positions (the Dream generation convention):
- `attention_mask` (B, K) with 1 = real token, 0 = left padding: padding keys are hidden from every
  query (a key padding mask; padding *queries* still attend to the real keys, so no row is all masked).
  Also accepted: the string `"full"` (no mask), or a 4-D bool / additive mask (B or 1, 1, Q, K) used as is.
- `position_ids` default to positions that skip the left padding (`cumsum(mask) - 1`), as Dream's own
  sampler builds them; without a mask, 0..T-1. Because RoPE only sees differences, a left-padded row then
  gives the same logits on its real tokens as the unpadded row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .common import RMSNorm, init_weights


@dataclass
class DreamOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class DreamConfig(PretrainedConfig):
    """Dream config with the Qwen2 field names used by the Dream checkpoints' config.json.

    Dimension defaults are Dream-7B's (Qwen2.5-7B). Special ids have **no** defaults: they are read from the
    checkpoint's config.json (Dream-7B sets `mask_token_id`, `eos_token_id`, `pad_token_id`, `bos_token_id`).
    The reference checkpoints say `"model_type": "Dream"`; configs saved by tadllm say `"dream"`; both load.
    Only the default RoPE is implemented (Dream-7B has `rope_scaling: null`); sliding-window attention is
    off in Dream and not implemented.
    """

    model_type = "dream"

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_theta: float | None = None,
        attention_dropout: float = 0.0,
        tie_word_embeddings: bool = False,
        use_sliding_window: bool = False,
        mask_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        **kwargs,
    ):
        rope_theta = _pop_rope_settings(kwargs, rope_theta)
        if use_sliding_window:
            raise NotImplementedError("sliding-window attention is not implemented in the native Dream model "
                                      "(Dream checkpoints do not use it)")
        for unused in ("sliding_window", "max_window_layers", "use_cache", "layer_types"):
            kwargs.pop(unused, None)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else num_attention_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta) if rope_theta is not None else 1000000.0
        self.attention_dropout = attention_dropout
        self.use_sliding_window = False
        self.mask_token_id = mask_token_id
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        super().__init__(
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        # Our own flag (transformers 5 may rewrite `tie_word_embeddings`); the output head follows it.
        self.tie_word_embeddings = bool(tie_word_embeddings)


def _pop_rope_settings(kwargs: dict, rope_theta: float | None) -> float | None:
    """Take the RoPE settings out of a config's `kwargs`: `rope_scaling` (transformers 4.x / the reference
    config) or `rope_parameters` (transformers 5.x), kept out of the base class, whose handling of them differs
    between versions. Returns `rope_theta`, or the one they name when it is None; any RoPE scaling raises."""
    for rope in (kwargs.pop("rope_scaling", None), kwargs.pop("rope_parameters", None)):
        if not isinstance(rope, dict):
            continue
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind not in (None, "default"):
            raise NotImplementedError(
                f"Dream config has RoPE scaling {rope!r}; the native Dream model implements only the "
                f"default RoPE (Dream-7B uses none). Load with trust_remote_code=True, native=False.")
        if rope_theta is None and rope.get("rope_theta") is not None:
            rope_theta = float(rope["rope_theta"])
    return rope_theta


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos/sin tables (B, 1, T, head_dim) for integer positions (B, T): computed in fp32 (with fp32 inverse
    frequencies, as the reference's non-persistent buffer), then cast to the activation dtype."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device)
                                .float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)[:, None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class DreamAttention(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)

    def forward(self, x, cos, sin, attn_mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(rep, dim=1, output_size=self.n_heads)
            v = v.repeat_interleave(rep, dim=1, output_size=self.n_heads)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(att.transpose(1, 2).reshape(B, T, -1))


class DreamMLP(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        d, m = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, m, bias=False)
        self.up_proj = nn.Linear(d, m, bias=False)
        self.down_proj = nn.Linear(m, d, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.self_attn = DreamAttention(config)
        self.mlp = DreamMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, attn_mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamBackbone(nn.Module):
    """Holds `embed_tokens`, `layers`, `norm` so that parameter names are `model.*` as in the checkpoints."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        pad = config.pad_token_id
        padding_idx = pad if isinstance(pad, int) and 0 <= pad < config.vocab_size else None
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx)
        self.layers = nn.ModuleList([DreamDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        init_weights(module, self.config.initializer_range)


def key_padding_mask(attention_mask, dtype: torch.dtype):
    """The attention bias for SDPA: None (attend everywhere), or an additive (B, 1, 1, K) key padding mask
    from a 2-D 0/1 mask; 4-D masks pass through (bool: True = attend)."""
    if attention_mask is None or isinstance(attention_mask, str):
        if isinstance(attention_mask, str) and attention_mask != "full":
            raise ValueError(f"attention_mask string must be 'full', got {attention_mask!r}")
        return None
    if attention_mask.dim() == 4:
        return attention_mask if attention_mask.dtype == torch.bool else attention_mask.to(dtype)
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (B, K) or 4-D, got shape {tuple(attention_mask.shape)}")
    if bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].bool()
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def padding_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: cumsum(mask) - 1, clamped at 0 on the padding itself."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


class DreamModel(DreamPreTrainedModel):
    """Dream masked-diffusion LM. `forward(input_ids, attention_mask, position_ids)` returns logits
    (B, T, vocab) where **index i predicts token i+1** (the Dream convention; see `aligned_logits`)."""

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBackbone(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return None if self.config.tie_word_embeddings else self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask=None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ):
        """`labels` (optional, -100 = ignore) are the tokens at their own positions: the loss compares
        logits[:, i-1] with labels[:, i], like the aligned logits."""
        if kwargs.get("kv_cache") is not None or kwargs.get("past_key_values") is not None:
            raise NotImplementedError("the native Dream model has no KV cache (decode with use_cache='none')")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        if position_ids is None:
            if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
                position_ids = padding_positions(attention_mask)
            else:
                position_ids = torch.arange(T, device=x.device).expand(B, T)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)
        mask = key_padding_mask(attention_mask, x.dtype)
        for layer in self.model.layers:
            if self.gradient_checkpointing and self.training:
                x = self._gradient_checkpointing_func(layer.__call__, x, cos, sin, mask)
            else:
                x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        logits = F.linear(x, self.model.embed_tokens.weight) if self.config.tie_word_embeddings else self.lm_head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return DreamOutput(loss=loss, logits=logits)


def dream_param_count(config: DreamConfig) -> int:
    """Number of parameters of a Dream model with this config (no allocation)."""
    d, m, L, V = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    attn = d * q + q + 2 * (d * kv + kv) + q * d
    block = attn + 3 * d * m + 2 * d
    head = 0 if config.tie_word_embeddings else d * V
    return V * d + L * block + d + head


__all__ = ["DreamConfig", "DreamModel", "DreamOutput", "dream_param_count", "key_padding_mask",
           "padding_positions", "rope_cos_sin"]
