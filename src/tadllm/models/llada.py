"""Native LLaDA: a Hugging Face `PreTrainedModel` for the LLaDA masked-diffusion architecture.

It loads LLaDA checkpoints (config.json + single or sharded safetensors, the reference parameter names
`model.transformer.*`) without `trust_remote_code`, and built from a small config it is the architecture of
tadllm's own tiny models. Numerics follow the reference implementation: RMSNorm and RoPE in fp32, RoPE
with rotate-half over absolute positions, bidirectional attention with a key padding mask, a gated SiLU
MLP (`silu(ff_proj(x)) * up_proj(x)`), and an untied output head unless `weight_tying`.

Attention also accepts past key/values of a prefix (and suffix) so that the decoding engine can run
Fast-dLLM style KV caching; the model itself holds no cache state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .common import RMSNorm, init_weights


@dataclass
class LLaDAOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    kv_cache: list | None = None


class LLaDAConfig(PretrainedConfig):
    """The LLaDA config with the reference field names; unknown reference keys are kept as attributes."""

    model_type = "llada"

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = None,
        mlp_ratio: int = 4,
        vocab_size: int = 126464,
        embedding_size: int | None = None,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        weight_tying: bool = False,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        input_emb_norm: bool = False,
        scale_logits: bool = False,
        init_std: float = 0.02,
        mask_token_id: int | None = 126336,
        eos_token_id: int | None = 126081,
        pad_token_id: int | None = 126081,
        bos_token_id: int | None = None,
        **kwargs,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads if n_kv_heads is not None else n_heads
        self.n_layers = n_layers
        self.mlp_ratio = mlp_ratio
        self.mlp_hidden_size = mlp_hidden_size if mlp_hidden_size is not None else mlp_ratio * d_model
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.input_emb_norm = input_emb_norm
        self.scale_logits = scale_logits
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        # The reference checkpoints carry `tie_word_embeddings` implicitly through `weight_tying`;
        # transformers must not tie anything on its own.
        kwargs.pop("tie_word_embeddings", None)
        super().__init__(
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            tie_word_embeddings=False,
            **kwargs,
        )

    @property
    def hidden_size(self) -> int:  # used by peft / accelerate memory estimators
        return self.d_model

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """sin/cos tables of shape (B, T, 1, head_dim) in fp32 for integer positions (B, T): they broadcast over the
    heads of projections laid out (B, T, heads, head_dim)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float) / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)[:, :, None]
    return angles.sin(), angles.cos()


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


def _unpack(t: torch.Tensor, start: int, rows: int, cols: int) -> torch.Tensor:
    """Positions start.. of packed (1, heads, N, hd) as (rows, heads, cols, hd)."""
    return t[0, :, start:start + rows * cols].unflatten(1, (rows, cols)).transpose(0, 1)


