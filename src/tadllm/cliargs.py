"""The command-line helpers every `tad` command shares: the one-line `ArgumentParser`, the model and decoding
flags, the settings recorded with a model (testbed.json), `--dtype`, `--compile` / `--cuda-graphs`.

The command modules (`tadllm.decoding.cli`, `tadllm.trajectories.cli`, `tadllm.distill`, `tadllm.eval.cli`,
`tadllm.testbed.cli`, ...) import these; `tadllm.cli` only dispatches `tad CMD` to them. Only the standard
library is imported at module level, so `tad --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys


def add_decoding_args(parser: argparse.ArgumentParser, **defaults) -> None:
    """Decoding options shared by `generate`, `eval` and `trajectories`."""
    from tadllm.decoding.cache import USE_CACHE
    from tadllm.decoding.policies import POLICIES

    g = parser.add_argument_group("decoding")
    g.add_argument("--policy", default=defaults.get("policy", "low_confidence"), choices=list(POLICIES))
    g.add_argument("--threshold", type=float, default=defaults.get("threshold"),
                   help="entropy (nats, reveal below) or confidence (reveal above) threshold")
    g.add_argument("--steps", type=int, default=None, help="fixed-count policies: total steps (default gen-length)")
    fallbacks = {"gen_length": defaults.get("gen_length", 256), "block_length": defaults.get("block_length", 32)}
    parser.set_defaults(length_fallbacks=fallbacks)
    g.add_argument("--gen-length", type=int, default=None,
                   help=f"default: the model's recorded gen length (testbed.json), else {fallbacks['gen_length']}")
    g.add_argument("--block-length", type=int, default=None,
                   help=f"default: the model's recorded block length, else {fallbacks['block_length']}")
    g.add_argument("--temperature", type=float, default=defaults.get("temperature", 0.0))
    g.add_argument("--multi-block", action="store_true", help="pipelined multi-block decoding (d3LLM)")
    g.add_argument("--block-add-threshold", type=float, default=0.5)
    g.add_argument("--decoded-token-threshold", type=float, default=0.5)
    g.add_argument("--multi-block-reveal", default="opened", choices=["opened", "activated"],
                   help="which opened blocks reveal tokens: every opened block (the reference's rule) or only "
                        "fully active ones (an earlier tadllm rule)")
    g.add_argument("--no-stop-at-eos", action="store_true", help="decode the whole length even after EOS")
    g.add_argument("--use-cache", default="none", choices=list(USE_CACHE),
                   help="Fast-dLLM KV cache (native LLaDA only; docs/performance.md)")
    g.add_argument("--seed", type=int, default=0)
    return g


def apply_model_settings(args, command: str, task_name: str | None = None):
    """Fill the decoding lengths left unset from the model's recorded settings (`tadllm.testbed.settings`),
    check that the decoding flags go together, and load the task (with the model's problem distribution
    when it records one). Prints one line when defaults came from the model. Returns the task or None."""
    from tadllm.testbed.settings import describe, fill_lengths, load_task, recorded_settings

    sweep_keys = {spec.split("=", 1)[0].strip().replace("-", "_") for spec in getattr(args, "sweep", None) or []}
    check_policy_flags(args.policy, args.threshold, args.steps, sweep_keys)
    settings = recorded_settings(args.model)
    taken = fill_lengths(args, settings, args.length_fallbacks)
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
    """The DecodeConfig fields given by `add_decoding_args`, unvalidated (a sweep may complete them)."""
    return dict(gen_length=args.gen_length, block_length=args.block_length, policy=args.policy, steps=args.steps,
                threshold=args.threshold, temperature=args.temperature, multi_block=args.multi_block,
                block_add_threshold=args.block_add_threshold, decoded_token_threshold=args.decoded_token_threshold,
                multi_block_reveal=args.multi_block_reveal, stop_at_eos=not args.no_stop_at_eos, seed=args.seed, use_cache=args.use_cache)


def decode_config_from_args(args):
    from tadllm.decoding import DecodeConfig

    return DecodeConfig(**decoding_options(args))


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported on one line (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DTYPE_HELP = "float32 (fp32) | bfloat16 (bf16) | float16 (fp16) | auto (the checkpoint's)"


def dtype_arg(text: str) -> str:
    """argparse type of every `--dtype`: both spellings (bf16 / bfloat16, ...) are accepted everywhere."""
    from tadllm.models.loading import DTYPES

    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; use {DTYPE_HELP}")
    return text


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", required=True, help="checkpoint folder or hub name")
    g.add_argument("--dtype", default="auto", type=dtype_arg, help=DTYPE_HELP)
    g.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    g.add_argument("--trust-remote-code", action="store_true")
    g.add_argument("--mask-token-id", type=int, default=None, help="override the mask id of a generic model")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs)")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="replay CUDA graphs of the decoding forwards (pays off at small batches on GPUs; "
                   "with --compile: graphs of the compiled model)")


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
