"""`load_model`: one entry point that returns (model, tokenizer, family) for any masked-diffusion LM.

Native families (LLaDA, Dream) load with tadllm's own classes, with no remote code; the model type is
matched case-insensitively (the Dream checkpoints say "Dream"). Any other checkpoint — or a native one with
`native=False` — loads through `transformers.AutoModel*` with `trust_remote_code=True`, which the caller
must allow explicitly. A folder without tokenizer files (such as the test fixture `tests/fixtures/llada-tiny`)
loads with `tokenizer=None`. A tokenizer whose class lives in remote code (Dream's `DreamTokenizer`, a Qwen2
BPE tokenizer) loads without that code as a standard fast / Qwen2 tokenizer when `trust_remote_code` is off.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .family import ModelFamily, resolve_family

logger = logging.getLogger(__name__)

NATIVE_MODEL_TYPES = ("llada", "dream")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "auto": None}


def parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


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
    check_model_folder(name_or_path)
    return None  # a hub name: the config comes from the hub (or its local cache)


def check_model_folder(name: str) -> None:
    """A name that can only be a local path (`looks_like_a_path`) must exist: say so at once."""
    if looks_like_a_path(name) and not Path(name).exists():
        raise FileNotFoundError(f"model folder {name} does not exist")


def looks_like_a_path(name: str) -> bool:
    """True for names that cannot be hub ids (`owner/name` or `name`): `./x`, `../x`, `/x`, `~/x`, `a/b/c`,
    `x/`. Such a name that does not exist is a missing folder, so the hub is never asked about it."""
    name = str(name)
    if name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)):
        return True
    return name.replace(os.sep, "/").count("/") > 1


def check_shards(folder: Path) -> None:
    """Fail early, naming the files, when a sharded checkpoint's index lists shards that are missing."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    missing = [s for s in shards if not (folder / s).exists()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is incomplete: missing shard(s) {', '.join(missing)}")


def native_class(model_type: str | None):
    """tadllm's own model class for a model type (case-insensitive), or None."""
    kind = str(model_type).lower() if model_type else None
    if kind == "llada":
        from .llada import LLaDAModelLM

        return LLaDAModelLM
    if kind == "dream":
        from .dream import DreamModel

        return DreamModel
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, config=None):
    """The checkpoint's tokenizer, or None when the folder holds no tokenizer files."""
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if path.is_dir() and not any((path / f).exists() for f in
                                 ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")):
        return None
    # Passing the model's config spares AutoTokenizer from re-reading config.json with the base class.
    extra = {"config": config} if config is not None else {}
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **extra)
    except (ValueError, OSError, KeyError, AttributeError) as err:
        if trust_remote_code:
            raise
        tok = _tokenizer_without_remote_code(name_or_path, err)
    tok.padding_side = "left"
    return tok


def _tokenizer_without_remote_code(name_or_path: str, error: Exception):
    """A tokenizer whose class is remote code (e.g. Dream's `DreamTokenizer`, a copy of Qwen2's) loaded with
    a standard class: `PreTrainedTokenizerFast` when there is a tokenizer.json, else Qwen2's BPE tokenizer
    (vocab.json + merges.txt). Special tokens and the chat template come from tokenizer_config.json."""
    import transformers

    names = ["PreTrainedTokenizerFast", "Qwen2TokenizerFast", "Qwen2Tokenizer"]
    path = Path(name_or_path)
    if path.is_dir() and not (path / "tokenizer.json").exists():
        names = names[1:]  # a fast tokenizer without tokenizer.json would need a converter
    errors = [f"AutoTokenizer: {error}"]
    for cls in [getattr(transformers, n, None) for n in names]:
        if cls is None:
            continue
        try:
            tok = cls.from_pretrained(name_or_path)
        except Exception as err:  # noqa: BLE001 - a fallback chain: report every failure below
            errors.append(f"{cls.__name__}: {type(err).__name__}: {err}")
            continue
        logger.warning("loaded the tokenizer of %s as %s (its own tokenizer class needs trust_remote_code)",
                       name_or_path, cls.__name__)
        return tok
    raise ValueError(f"could not load the tokenizer of {name_or_path} without remote code; pass "
                     f"trust_remote_code=True (CLI: --trust-remote-code) if you trust it:\n" + "\n".join(errors))


def load_model(
    name_or_path: str | os.PathLike,
    dtype=None,
    device=None,
    trust_remote_code: bool = False,
    mask_token_id: int | None = None,
    shift_logits: bool | None = None,
    revision: str | None = None,
    native: bool = True,
) -> tuple[torch.nn.Module, object, ModelFamily]:
    """Load a masked-diffusion LM and describe it. Returns (model in eval mode, tokenizer or None, family).

    `native`: True (default) = tadllm's own class when the model type is a native family (LLaDA, Dream),
    else the checkpoint's remote code; False = always the checkpoint's remote code (needs
    `trust_remote_code`)."""
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

        try:
            model_type = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                                    revision=revision).model_type
        except OSError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(f"{name_or_path} is neither a local model folder nor a model the Hugging "
                                    f"Face hub (or its cache) could provide: {first}") from err
    cls = native_class(model_type)
    native = native and cls is not None
    if native:
        model = cls.from_pretrained(name_or_path, **kwargs)
    else:
        if not trust_remote_code:
            what = ("native=False asks for the checkpoint's own code" if cls is not None else
                    f"model_type {model_type!r} is not a native tadllm family ({', '.join(NATIVE_MODEL_TYPES)})")
            raise ValueError(
                f"{what}; loading it runs that code. Re-run with trust_remote_code=True "
                f"(CLI: --trust-remote-code) if you trust {name_or_path}."
            )
        model = _load_remote(name_or_path, kwargs)
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code, config=model.config)
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
