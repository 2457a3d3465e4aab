"""Trajectory generation throughput: batched `tadllm.decoding.generate` vs one problem at a time.

    python benchmarks/bench_trajectories.py --out runs/bench            # GPU, bundled testbed teacher
    python benchmarks/bench_trajectories.py --small --out runs/bench    # CPU smoke run
    python benchmarks/bench_trajectories.py --random --out runs/bench   # same architecture, random weights

The teacher is the bundled testbed model (src/tadllm/assets/testbed-teacher, ~4M parameters, char-level) on
the `arith` task (ArithSpec(min_ops=2, max_ops=4)); prompts are the teacher's privileged prompts, as in
`tad trajectories`. Decoding uses the trajectory sampler: low_confidence, one token per step (steps =
gen_length = 64), blocks of 32, temperature 0.7. `samples/s` counts decoded problems per second; `acc%` is
the share of verified answers (a sanity check that batching does not break decoding; random weights give 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import REPO, device_info, num_params, pick_device, sync, table, write_json  # noqa: E402

from tadllm.decoding import DecodeConfig, generate  # noqa: E402
from tadllm.models import load_model  # noqa: E402
from tadllm.tasks.arith import ArithSpec, ArithTask  # noqa: E402
from tadllm.trajectories.runner import encode_prompt  # noqa: E402

TEACHER = REPO / "src" / "tadllm" / "assets" / "testbed-teacher"


def run(args) -> dict:
    device = pick_device(args.device, args.small)
    model, tokenizer, family = load_model(TEACHER, dtype=args.dtype, device=device)
    if args.random:
        torch.manual_seed(0)
        with torch.no_grad():
            for module in model.modules():
                model._init_weights(module)
    task = ArithTask(spec=ArithSpec(min_ops=2, max_ops=4), hint="answer", n_test=args.n_prompts)
    examples = task.load(split="test", limit=args.n_prompts)
    prompts = [encode_prompt(tokenizer, family, task.privileged_prompt(ex)) for ex in examples]
    cfg = DecodeConfig(gen_length=args.gen_length, block_length=args.block_length, policy="low_confidence",
                       steps=args.gen_length, temperature=args.temperature, use_cache=args.use_cache)

    def accuracy(out, exs):
        texts = [tokenizer.decode(t[:n], skip_special_tokens=True)
                 for t, n in zip(out.tokens.tolist(), out.num_tokens.tolist())]
        return 100.0 * sum(task.score_batch(texts, exs)) / len(exs)

    generate(model, family, prompts[:1], cfg)  # warm-up
    rows = []
    n_single = min(args.n_single, len(prompts))
    sync(device)
    t0 = time.perf_counter()
    singles = [generate(model, family, [p], cfg) for p in prompts[:n_single]]
    sync(device)
    single_s = time.perf_counter() - t0
    single_acc = 100.0 * sum(task.score_batch(
        [tokenizer.decode(o.tokens[0, :int(o.num_tokens[0])].tolist(), skip_special_tokens=True) for o in singles],
        examples[:n_single])) / n_single
    rows.append({"mode": "one at a time", "batch": 1, "problems": n_single, "wall_s": single_s,
                 "samples/s": n_single / single_s, "speedup": 1.0, "acc%": single_acc,
                 "forwards/s": sum(int(o.nfe[0]) for o in singles) / single_s})
    for batch in args.batch_sizes:
        generate(model, family, prompts[:batch], cfg)  # warm-up at this shape
        sync(device)
        t0 = time.perf_counter()
        out = generate(model, family, prompts, cfg, batch_size=batch)
        sync(device)
        wall = time.perf_counter() - t0
        rows.append({"mode": "batched", "batch": batch, "problems": len(prompts), "wall_s": wall,
                     "samples/s": len(prompts) / wall, "speedup": (len(prompts) / wall) / rows[0]["samples/s"],
                     "acc%": accuracy(out, examples), "forwards/s": None})
        print(f"batch {batch:4d}: {len(prompts) / wall:8.1f} samples/s", flush=True)
    return {"benchmark": "trajectories", "small": args.small, "random_weights": args.random,
            "model": {"path": str(TEACHER), "parameters": num_params(model), "dtype": args.dtype},
            "decode_config": cfg.to_dict(), "device": device_info(device), "results": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--small", action="store_true", help="CPU smoke run (few prompts)")
    p.add_argument("--random", action="store_true", help="random weights instead of the trained teacher")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--n-prompts", type=int, default=None, help="problems decoded by the batched runs")
    p.add_argument("--n-single", type=int, default=None, help="problems decoded one at a time")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--use-cache", default="none", choices=["none", "prefix", "dual"])
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    defaults = dict(n_prompts=8, n_single=4, batch_sizes=[8]) if args.small else \
        dict(n_prompts=1024, n_single=64, batch_sizes=[64, 256, 1024])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    result = run(args)
    name = args.name or "trajectories" + ("_small" if args.small else "") + ".json"
    path = write_json(args.out, name, result)
    title = (f"trajectories: testbed teacher ({'random weights, ' if args.random else ''}"
             f"{result['model']['parameters'] / 1e6:.1f}M params, {args.dtype}) on "
             f"{result['device'].get('gpu', result['device']['device'])}, arith, gen {args.gen_length}, "
             f"block {args.block_length}, 1 token/step, T={args.temperature}  -> {path}")
    print(table(result["results"], ["mode", "batch", "problems", "wall_s", "samples/s", "speedup", "acc%"], title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
