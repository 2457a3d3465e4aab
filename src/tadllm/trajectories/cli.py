"""`tad trajectories`: generate teacher trajectories for TAD distillation (single process or accelerate).

The options are dataclasses (`ModelArguments`, `TrajectoryArguments`, part of `DecodingArguments`) read by
`tadllm.config.ConfigParser`: flags, `--config FILE.yaml` and `key=value`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from tadllm.cliargs import DTYPE_HELP, ConfigParser, add_decoding_args, add_model_args

# The decoding options a teacher's trajectory uses (one token per step by default: no multi-block, no cache,
# no early stop, so every step of the canvas is recorded).
DECODING = ("gen_length", "block_length", "steps", "temperature", "policy", "threshold", "seed")


@dataclass
class TrajectoryArguments:
    """Which problems `tad trajectories` decodes, and where and how it stores them."""

    revision: str | None = field(default=None, metadata={"help": "hub revision of --model"})
    task: str | None = field(default=None, metadata={
        "help": "task name (gsm8k, math, humaneval, mbpp, kodcode, arith)", "required": True})
    data: str | None = field(default=None, metadata={
        "help": "local .jsonl/.json/.parquet (or .jsonl.gz/.json.gz) file or datasets hub name (default: the "
                "task's own source)"})
    split: str = field(default="train", metadata={"help": "dataset split"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N problems"})
    template: str | None = field(default=None, metadata={
        "help": "privileged-prompt template (str.format fields of the task); '@FILE' reads it from FILE"})
    out: str | None = field(default=None, metadata={
        "help": "output directory (resumed when it exists)", "required": True})
    samples_per_problem: int = field(default=1, metadata={"help": "teacher samples of each problem"})
    batch_size: int = field(default=32, metadata={"help": "rows decoded together"})
    chunk_size: int = field(default=256, metadata={"help": "problems per shard / resume unit"})
    keep: str = field(default="correct", metadata={
        "help": "store only verified trajectories (default) or all of them with their `correct` flag",
        "choices": ("correct", "all")})
    progress: bool = field(default=True, metadata={"help": "show a progress bar", "no_help": "no progress bar"})


def build_parser() -> ConfigParser:
    p = ConfigParser(
        prog="tad trajectories",
        description="Decode the teacher (the model with the reference solution in its prompt) on a task's "
                    "problems, verify the answers and store the trajectories as parquet shards. Resumable: "
                    "re-run the same command to continue. Multi-GPU: `accelerate launch -m "
                    "tadllm.trajectories.cli ...` (each process takes every W-th problem).")
    add_model_args(p, exclude=("compile", "cuda_graphs"), defaults={"dtype": None}, help={
        "model": "checkpoint folder or hub name (the teacher = the base model)",
        "dtype": DTYPE_HELP + "; default: bf16 on CUDA, fp32 on CPU",
        "device": "cuda | cpu | cuda:N (default: this process's accelerator)"})
    p.add_dataclass(TrajectoryArguments, "trajectories")
    add_decoding_args(p, only=DECODING, defaults={"temperature": 0.7, "stop_at_eos": False}, help={
        "temperature": "0.7 for math, 0 for code in the release",
        "steps": "decoding steps (default: gen length = 1 token/step)"})
    return p


def main_trajectories(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tadllm.cliargs import apply_model_settings, decode_config_from_args
    from tadllm.distributed import dist_context
    from tadllm.errors import UserError
    from tadllm.models import default_device, load_model
    from tadllm.models.loading import check_model_folder

    from .runner import generate_trajectories

    task = apply_model_settings(args, "tad trajectories", task_name=args.task)

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
    config = decode_config_from_args(args)
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
        rank=rank, world_size=world, progress=args.progress, chunk_size=args.chunk_size)
    if rank == 0:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":  # python -m tadllm.trajectories.cli ...
    sys.exit(main_trajectories())
