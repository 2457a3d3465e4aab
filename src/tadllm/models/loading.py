"""`load_model`: one entry point that returns (model, tokenizer, family) for any masked-diffusion LM.

Native families (LLaDA) load with tadllm's own classes, with no remote code. Any other checkpoint loads
through `transformers.AutoModel*` with `trust_remote_code=True`, which the caller must allow explicitly.
A folder without tokenizer files (such as the shared LLaDA fixture) loads with `tokenizer=None`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .family import ModelFamily, resolve_family

NATIVE_MODEL_TYPES = ("llada",)
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "auto": None}


def parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def default_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dtype_kwarg(dtype) -> dict:
    """transformers >= 4.56 takes `dtype=`; older releases only know `torch_dtype=`."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}


def _read_config_dict(name_or_path: str) -> dict | None:
    path = Path(name_or_path)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise FileNotFoundError(f"{path} has no config.json; is this a Hugging Face checkpoint folder?")
        return json.loads(cfg.read_text())
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint folder (with config.json) instead")
    return None  # a hub name: the config comes from the hub (or its local cache)


def check_shards(folder: Path) -> None:
    """Fail early, naming the files, when a sharded checkpoint's index lists shards that are missing."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    missing = [s for s in shards if not (folder / s).exists()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is incomplete: missing shard(s) {', '.join(missing)}")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The checkpoint's tokenizer, or None when the folder holds no tokenizer files."""
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if path.is_dir() and not any((path / f).exists() for f in
                                 ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")):
        return None
    tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    tok.padding_side = "left"
    return tok


def load_model(
    name_or_path: str | os.PathLike,
    dtype=None,
    device=None,
    trust_remote_code: bool = False,
    mask_token_id: int | None = None,
    shift_logits: bool | None = None,
    revision: str | None = None,
) -> tuple[torch.nn.Module, object, ModelFamily]:
    """Load a masked-diffusion LM and describe it. Returns (model in eval mode, tokenizer or None, family)."""
    name_or_path = str(name_or_path)
    torch_dtype = parse_dtype(dtype)
    config_dict = _read_config_dict(name_or_path)
    if config_dict is not None:
        check_shards(Path(name_or_path))
    model_type = (config_dict or {}).get("model_type")
    kwargs = {**_dtype_kwarg(torch_dtype if torch_dtype is not None else "auto")}
    if revision:
        kwargs["revision"] = revision
    if model_type is None and config_dict is None:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                                revision=revision).model_type
    if model_type in NATIVE_MODEL_TYPES:
        from .llada import LLaDAModelLM

        model = LLaDAModelLM.from_pretrained(name_or_path, **kwargs)
        native = True
    else:
        if not trust_remote_code:
            raise ValueError(
                f"model_type {model_type!r} is not a native tadllm family ({', '.join(NATIVE_MODEL_TYPES)}); "
                f"loading it runs the checkpoint's own code. Re-run with trust_remote_code=True "
                f"(CLI: --trust-remote-code) if you trust {name_or_path}."
            )
        model = _load_remote(name_or_path, kwargs)
        native = False
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    family = resolve_family(model.config, tokenizer, mask_token_id=mask_token_id, shift_logits=shift_logits,
                            native=native)
    model.to(default_device(device)).eval()
    return model, tokenizer, family


def _load_remote(name_or_path: str, kwargs: dict):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    errors = []
    for auto in (AutoModelForMaskedLM, AutoModel, AutoModelForCausalLM):
        try:
            return auto.from_pretrained(name_or_path, trust_remote_code=True, **kwargs)
        except (ValueError, KeyError, OSError) as err:
            errors.append(f"{auto.__name__}: {err}")
    raise ValueError(f"could not load {name_or_path} with remote code:\n" + "\n".join(errors))