class LLaDABlock(nn.Module):
    """One pre-norm transformer block with the reference parameter names."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        d, hd = config.d_model, config.d_model // config.n_heads
        kv_dim = config.n_kv_heads * hd
        bias, qkv_bias = config.include_bias, config.include_bias or config.include_qkv_bias
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=bias)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=bias)

    def fuse_projections(self) -> bool:
        """Make the q/k/v weights views of one tensor, and the ff/up weights views of another, so that each group
        runs as one matmul when decoding (see `LLaDAModelLM.fuse_projections`). False (nothing changed) when a
        projection has a bias or is not a plain nn.Linear (e.g. wrapped by peft)."""
        groups = ((self.q_proj, self.k_proj, self.v_proj), (self.ff_proj, self.up_proj))
        if any(type(m) is not nn.Linear or m.bias is not None for group in groups for m in group):
            return False
        fused = []
        with torch.no_grad():
            for group in groups:
                weight = torch.cat([m.weight for m in group])
                start = 0
                for m in group:
                    rows = m.weight.shape[0]
                    m.weight = nn.Parameter(weight[start:start + rows], requires_grad=m.weight.requires_grad)
                    start += rows
                fused.append(weight)
        self._fused = tuple(fused)
        return True

    def _fused_weights(self):
        """The fused (qkv, ffup) weights when they still back the projections and no gradient is needed, else None:
        a peft wrapper, a move to another device/dtype (new storage) or training fall back to separate matmuls."""
        fused = getattr(self, "_fused", None)
        if fused is None or torch.is_grad_enabled():
            return None
        if any(type(m) is not nn.Linear for m in (self.q_proj, self.k_proj, self.v_proj, self.ff_proj, self.up_proj)):
            return None
        # (data_ptr is not traceable; torch.compile traces a model fused beforehand)
        if not torch.compiler.is_compiling() and (self.q_proj.weight.data_ptr() != fused[0].data_ptr()
                                                  or self.ff_proj.weight.data_ptr() != fused[1].data_ptr()):
            return None
        return fused

    def forward(self, x, sin, cos, attn_mask, past_kv=None):
        """`past_kv`, either (k_before, v_before, k_after, v_after) in (B, kv_heads, *, hd), any of them None: the
        keys are [before ; this call's ; after]; or (keys, values, start) with keys/values (B, kv_heads, K, hd):
        this call's keys/values are written into them (in place) at columns start.. (an int) or at the columns
        `start` (B, T) gives each row, and attention runs over all K keys, no concatenation (the cache's paths
        without a copy of the cache per layer).

        Returns the block output and this call's rotated (k, v) so the caller can build a cache.
        """
        B, T, _ = x.shape
        fused = self._fused_weights()
        q, k, v = self._project(self.attn_norm(x), sin, cos, fused)
        att = self._attend(q, k, v, attn_mask, past_kv)
        x = x + self.attn_out(att.transpose(1, 2).reshape(B, T, -1))
        return self._feed_forward(x, fused), (k, v)

    def forward_packed(self, x, sin, cos, window_shape, window_mask, window_kv, refresh_shape, refresh_mask):
        """Two groups of rows in one pass over (1, N) packed positions: the first `window_shape` (B, W) positions are
        every row's window, attending over the cache `window_kv` (keys, values, columns) as in `forward`; the rest,
        `refresh_shape` (r, T_r), are rows refreshed from scratch, attending over their own keys. Everything but
        attention runs once over all N positions (one matmul per projection: a mixed step costs one pass, not two).
        Returns the output and the refreshed rows' rotated (k, v)."""
        (B, W), (r, Tr) = window_shape, refresh_shape
        fused = self._fused_weights()
        q, k, v = self._project(self.attn_norm(x), sin, cos, fused)
        qw, kw, vw = (_unpack(t, 0, B, W) for t in (q, k, v))
        qr, kr, vr = (_unpack(t, B * W, r, Tr) for t in (q, k, v))
        att_w = self._attend(qw, kw, vw, window_mask, window_kv).transpose(1, 2).reshape(1, B * W, -1)
        att_r = self._attend(qr, kr, vr, refresh_mask, None).transpose(1, 2).reshape(1, r * Tr, -1)
        x = x + self.attn_out(torch.cat([att_w, att_r], dim=1))
        return self._feed_forward(x, fused), (kr, vr)

    def _project(self, h, sin, cos, fused):
        """Rotated queries, keys and values (B, heads, T, hd) of the normed input h (B, T, d)."""
        B, T, _ = h.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        if fused is not None:
            qkv = F.linear(h, fused[0]).view(B, T, H + 2 * Hkv, hd)
            qk, v = apply_rope(qkv[:, :, :H + Hkv], sin, cos), qkv[:, :, H + Hkv:]  # one RoPE for q and k
            q, k = qk[:, :, :H], qk[:, :, H:]
        else:
            q = apply_rope(self.q_proj(h).view(B, T, H, hd), sin, cos)
            k = apply_rope(self.k_proj(h).view(B, T, Hkv, hd), sin, cos)
            v = self.v_proj(h).view(B, T, Hkv, hd)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def _attend(self, q, k, v, attn_mask, past_kv):
        """Attention of q over k, v (B, heads, T, hd) and, when given, the past keys/values (see `forward`)."""
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        if past_kv is not None and len(past_kv) == 3:
            keys, values, start = past_kv
            if isinstance(start, torch.Tensor):  # each row's own columns
                index = start[:, None, :, None].expand(-1, Hkv, -1, hd)
                keys.scatter_(2, index, k)
                values.scatter_(2, index, v)
            else:
                keys[:, :, start:start + k.shape[2]].copy_(k)
                values[:, :, start:start + k.shape[2]].copy_(v)
            k, v = keys, values
        elif past_kv is not None:
            k_before, v_before, k_after, v_after = past_kv
            k = torch.cat([t for t in (k_before, k, k_after) if t is not None], dim=2)
            v = torch.cat([t for t in (v_before, v, v_after) if t is not None], dim=2)
        if Hkv != H:
            k = k.repeat_interleave(H // Hkv, dim=1, output_size=H)
            v = v.repeat_interleave(H // Hkv, dim=1, output_size=H)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)

    def _feed_forward(self, x, fused):
        h = self.ff_norm(x)
        if fused is not None:
            gate, up = F.linear(h, fused[1]).chunk(2, dim=-1)
            return x + self.ff_out(F.silu(gate) * up)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDABackbone(nn.Module):
    """Holds `transformer.{wte, blocks, ln_f, ff_out}` so parameter names match LLaDA checkpoints."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        modules = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList([LLaDABlock(config) for _ in range(config.n_layers)]),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=config.include_bias)
        self.transformer = nn.ModuleDict(modules)


class LLaDAPreTrainedModel(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True

    def _init_weights(self, module):
        init_weights(module, self.config.init_std)


class LLaDAModelLM(LLaDAPreTrainedModel):
    """LLaDA masked-diffusion LM. `forward(input_ids, attention_mask)` returns logits (B, T, embedding_size).

    `position_ids` default to absolute positions 0..T-1 (the reference behaviour, also under left
    padding). Because RoPE only sees position differences, passing positions that skip the left padding
    gives the same logits mathematically and makes batched decoding bit-for-bit closer to unbatched.
    """

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDABackbone(config)
        self.gradient_checkpointing = False
        self.post_init()

    def fuse_projections(self) -> int:
        """For decoding: make each block's q/k/v weights views of one tensor, and its ff/up weights views of
        another, so that each group runs as one matmul (at batch 1 a matmul over a few positions is bound by
        latency; the timings: benchmarks/RESULTS.md, "Performance follow-up 3", part 2). Uses no extra memory;
        parameter names and values are unchanged. Returns the number of blocks fused. Only no-grad forwards use
        the fused matmuls: training, blocks whose projections peft wrapped and weights moved to a new device or
        dtype afterwards run the separate ones, with the same result. `save_pretrained` writes the usual
        separate tensors (tested); `unfuse_projections()` gives every projection its own tensor again (e.g.
        before `torch.save` of a state dict, which would store the whole fused tensor with every view)."""
        return sum(block.fuse_projections() for block in self.model.transformer.blocks)

    def unfuse_projections(self) -> None:
        """Undo `fuse_projections`: every projection gets its own weight tensor again."""
        with torch.no_grad():
            for block in self.model.transformer.blocks:
                if getattr(block, "_fused", None) is None:
                    continue
                for m in (block.q_proj, block.k_proj, block.v_proj, block.ff_proj, block.up_proj):
                    if type(m) is nn.Linear:
                        m.weight = nn.Parameter(m.weight.detach().clone(), requires_grad=m.weight.requires_grad)
                block._fused = None

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def set_input_embeddings(self, value):
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        return None if self.config.weight_tying else self.model.transformer.ff_out

    def _attention_mask(self, attention_mask, dtype, padded: bool | None = None):
        """Additive key-padding mask (B, 1, 1, K) or None when every key is visible."""
        # An all-ones mask is dropped so SDPA can use its fastest kernel: always passing the mask slowed cached
        # (dual) decoding by more than this check's host sync costs (benchmarks/RESULTS.md). A caller that knows
        # some key is masked says so (`padded=True`) and spares the sync.
        if attention_mask is None or padded is False:
            return None
        # (No check while a CUDA graph is captured or torch.compile traces: a host sync is not allowed there.)
        if padded is None and not (torch.compiler.is_compiling() or _capturing()) and bool(attention_mask.all()):
            return None
        keep = attention_mask[:, None, None, :].bool()
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        kv_cache=None,
        use_cache: bool = False,
        return_dict: bool | None = None,
        logits_range: tuple[int, int] | None = None,
        padded: bool | None = None,
        **kwargs,
    ):
        """`kv_cache`: optional list per layer of (k_before, v_before, k_after, v_after), with
        `attention_mask` then covering [before ; input ; after] keys, or of (keys, values, start): the input's
        keys/values are written into those at `start` (an int, or (B, T) columns per row) and attention runs over
        all of them (`attention_mask` then covers those keys only).
        With `use_cache`, the output's `kv_cache` holds this call's rotated (k, v) per layer.
        `logits_range=(a, b)`: compute the output head only for positions a..b-1 (decoding needs logits for
        one block, and the head over a 126k vocabulary is the largest matmul of a step). `padded`: whether
        `attention_mask` masks some key (True: used as given; False: ignored; None: checked, a host sync)."""
        tr = self.model.transformer
        x = tr.wte(input_ids) if inputs_embeds is None else inputs_embeds
        if self.config.input_emb_norm:
            x = x * (self.config.d_model**0.5)
        B, T = x.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(T, device=x.device).expand(B, T)
        head_dim = self.config.d_model // self.config.n_heads
        sin, cos = rope_tables(position_ids, head_dim, self.config.rope_theta)
        mask = self._attention_mask(attention_mask, x.dtype, padded)
        new_cache = []
        for i, block in enumerate(tr.blocks):
            past = kv_cache[i] if kv_cache is not None else None
            if self.gradient_checkpointing and self.training:
                x, kv = self._gradient_checkpointing_func(block.__call__, x, sin, cos, mask, past)
            else:
                x, kv = block(x, sin, cos, mask, past)
            if use_cache:  # contiguous copies: the cache keeps them (views would keep the whole q/k/v output alive)
                new_cache.append((kv[0].contiguous(), kv[1].contiguous()))
        if logits_range is not None:
            x = x[:, logits_range[0]:logits_range[1]]
        logits = self._head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return LLaDAOutput(loss=loss, logits=logits, kv_cache=new_cache if use_cache else None)

    def _head(self, x):
        tr = self.model.transformer
        x = tr.ln_f(x)
        logits = F.linear(x, tr.wte.weight) if self.config.weight_tying else tr.ff_out(x)
        if self.config.scale_logits:
            logits = logits * (1 / math.sqrt(self.config.d_model))
        return logits

    def forward_packed(self, window_ids, window_positions, kv_cache, window_mask, refresh_ids, refresh_positions,
                       refresh_mask, refresh_columns, window_padded: bool | None = None,
                       refresh_padded: bool | None = None):
        """A decoding step whose rows split into two groups, in one pass: `window_ids` (B, W), every row's window,
        attend over the cache `kv_cache` (per layer (keys, values, columns (B, W)), written in place as in
        `forward`; `window_mask` (B, K) covers the cache's keys); `refresh_ids` (r, T_r), rows recomputed from
        scratch, attend over their own keys (`refresh_mask` (r, T_r) or None). The positions of both groups run
        through every projection together, so the step launches one pass of kernels instead of two (at batch 16
        the eager launches, not the arithmetic, bound a step: docs/serving.md).

        Returns (window logits (B, W, V), refresh logits (r, C, V) at `refresh_columns` (r, C) of the refreshed
        rows, the refreshed rows' rotated (k, v) per layer (r, kv_heads, T_r, hd))."""
        tr = self.model.transformer
        (B, W), (r, Tr) = window_ids.shape, refresh_ids.shape
        ids = torch.cat([window_ids.reshape(-1), refresh_ids.reshape(-1)])[None]
        x = tr.wte(ids)
        if self.config.input_emb_norm:
            x = x * (self.config.d_model**0.5)
        positions = torch.cat([window_positions.reshape(-1), refresh_positions.reshape(-1)])[None]
        sin, cos = rope_tables(positions, self.config.d_model // self.config.n_heads, self.config.rope_theta)
        mask_w = self._attention_mask(window_mask, x.dtype, window_padded)
        mask_r = self._attention_mask(refresh_mask, x.dtype, refresh_padded)
        refreshed = []
        for block, past in zip(tr.blocks, kv_cache):
            x, kv = block.forward_packed(x, sin, cos, (B, W), mask_w, past, (r, Tr), mask_r)
            refreshed.append((kv[0].contiguous(), kv[1].contiguous()))
        d, C = x.shape[-1], refresh_columns.shape[1]
        picked = x[0, B * W:].view(r, Tr, d).gather(1, refresh_columns[..., None].expand(-1, -1, d))
        logits = self._head(torch.cat([x[0, :B * W], picked.reshape(r * C, d)]))
        return logits[:B * W].view(B, W, -1), logits[B * W:].view(r, C, -1), refreshed
