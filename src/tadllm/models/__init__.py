"""Loading masked-diffusion LMs and describing their families (special ids, logit shift, LoRA targets)."""

from .family import ModelFamily, aligned_logits, resolve_family
from .loading import default_device, load_model, load_tokenizer, parse_dtype

__all__ = ["ModelFamily", "aligned_logits", "resolve_family", "load_model", "load_tokenizer", "parse_dtype",
           "default_device"]
