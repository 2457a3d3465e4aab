"""`merge_adapter`: fold a trained TAD LoRA adapter into its base model and save a plain HF checkpoint.

The result (config.json with the mask id, safetensors weights, the tokenizer when there is one, the
generation config when the base has one, and the adapter's `tad_config.json` for provenance) loads with
`tadllm.models.load_model` like any base model, with no peft at inference.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def merge_adapter(adapter_dir, base=None, out_dir=None, dtype=None, device: str = "cpu",
                  trust_remote_code: bool | None = None, mask_token_id: int | None = None) -> Path:
    """Merge the LoRA adapter in `adapter_dir` into `base` (default: the adapter's recorded base model) and
    save to `out_dir`. Returns the output folder."""
    from peft import PeftModel

    from ..models import load_model, load_tokenizer
    from .checkpoint import portable_tokenizer_config

    adapter_dir = Path(adapter_dir)
    adapter_cfg = _read_json(adapter_dir / ADAPTER_CONFIG)
    if not adapter_cfg:
        hint = " (it looks like a full checkpoint: load it directly)" if (adapter_dir / "config.json").exists() else ""
        raise ValueError(f"{adapter_dir} is not a LoRA adapter folder: no {ADAPTER_CONFIG}{hint}")
    if out_dir is None:
        raise ValueError("out_dir is required")
    tad_cfg = _read_json(adapter_dir / "tad_config.json")
    tad_fields = tad_cfg.get("tad", {})
    base = base or adapter_cfg.get("base_model_name_or_path") or tad_fields.get("model_name_or_path")
    if not base:
        raise ValueError(f"no base model given and {adapter_dir / ADAPTER_CONFIG} does not record one; pass --base")
    if trust_remote_code is None:
        trust_remote_code = bool(tad_fields.get("trust_remote_code", False))
    if mask_token_id is None:
        mask_token_id = tad_fields.get("mask_token_id") or tad_cfg.get("family", {}).get("mask_token_id")
    model, tokenizer, family = load_model(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                          mask_token_id=mask_token_id)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.mask_token_id = family.mask_token_id  # so load_model finds it without a tokenizer
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    adapter_tokenizer = load_tokenizer(str(adapter_dir), trust_remote_code=trust_remote_code)
    tok = adapter_tokenizer if adapter_tokenizer is not None else tokenizer
    if tok is not None:
        tok.save_pretrained(str(out))
        portable_tokenizer_config(out)
    base_path = Path(str(base))
    if not (out / "generation_config.json").exists() and (base_path / "generation_config.json").exists():
        shutil.copy(base_path / "generation_config.json", out / "generation_config.json")
    from ..testbed.settings import copy_settings

    copy_settings(adapter_dir, out) or copy_settings(base, out)  # the task settings (testbed.json), if any
    if tad_cfg:
        (out / "tad_config.json").write_text(json.dumps({**tad_cfg, "merged_from": {
            "adapter": str(adapter_dir), "base": str(base)}}, indent=2))
    return out


def _check_dtype(text: str | None) -> None:
    from tadllm.cliargs import check_dtype

    if text is not None:
        check_dtype(text)


@dataclass
class MergeArguments:
    """The adapter `tad merge` folds into its base, and where it writes the merged checkpoint."""

    adapter: str | None = field(default=None, metadata={
        "positional": True, "required": True, "metavar": "ADAPTER",
        "help": "adapter folder written by `tad train` (use_peft=true)"})
    base: str | None = field(default=None, metadata={
        "help": "base model folder or hub name (default: the one recorded in the adapter)"})
    out: str | None = field(default=None, metadata={"required": True,
                                                    "help": "output folder for the merged checkpoint"})
    dtype: str | None = field(default=None, metadata={"help": "dtype to merge and save in (default: the base's)",
                                                      "check": _check_dtype})
    device: str = field(default="cpu", metadata={"help": "device for merging"})
    trust_remote_code: bool | None = field(default=None, metadata={
        "help": "allow the base checkpoint's own code (non-native families)"})
    mask_token_id: int | None = field(default=None, metadata={"help": "override the mask id"})


def main_merge(argv: list[str] | None = None) -> int:
    """`tad merge ADAPTER --base BASE --out DIR`"""
    from tadllm.cliargs import DTYPE_HELP, ConfigParser

    parser = ConfigParser(prog="tad merge", description="Merge a TAD LoRA adapter into its base model (HF checkpoint).")
    parser.add_dataclass(MergeArguments, "merge", help={"dtype": f"{DTYPE_HELP} (default: the base's)"})
    (args,) = parser.parse(argv)
    out = merge_adapter(args.adapter, base=args.base, out_dir=args.out, dtype=args.dtype, device=args.device,
                        trust_remote_code=args.trust_remote_code, mask_token_id=args.mask_token_id)
    print(out)
    return 0
