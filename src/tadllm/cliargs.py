"""The command-line pieces every `tad` command shares: the option dataclasses (`ModelArguments`; the decoding
options are `tadllm.decoding.config.DecodingArguments`, DecodeConfig's own fields), the parser that turns them
into flags + `--config FILE.yaml` + `key=value` (`tadllm.config.ConfigParser`, re-exported), the settings
recorded with a model (testbed.json), `--dtype`, `--compile` / `--cuda-graphs`.

The command modules (`tadllm.decoding.cli`, `tadllm.trajectories.cli`, `tadllm.distill`, `tadllm.eval.cli`,
`tadllm.testbed.cli`, ...) import these; `tadllm.cli` only dispatches `tad CMD` to them. Only the standard
library (and `tadllm.config`) is imported at module level, so `tad --help` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field

from tadllm.config import ArgumentParser, ConfigParser  # noqa: F401 - re-exported for the command modules

DTYPE_HELP = "float32 (fp32) | bfloat16 (bf16) | float16 (fp16) | auto (the checkpoint's)"
LENGTH_FALLBACKS = {"gen_length": 256, "block_length": 32}


def check_dtype(text: str) -> None:
    """Both spellings (bf16 / bfloat16, ...) are accepted everywhere; anything else is refused."""
    from tadllm.models.loading import DTYPES

    if text not in DTYPES:
        raise ValueError(f"unknown dtype {text!r}; use {DTYPE_HELP}")


@dataclass
class ModelArguments:
    """The model a command loads (`load_from_args`) and how it runs it (`accelerate_decoding`)."""

    model: str | None = field(default=None, metadata={"help": "checkpoint folder or hub name", "required": True})
    dtype: str | None = field(default="auto", metadata={"help": DTYPE_HELP, "check": check_dtype})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N (default: cuda when available)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow non-native families' own code"})
    mask_token_id: int | None = field(default=None, metadata={"help": "override the mask id of a generic model"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (pays off on GPUs; see "
                                                           "docs/performance.md)"})
    cuda_graphs: bool = field(default=False, metadata={
        "help": "replay CUDA graphs of the decoding forwards (pays off at small batches on GPUs; with --compile: "
                "graphs of the compiled model; see docs/performance.md)"})


def add_model_args(parser: ConfigParser, **kwargs):
    """The `ModelArguments` flags; `kwargs` go to `ConfigParser.add_dataclass` (a command's defaults / help)."""
    return parser.add_dataclass(ModelArguments, "model", **kwargs)


def add_decoding_args(parser: ConfigParser, fallbacks: dict | None = None, **kwargs):
    """The decoding flags of `generate`, `eval`, `trajectories` and `serve`: DecodeConfig's fields
    (`DecodingArguments`). `fallbacks`: the lengths used when neither the flags nor the model set them."""
    from tadllm.decoding.config import DecodingArguments

    fallbacks = {**LENGTH_FALLBACKS, **(fallbacks or {})}
    kwargs["help"] = {"gen_length": f"default: the model's recorded gen length (testbed.json), else "
                                    f"{fallbacks['gen_length']}",
                      "block_length": f"default: the model's recorded block length, else {fallbacks['block_length']}",
                      **kwargs.get("help", {})}
    return parser.add_dataclass(DecodingArguments, "decoding", **kwargs)


def apply_model_settings(args, command: str, fallbacks: dict | None = None, task_name: str | None = None):
    """Fill the decoding lengths left unset (None) in `args` (a namespace or `DecodingArguments` with `model`)
    from the model's recorded settings (`tadllm.testbed.settings`), else `fallbacks`; check that the decoding
    options go together, and load the task (with the model's problem distribution when it records one).
    Prints one line when defaults came from the model. Returns the task or None."""
    from tadllm.testbed.settings import describe, fill_lengths, load_task, recorded_settings

    sweep_keys = {spec.split("=", 1)[0].strip().replace("-", "_") for spec in getattr(args, "sweep", None) or []}
    check_policy_flags(args.policy, args.threshold, args.steps, sweep_keys)
    settings = recorded_settings(args.model)
    taken = fill_lengths(args, settings, {**LENGTH_FALLBACKS, **(fallbacks or {})})
    task = load_task(task_name, settings) if task_name else None
    note = describe(args.model, settings, taken, task if getattr(args, "data", None) is None else None)
    if note:
        print(f"{command}: {note}", file=sys.stderr)
    return task


def check_policy_flags(policy: str, threshold, steps, sweep_keys=()) -> None:
    """`--threshold` means nothing to a fixed-count policy and `--steps` nothing to a threshold policy:
    refuse them rather than record a setting that was not used."""
    from tadllm.decoding.config import FIXED_COUNT_POLICIES, THRESHOLD_POLICIES
    from tadllm.errors import UserError

    if "policy" in sweep_keys:
        return
    if threshold is not None and policy in FIXED_COUNT_POLICIES:
        raise UserError(f"--threshold {threshold:g} has no effect with --policy {policy} (a fixed number of tokens "
                        f"per step, set by --steps); use --policy {' or '.join(THRESHOLD_POLICIES)}, or drop --threshold")
    if steps is not None and policy in THRESHOLD_POLICIES:
        raise UserError(f"--steps {steps} has no effect with --policy {policy} (it reveals every token past the "
                        f"threshold); use --policy {' or '.join(FIXED_COUNT_POLICIES)}, or drop --steps")


def decoding_options(args) -> dict:
    """The DecodeConfig fields of `args` (a namespace or `DecodingArguments`), unvalidated (a sweep may
    complete them)."""
    from tadllm.decoding.config import DecodingArguments

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(DecodingArguments)}


def decode_config_from_args(args):
    from tadllm.decoding import DecodeConfig

    return DecodeConfig(**decoding_options(args))


def accelerate_decoding(model, args):
    """Apply `--compile` and/or `--cuda-graphs` to a loaded model (both: graphs of the compiled model). A
    native LLaDA on a GPU also gets fused q/k/v and ff/up matmuls (`LLaDAModelLM.fuse_projections`; these
    commands never save the model)."""
    from tadllm.decoding.cache import base_model
    from tadllm.decoding.graphs import compile_model, cuda_graph_model

    base = base_model(model)
    if hasattr(base, "fuse_projections") and next(base.parameters()).device.type == "cuda":
        base.fuse_projections()
    try:
        if args.cuda_graphs:
            return cuda_graph_model(model, compile=args.compile)
    except ValueError as err:
        from tadllm.errors import UserError

        raise UserError(str(err)) from None
    return compile_model(model) if args.compile else model


def load_from_args(args):
    from tadllm.models import load_model

    model, tokenizer, family = load_model(args.model, dtype=args.dtype, device=args.device,
                                          trust_remote_code=args.trust_remote_code, mask_token_id=args.mask_token_id)
    return accelerate_decoding(model, args), tokenizer, family
