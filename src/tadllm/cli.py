"""`tad`: the command-line interface. Each subcommand imports its stage lazily, so `tad --help` is instant.

    tad generate     decode a prompt (optionally showing the parallel decoding live)
    tad trajectories build verified teacher trajectories
    tad train        TAD distillation (YAML recipe + key=value overrides)
    tad merge        merge a LoRA adapter into its base checkpoint
    tad eval         accuracy / TPF / tokens/s of one decoding configuration or a sweep
    tad report       plots and AUP tables over several eval runs
    tad aup          AUP of published (TPF, accuracy) points from a YAML file
    tad pretrain     train the testbed's teacher from scratch
    tad quickstart   the whole pipeline on the bundled tiny model
    tad serve        an OpenAI-compatible HTTP server that batches concurrent requests

A mistake in the input (a missing folder, a bad value, an unknown key) is reported on one line;
`tad --debug COMMAND ...` (or TAD_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

COMMANDS = {
    "generate": ("tadllm.cli", "main_generate"),
    "trajectories": ("tadllm.trajectories.cli", "main_trajectories"),
    "train": ("tadllm.distill.cli", "main_train"),
    "merge": ("tadllm.distill.merge", "main_merge"),
    "eval": ("tadllm.eval.runner", "main_eval"),
    "report": ("tadllm.eval.runner", "main_report"),
    "aup": ("tadllm.eval.runner", "main_aup"),
    "pretrain": ("tadllm.testbed.cli", "main_pretrain"),
    "quickstart": ("tadllm.testbed.quickstart", "main_quickstart"),
    "serve": ("tadllm.serve.cli", "main_serve"),
}


def add_decoding_args(parser: argparse.ArgumentParser, **defaults) -> None:
    """Decoding options shared by `generate`, `eval`, `trajectories` and `serve`."""
    from .decoding.cache import USE_CACHE
    from .decoding.policies import POLICIES

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
    from .models.loading import check_model_folder
    from .testbed.settings import describe, fill_lengths, load_task, recorded_settings

    check_model_folder(args.model)
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
    from .decoding.config import FIXED_COUNT_POLICIES, THRESHOLD_POLICIES
    from .errors import UserError

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
    from .decoding import DecodeConfig

    return DecodeConfig(**decoding_options(args))


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported on one line (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DTYPE_HELP = "float32 (fp32) | bfloat16 (bf16) | float16 (fp16) | auto (the checkpoint's)"


def dtype_arg(text: str) -> str:
    """argparse type of every `--dtype`: both spellings (bf16 / bfloat16, ...) are accepted everywhere."""
    from .models.loading import _DTYPES

    if text not in _DTYPES:
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
    from .decoding.cache import _base_model
    from .decoding.graphs import compile_model, cuda_graph_model

    base = _base_model(model)
    if hasattr(base, "fuse_projections") and next(base.parameters()).device.type == "cuda":
        base.fuse_projections()
    try:
        if args.cuda_graphs:
            return cuda_graph_model(model, compile=args.compile)
    except ValueError as err:
        from .errors import UserError

        raise UserError(str(err)) from None
    return compile_model(model) if args.compile else model


def load_from_args(args):
    from .models import load_model

    model, tokenizer, family = load_model(args.model, dtype=args.dtype, device=args.device,
                                          trust_remote_code=args.trust_remote_code, mask_token_id=args.mask_token_id)
    return accelerate_decoding(model, args), tokenizer, family


def main_generate(argv=None) -> int:
    parser = ArgumentParser(prog="tad generate", description="Decode a prompt with a masked-diffusion LM.")
    add_model_args(parser)
    parser.add_argument("--prompt", required=True, help="user message (the chat template is applied if any)")
    parser.add_argument("--raw", action="store_true",
                        help="do not apply the chat template: the prompt is encoded as given, with the tokenizer's "
                             "own special tokens (e.g. BOS) added, as for a tokenizer without a template")
    parser.add_argument("--show", action="store_true", help="render the decoding live, step by step")
    add_decoding_args(parser, gen_length=128)
    args = parser.parse_args(argv)
    from .decoding import generate
    from .errors import UserError
    from .models import encode_prompt

    apply_model_settings(args, "tad generate")
    config = decode_config_from_args(args)
    model, tokenizer, family = load_from_args(args)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files; tad generate needs one to encode the prompt")
    ids = encode_prompt(tokenizer, family, args.prompt, chat=not args.raw)  # the ids tad eval would decode
    check_prompt_fits(model, len(ids), config.gen_length)
    show = LiveView(tokenizer, family.mask_token_id) if args.show else None
    out = generate(model, family, [ids], config, on_step=show)
    answer = tokenizer.decode(out.tokens[0, : int(out.num_tokens[0])], skip_special_tokens=True)
    print(answer)
    if not answer.strip():
        print(f"[tad] warning: the model generated no text before its end-of-sequence token (gen_length "
              f"{config.gen_length}, block_length {config.block_length}); a model trained on other lengths may "
              f"stop at once: try the --gen-length / --block-length it was trained with", file=sys.stderr)
    print(f"[tad] tokens {int(out.num_tokens[0])}  forward passes {int(out.nfe[0])}  "
          f"TPF {float(out.tpf[0]):.2f}  time {out.wall_time:.2f}s", file=sys.stderr)
    return 0


def check_prompt_fits(model, prompt_tokens: int, gen_length: int) -> None:
    """The prompt + the canvas must fit the model's positions (the check `tad eval` runs on every prompt)."""
    from .decoding.loop import max_positions
    from .errors import UserError

    limit = max_positions(model)
    if limit is not None and prompt_tokens + gen_length > limit:
        room = limit - prompt_tokens
        fix = f"lower --gen-length to {room} or less" if room > 0 else "shorten the prompt"
        raise UserError(f"the prompt has {prompt_tokens} tokens + --gen-length {gen_length} > the model's maximum "
                        f"sequence length {limit}; {fix}")


