"""The `tad eval`, `tad report` and `tad aup` command lines (`python -m tadllm.eval.cli ...` == `tad eval`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from tadllm.cliargs import (
    DTYPE_HELP,
    ArgumentParser,
    accelerate_decoding,
    add_decoding_args,
    apply_model_settings,
    decoding_options,
    dtype_arg,
)
from tadllm.distributed import dist_context
from tadllm.eval.results import RESULTS_JSON, results_markdown
from tadllm.eval.runner import run_sweep
from tadllm.eval.sweep import parse_sweep, sweep_configs
from tadllm.models.loading import check_model_folder


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "x"


def default_method_label(policy: str, multi_block: bool = False) -> str:
    return policy + ("+multi-block" if multi_block else "")


def build_eval_parser(prog: str = "tad eval") -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description="Evaluate a masked-diffusion LM on a task: accuracy, "
                                "TPF (tokens per forward pass), throughput; writes results.json + results.md.")
    p.add_argument("--model", required=True, help="checkpoint folder or hub name")
    p.add_argument("--task", required=True, help="task name (gsm8k, math, humaneval, mbpp, kodcode, arith)")
    p.add_argument("--data", default=None, help="local .jsonl/.json/.parquet (or .jsonl.gz/.json.gz) file or "
                   "datasets hub name (default: the task's own source)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--out", default=None, help="output folder (default: eval_results/TASK/MODEL/METHOD)")
    p.add_argument("--method", default=None, help="curve / leaderboard name (default: the policy name)")
    g = add_decoding_args(p)
    g.add_argument("--sweep", action="append", default=None, metavar="KEY=V1,V2,...",
                   help="sweep a decoding option; repeat for a product (--sweep threshold=0.9,0.5 "
                   "--sweep block_length=16,32)")
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--dtype", default=None, type=dtype_arg, help=DTYPE_HELP + "; default: bf16 on CUDA, fp32 on CPU")
    r.add_argument("--device", default=None, help="default: the rank's device under accelerate, else cuda if "
                   "available, else cpu")
    r.add_argument("--trust-remote-code", action="store_true")
    r.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs; "
                   "see docs/performance.md)")
    r.add_argument("--cuda-graphs", action="store_true", help="replay CUDA graphs of the decoding forwards "
                   "(pays off at small batches on GPUs; with --compile: graphs of the compiled model; see "
                   "docs/performance.md)")
    r.add_argument("--mask-token-id", type=int, default=None)
    r.add_argument("--tokenizer", default=None, help="tokenizer folder when the checkpoint has none")
    r.add_argument("--system-prompt", default=None, help="system message for the chat template")
    r.add_argument("--overwrite", action="store_true", help="start results.json afresh instead of resuming")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_eval(argv: Sequence[str] | None = None) -> int:
    """``tad eval``: evaluate (a sweep of) decoding settings; prints the markdown table at the end."""
    args = build_eval_parser().parse_args(argv)
    from tadllm.errors import UserError

    task = apply_model_settings(args, "tad eval", args.task)
    base = decoding_options(args)
    points = parse_sweep(args.sweep)
    sweep_configs(base, points)  # fail on a bad config before loading anything
    check_model_folder(args.model)  # then on a missing model folder, before the data and the hub
    ctx = dist_context()

    from tadllm.models import load_model, load_tokenizer
    from tadllm.models.loading import default_device

    examples = task.load(args.data, split=args.split, limit=args.limit)
    if not examples:
        raise UserError(f"no examples in {args.data or args.task} (split {args.split!r})")
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
    method = args.method or default_method_label(args.policy, args.multi_block)
    out = Path(args.out) if args.out else Path("eval_results") / _slug(args.task) / _slug(
        Path(str(args.model).rstrip("/")).name) / _slug(method)
    if ctx.is_main:
        print(f"tad eval: {len(examples)} examples of {args.task}, {len(points)} setting(s), "
              f"{ctx.world_size} process(es), device {device}, dtype {dtype} -> {out}", file=sys.stderr)
    results = run_sweep(model, tokenizer, family, task, examples, base, points, out, model_name=str(args.model),
                        method=method, batch_size=args.batch_size, data_source=args.data, split=args.split,
                        limit=args.limit, seed=args.seed, system_prompt=args.system_prompt,
                        progress=not args.no_progress, overwrite=args.overwrite, dist=ctx)
    if ctx.is_main and results is not None:
        print(results_markdown(results))
        print(f"results: {out / RESULTS_JSON}", file=sys.stderr)
    return 0


def main_report(argv: Sequence[str] | None = None) -> int:
    """``tad report RUN_DIR... --out DIR [--published YAML]``: report.md, PNGs and aup.json."""
    p = ArgumentParser(prog="tad report", description="results.json files -> markdown report, "
                                "accuracy-vs-TPF plot, AUP tables and bar chart")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results.json files or folders holding them")
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    p.add_argument("--published", default=None, help="YAML of published points to compare against "
                   "(e.g. configs/published/tad_llada.yaml)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the AUP CI (0: none)")
    args = p.parse_args(argv)
    from tadllm.eval.report import report_main

    out = report_main(args.runs, args.out, published=args.published, n_boot=args.n_boot)
    print(Path(out["markdown"]).read_text())
    print(f"report written to {args.out}: report.md, accuracy_vs_tpf.png, aup_bar.png, aup.json", file=sys.stderr)
    return 0


def main_aup(argv: Sequence[str] | None = None) -> int:
    """``tad aup YAML``: AUP tables (per task and mean) for a YAML of published points."""
    p = ArgumentParser(prog="tad aup", description="AUP of published accuracy-vs-TPF points")
    p.add_argument("yaml", help="points YAML (task -> {y_max, methods: {name: [[tpf, acc], ...]}})")
    args = p.parse_args(argv)
    from tadllm.eval.report import aup_main

    print(aup_main(args.yaml))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_eval())
