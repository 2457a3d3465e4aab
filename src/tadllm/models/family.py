"""Model families: what the decoding engine and trainer must know about a masked-diffusion LM.

A `ModelFamily` carries the special ids (read from the checkpoint's config and tokenizer, never written
as literals), whether logits are shifted by one position (Dream and other models initialised from an
autoregressive LM predict token i from hidden state i-1), how prompts are formatted, and the default LoRA
targets (every linear layer of the family).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

LLADA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]
QWEN2_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Token strings under which the known families' tokenizers carry their mask and end-of-turn tokens.
MASK_TOKEN_NAMES = ["<|mdm_mask|>", "<|mask|>", "[MASK]", "<mask>"]
EOT_TOKEN_NAMES = ["<|eot_id|>", "<|im_end|>", "<|endoftext|>"]


@dataclass
class ModelFamily:
    name: str
    mask_token_id: int
    eos_token_id: int | None
    pad_token_id: int | None
    eot_token_id: int | None = None
    shift_logits: bool = False
    lora_target_modules: list[str] = field(default_factory=list)
    supports_position_ids: bool = False
    supports_logits_range: bool = False  # forward(logits_range=(a, b)) computes the head on a slice only
    # forward(use_cache=True) returns rotated keys/values and forward(kv_cache=...) attends over them: the
    # decoding's prefix / dual KV cache (tadllm.decoding.cache) can run
    supports_kv_cache: bool = False

    @property
    def stop_token_ids(self) -> list[int]:
        return sorted({t for t in (self.eos_token_id, self.eot_token_id) if t is not None})

    @property
    def fill_token_id(self) -> int:
        """Token used for left padding of prompts and for the EOS tail after an early stop."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        if self.eos_token_id is not None:
            return self.eos_token_id
        raise ValueError(f"family {self.name!r} has neither a pad nor an eos token id; set one in the config")

    def format_prompt(self, tokenizer, user_text: str, system: str | None = None) -> str:
        """The user turn through the tokenizer's chat template, or the bare text when it has none."""
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return user_text if system is None else f"{system}\n{user_text}"
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def aligned_logits(logits: torch.Tensor, family: ModelFamily) -> torch.Tensor:
    """Logits where index i predicts token i. Shifted families predict i from i-1: shift right by one
    (position 0 reuses its own logits; it is always a prompt position and carries no loss)."""
    if not family.shift_logits:
        return logits
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _token_id(tokenizer, names: list[str]) -> int | None:
    if tokenizer is None:
        return None
    vocab = tokenizer.get_vocab()
    for name in names:
        if name in vocab:
            return vocab[name]
    return None


def _first(*values):
    for v in values:
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is not None:
            return int(v)
    return None


def resolve_family(config, tokenizer=None, mask_token_id: int | None = None, shift_logits: bool | None = None,
                   native: bool = False) -> ModelFamily:
    """Build the family of a checkpoint from its config and tokenizer (explicit arguments win)."""
    model_type = getattr(config, "model_type", None) or "generic"
    kind = str(model_type).lower()  # the reference Dream checkpoints say "Dream"
    mask = _first(
        mask_token_id,
        getattr(config, "mask_token_id", None),
        getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None,
        _token_id(tokenizer, MASK_TOKEN_NAMES),
    )
    if mask is None:
        raise ValueError(
            f"cannot determine the mask token of this {model_type!r} checkpoint: neither config.mask_token_id "
            f"nor the tokenizer's mask token ({', '.join(MASK_TOKEN_NAMES)}) is set. Pass mask_token_id=… "
            f"(CLI: --mask-token-id) or add `mask_token_id` to config.json."
        )
    eos = _first(getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None))
    pad = _first(getattr(config, "pad_token_id", None), getattr(tokenizer, "pad_token_id", None), eos)
    eot = _token_id(tokenizer, EOT_TOKEN_NAMES)
    if eot == eos:
        eot = None
    if kind == "llada":
        # tadllm's own LLaDA class has the KV-cache arguments; the checkpoint's remote code does not
        return ModelFamily("llada", mask, eos, pad, eot, shift_logits=bool(shift_logits),
                           lora_target_modules=list(LLADA_LORA_TARGETS), supports_position_ids=native,
                           supports_logits_range=native, supports_kv_cache=native and not shift_logits)
    if kind == "dream":
        # Dream's forward (native, and the reference remote code) takes `position_ids`; its own sampler
        # passes positions that skip the left padding, so the engine does too.
        return ModelFamily("dream", mask, eos, pad, eot,
                           shift_logits=True if shift_logits is None else shift_logits,
                           lora_target_modules=list(QWEN2_LORA_TARGETS), supports_position_ids=True)
    shift = shift_logits if shift_logits is not None else bool(getattr(config, "shift_logits", False))
    return ModelFamily(model_type, mask, eos, pad, eot, shift_logits=shift, lora_target_modules=["all-linear"])
