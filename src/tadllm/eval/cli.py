"""The `tad eval`, `tad report` and `tad aup` command lines (`python -m tadllm.eval.cli ...` == `tad eval`).

Their options are dataclasses (`ModelArguments`, `DecodingArguments`, `EvalArguments`; `ReportArguments`;
`AUPArguments`) read by `tadllm.config.ConfigParser`: flags, `--config FILE.yaml` (e.g.
configs/testbed-eval.yaml) and `key=value`."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tadllm.cliargs import (
    DTYPE_HELP,
    ConfigParser,
    accelerate_decoding,
    add_decoding_args,
    add_model_args,
    apply_model_settings,
    decoding_options,
)


@dataclass
class EvalArguments:
    """What `tad eval` evaluates, where it writes, and how it runs."""

    task: str | None = field(default=None, metadata={
        "help": "task name (gsm8k, math, humaneval, mbpp, kodcode, arith)", "required": True})
    data: str | None = field(default=None, metadata={
        "help": "local .jsonl/.json/.parquet (or .jsonl.gz/.json.gz) file or datasets hub name (default: the "
                "task's own source)"})
    split: str = field(default="test", metadata={"help": "dataset split"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N examples"})
    out: str | None = field(default=None, metadata={
        "help": "output folder (default: eval_results/TASK/MODEL/METHOD)"})
    method: str | None = field(default=None, metadata={
        "help": "curve / leaderboard name (default: the policy name)"})
    sweep: list[str] | None = field(default=None, metadata={
        "append": True, "metavar": "KEY=V1,V2,...",
        "help": "sweep a decoding option; repeat for a product (--sweep threshold=0.9,0.5 --sweep "
                "block_length=16,32; in YAML a list of such strings)"})
    batch_size: int = field(default=16, metadata={"help": "prompts decoded together"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder when the checkpoint has none"})
    system_prompt: str | None = field(default=None, metadata={"help": "system message for the chat template"})
    overwrite: bool = field(default=False, metadata={"help": "start results.json afresh instead of resuming"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar", "no_help": "no progress bar"})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "x"


def default_method_label(policy: str, multi_block: bool = False) -> str:
    return policy + ("+multi-block" if multi_block else "")


def build_eval_parser(prog: str = "tad eval") -> ConfigParser:
    p = ConfigParser(prog=prog, description="Evaluate a masked-diffusion LM on a task: accuracy, "
                     "TPF (tokens per forward pass), throughput; writes results.json + results.md.")
    add_model_args(p, defaults={"dtype": None}, help={
        "dtype": DTYPE_HELP + "; default: bf16 on CUDA, fp32 on CPU",
        "device": "default: the rank's device under accelerate, else cuda if available, else cpu"})
    p.add_dataclass(EvalArguments, "evaluation")
    add_decoding_args(p)
    return p


def main_eval(argv: Sequence[str] | None = None) -> int:
    """``tad eval``: evaluate (a sweep of) decoding settings; prints the markdown table at the end."""
    args = build_eval_parser().parse_args(argv)
    from tadllm.distributed import dist_context
    from tadllm.eval.sweep import parse_sweep, sweep_configs
    from tadllm.models.loading import check_model_folder

    task = apply_model_settings(args, "tad eval", task_name=args.task)
    base = decoding_options(args)
    points = parse_sweep(args.sweep)
    sweep_configs(base, points)  # fail on a bad config before loading anything
    check_model_folder(args.model)  # then on a missing model folder, before the data and the hub
    ctx = dist_context()
    examples = load_examples(task, args)
    model, tokenizer, family, device, dtype = load_eval_model(args, ctx)
    method = args.method or default_method_label(args.policy, args.multi_block)
    out = Path(args.out) if args.out else Path("eval_results") / _slug(args.task) / _slug(
        Path(str(args.model).rstrip("/")).name) / _slug(method)
    if ctx.is_main:
        print(f"tad eval: {len(examples)} examples of {args.task}, {len(points)} setting(s), "
              f"{ctx.world_size} process(es), device {device}, dtype {dtype} -> {out}", file=sys.stderr)
    from tadllm.eval.results import RESULTS_JSON, results_markdown
    from tadllm.eval.runner import run_sweep

    results = run_sweep(model, tokenizer, family, task, examples, base, points, out, model_name=str(args.model),
                        method=method, batch_size=args.batch_size, data_source=args.data, split=args.split,
                        limit=args.limit, seed=args.seed, system_prompt=args.system_prompt,
                        progress=args.progress, overwrite=args.overwrite, dist=ctx)
    if ctx.is_main and results is not None:
        print(results_markdown(results))
        print(f"results: {out / RESULTS_JSON}", file=sys.stderr)
    return 0


def load_examples(task, args) -> list:
    from tadllm.errors import UserError

    examples = task.load(args.data, split=args.split, limit=args.limit)
    if not examples:
        raise UserError(f"no examples in {args.data or args.task} (split {args.split!r})")
    return examples


def load_eval_model(args, ctx):
    """(model, tokenizer, family, device, dtype): one device per rank under accelerate, bf16 on CUDA and fp32
    on a CPU unless --dtype says otherwise, --compile / --cuda-graphs applied, --tokenizer when given."""
    import torch

    from tadllm.errors import UserError
    from tadllm.models import load_model, load_tokenizer
    from tadllm.models.loading import default_device

    device = default_device(args.device)
    if ctx.world_size > 1 and ctx.device is not None and device.index is None and \
            (args.device is None or device.type == torch.device(ctx.device).type):
        device = torch.device(ctx.device)  # one device per rank: `--device cuda` means this rank's GPU
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "float32")
    model, tokenizer, family = load_model(args.model, dtype=dtype, device=device,
                                          trust_remote_code=args.trust_remote_code,
                                          mask_token_id=args.mask_token_id)
    model = accelerate_decoding(model, args)
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer, trust_remote_code=args.trust_remote_code)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files; pass --tokenizer PATH")
    return model, tokenizer, family, device, dtype


@dataclass
class ReportArguments:
    """What `tad report` reads and writes."""

    runs: list[str] | None = field(default=None, metadata={
        "positional": True, "required": True, "metavar": "RUN_DIR",
        "help": "results.json files or folders holding them"})
    out: str = field(default="report", metadata={"help": "output folder"})
    published: str | None = field(default=None, metadata={
        "help": "YAML of published points to compare against (e.g. configs/published/tad_llada.yaml)"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap replicates for the AUP CI (0: none)"})


@dataclass
class AUPArguments:
    """The points `tad aup` scores."""

    points: str | None = field(default=None, metadata={
        "positional": True, "required": True, "metavar": "YAML",
        "help": "points YAML (task -> {y_max, methods: {name: [[tpf, acc], ...]}})"})


def main_report(argv: Sequence[str] | None = None) -> int:
    """``tad report RUN_DIR... --out DIR [--published YAML]``: report.md, PNGs and aup.json."""
    p = ConfigParser(prog="tad report", description="results.json files -> markdown report, "
                                "accuracy-vs-TPF plot, AUP tables and bar chart")
    p.add_dataclass(ReportArguments, "report")
    (args,) = p.parse(argv)
    from tadllm.eval.report import report_main

    out = report_main(args.runs, args.out, published=args.published, n_boot=args.n_boot)
    print(Path(out["markdown"]).read_text())
    print(f"report written to {args.out}: report.md, accuracy_vs_tpf.png, aup_bar.png, aup.json", file=sys.stderr)
    return 0


def main_aup(argv: Sequence[str] | None = None) -> int:
    """``tad aup YAML``: AUP tables (per task and mean) for a YAML of published points."""
    p = ConfigParser(prog="tad aup", description="AUP of published accuracy-vs-TPF points")
    p.add_dataclass(AUPArguments, "points")
    (args,) = p.parse(argv)
    from tadllm.eval.report import aup_main

    print(aup_main(args.points))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_eval())