class LiveView:
    """Redraws the response after every step: masked positions as '·', new tokens highlighted."""

    def __init__(self, tokenizer, mask_id: int):
        self.tokenizer, self.mask_id, self.previous = tokenizer, mask_id, None

    def __call__(self, step, tokens, revealed, indices=None):
        row, seen = tokens[0].tolist(), revealed[0].tolist()
        before = self.previous or [False] * len(row)
        pieces = []
        for tok, is_seen, was_seen in zip(row, seen, before):
            if not is_seen:
                pieces.append("\x1b[2m·\x1b[0m")
                continue
            piece = self.tokenizer.decode([tok], skip_special_tokens=False)
            pieces.append(piece if was_seen else f"\x1b[1;32m{piece}\x1b[0m")
        self.previous = seen
        sys.stdout.write("\x1b[2J\x1b[H" + f"step {step}  revealed {sum(seen)}/{len(seen)}\n\n" + "".join(pieces) + "\n")
        sys.stdout.flush()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(argv) and argv[0] == "--debug"
    argv = argv[1:] if debug else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"tad: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if "--debug" in argv[1:]:  # also accepted after the command
        debug, argv = True, [a for a in argv if a != "--debug"]
    return run_command(name, argv[1:], debug or os.environ.get("TAD_DEBUG", "") not in ("", "0"))


def run_command(name: str, args: list[str], debug: bool = False) -> int:
    """Run `tad NAME ARGS`; a user error (`tadllm.errors`) becomes one line on stderr and exit status 2,
    unless `debug`, which lets it raise with its traceback."""
    import importlib

    from .errors import one_line, user_error_types

    module, func = COMMANDS[name]
    try:
        result = getattr(importlib.import_module(module), func)(args)
    except user_error_types() as err:
        if debug:
            raise
        print(f"tad {name}: error: {one_line(err)} (--debug for the traceback)", file=sys.stderr, flush=True)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
