"""`tad trajectories`: generate teacher trajectories for TAD distillation (single process or accelerate)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tadllm.cliargs import DTYPE_HELP, ArgumentParser, dtype_arg
from tadllm.distributed import dist_context
from tadllm.decoding import POLICIES


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="tad trajectories",
        description="Decode the teacher (the model with the reference solution in its prompt) on a task's "
                    "problems, verify the answers and store the trajectories as parquet shards. Resumable: "
                    "re-run the same command to continue. Multi-GPU: `accelerate launch -m "
                    "tadllm.trajectories.cli ...` (each process takes every W-th problem).")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="checkpoint folder or hub name (the teacher = the base model)")
    g.add_argument("--revision", default=None, help="hub revision of --model")
    g.add_argument("--trust-remote-code", action="store_true", help="allow non-native families' own code")
    g.add_argument("--mask-token-id", type=int, default=None, help="override the mask token id")
    g.add_argument("--dtype", default=None, type=dtype_arg, help=DTYPE_HELP + "; default: bf16 on CUDA, fp32 on CPU")
    g.add_argument("--device", default=None, help="cuda | cpu | cuda:N (default: this process's accelerator)")
    g = p.add_argument_group("data")
    g.add_argument("--task", required=True, help="task name (gsm8k, math, humaneval, mbpp, kodcode, arith)")
    g.add_argument("--data", default=None, help="local .jsonl/.json/.parquet (or .jsonl.gz/.json.gz) file or "
                                                "datasets hub name (default: the task's own source)")
    g.add_argument("--split", default="train")
    g.add_argument("--limit", type=int, default=None, help="use only the first N problems")
    g.add_argument("--template", default=None,
                   help="privileged-prompt template (str.format fields of the task); '@FILE' reads it from FILE")
    g = p.add_argument_group("decoding")
    g.add_argument("--gen-length", type=int, default=None,
                   help="default: the model's recorded gen length (testbed.json), else 256")
    g.add_argument("--block-length", type=int, default=None, help="default: the model's recorded one, else 32")
    g.add_argument("--steps", type=int, default=None, help="decoding steps (default: gen length = 1 token/step)")
    g.add_argument("--temperature", type=float, default=0.7, help="0.7 for math, 0 for code in the release")
    g.add_argument("--policy", default="low_confidence", choices=list(POLICIES))
    g.add_argument("--threshold", type=float, default=None, help="for the confidence / entropy policies")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="output directory (resumed when it exists)")
    g.add_argument("--samples-per-problem", type=int, default=1)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--chunk-size", type=int, default=256, help="problems per shard / resume unit")
    g.add_argument("--keep", choices=("correct", "all"), default="correct",
                   help="store only verified trajectories (default) or all of them with their `correct` flag")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-progress", action="store_true")
    p.set_defaults(length_fallbacks={"gen_length": 256, "block_length": 32})
    return p


def main_trajectories(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tadllm.cliargs import apply_model_settings
    from tadllm.decoding import DecodeConfig
    from tadllm.errors import UserError
    from tadllm.models import default_device, load_model
    from tadllm.models.loading import check_model_folder

    from .runner import generate_trajectories

    task = apply_model_settings(args, "tad trajectories", args.task)

    template = args.template
    if template and template.startswith("@"):
        with open(template[1:], encoding="utf-8") as f:
            template = f.read()
    ctx = dist_context()  # the setup of tad eval too; no collective is run: ranks share only the output folder
    rank, world, dist_device = ctx.rank, ctx.world_size, ctx.device
    device = args.device
    if world > 1 and dist_device is not None and (device is None or device == "cuda"):
        device = dist_device  # one GPU per process
    device = default_device(device)
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    config = DecodeConfig(gen_length=args.gen_length, block_length=args.block_length, policy=args.policy,
                          steps=args.steps, threshold=args.threshold, temperature=args.temperature,
                          seed=args.seed)
    check_model_folder(args.model)  # after the options, before the data and the hub
    examples = task.load(args.data, split=args.split, limit=args.limit)
    if not examples:
        raise UserError(f"no examples in {args.data or args.task} (split {args.split!r})")
    model, tokenizer, family = load_model(args.model, dtype=dtype, device=device,
                                          trust_remote_code=args.trust_remote_code,
                                          mask_token_id=args.mask_token_id, revision=args.revision)
    model_name = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
    summary = generate_trajectories(
        model, tokenizer, family, task, examples, config, args.out,
        samples_per_problem=args.samples_per_problem, batch_size=args.batch_size, keep=args.keep,
        template=template, seed=args.seed, model_name=model_name, model_revision=args.revision,
        rank=rank, world_size=world, progress=not args.no_progress, chunk_size=args.chunk_size)
    if rank == 0:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":  # python -m tadllm.trajectories.cli ...
    sys.exit(main_trajectories())
