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
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "generate": ("tadllm.cli", "main_generate"),
    "trajectories": ("tadllm.trajectories.cli", "main_trajectories"),
    "train": ("tadllm.distill.trainer", "main_train"),
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
    g.add_argument("--gen-length", type=int, default=defaults.get("gen_length", 256))
    g.add_argument("--block-length", type=int, default=defaults.get("block_length", 32))
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


def decoding_options(args) -> dict:
    """The DecodeConfig fields given by `add_decoding_args`, unvalidated (a sweep may complete them)."""
    return dict(gen_length=args.gen_length, block_length=args.block_length, policy=args.policy, steps=args.steps,
                threshold=args.threshold, temperature=args.temperature, multi_block=args.multi_block,
                block_add_threshold=args.block_add_threshold, decoded_token_threshold=args.decoded_token_threshold,
                multi_block_reveal=args.multi_block_reveal, stop_at_eos=not args.no_stop_at_eos, seed=args.seed, use_cache=args.use_cache)


def decode_config_from_args(args):
    from .decoding import DecodeConfig

    return DecodeConfig(**decoding_options(args))


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", required=True, help="checkpoint folder or hub name")
    g.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto")
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
        raise SystemExit(str(err)) from None
    return compile_model(model) if args.compile else model


def load_from_args(args):
    from .models import load_model

    model, tokenizer, family = load_model(args.model, dtype=args.dtype, device=args.device,
                                          trust_remote_code=args.trust_remote_code, mask_token_id=args.mask_token_id)
    return accelerate_decoding(model, args), tokenizer, family


def main_generate(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tad generate", description="Decode a prompt with a masked-diffusion LM.")
    add_model_args(parser)
    parser.add_argument("--prompt", required=True, help="user message (the chat template is applied if any)")
    parser.add_argument("--raw", action="store_true", help="do not apply the chat template")
    parser.add_argument("--show", action="store_true", help="render the decoding live, step by step")
    add_decoding_args(parser, gen_length=128)
    args = parser.parse_args(argv)
    from .decoding import generate

    model, tokenizer, family = load_from_args(args)
    if tokenizer is None:
        parser.error(f"{args.model} has no tokenizer files; tad generate needs one to encode the prompt")
    text = args.prompt if args.raw else family.format_prompt(tokenizer, args.prompt)
    ids = tokenizer.encode(text, add_special_tokens=False)
    config = decode_config_from_args(args)
    show = LiveView(tokenizer, family.mask_token_id) if args.show else None
    out = generate(model, family, [ids], config, on_step=show)
    answer = tokenizer.decode(out.tokens[0, : int(out.num_tokens[0])], skip_special_tokens=True)
    print(answer)
    print(f"[tad] tokens {int(out.num_tokens[0])}  forward passes {int(out.nfe[0])}  "
          f"TPF {float(out.tpf[0]):.2f}  time {out.wall_time:.2f}s", file=sys.stderr)
    return 0


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
    import importlib

    module, func = COMMANDS[name]
    result = getattr(importlib.import_module(module), func)(argv[1:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
