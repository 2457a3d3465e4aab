"""Ablation of the TAD loss on the testbed: δ, distillation temperature τ and KL weight, several seeds.

Reuses the quickstart's stages (same teacher, trajectories, budget and evaluation) and trains one student
per (variant, seed). Usage (GPU):
    PYTHONPATH=src python benchmarks/testbed_ablation.py --device cuda --out runs/ablation
Prints a table (AUP mean ± sd, accuracy at matched TPF) and writes ablation.json / ablation.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = {
    "ce-only": {"loss_mode": "ce_only", "delta": 4},
    "tad-d4": {"delta": 4},
    "tad-d8": {"delta": 8},
    "tad-d16": {"delta": 16},
    "tad-d32": {"delta": 32},
    "tad-d16-tau2": {"delta": 16, "temperature": 2.0},
    "tad-d16-kl0.25": {"delta": 16, "kl_weight": 0.25},
    "tad-d4-tau2": {"delta": 4, "temperature": 2.0},
}


def main(argv=None) -> int:
    from tadllm.testbed.quickstart import (QuickstartConfig, build_trajectories, evaluate_model, problems,
                                           summary_table, testbed_task, train_student)

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--variants", default="ce-only,tad-d8,tad-d16,tad-d32,tad-d16-tau2,tad-d16-kl0.25,tad-d4-tau2")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--teacher", default=None, help="testbed teacher checkpoint (default: the bundled one)")
    p.add_argument("--train-problems", type=int, default=4096)
    p.add_argument("--train-steps", type=int, default=500)
    p.add_argument("--train-batch-size", type=int, default=64)
    p.add_argument("--test-problems", type=int, default=1000)
    p.add_argument("--thresholds", default="0.999,0.99,0.95,0.9,0.7")
    a = p.parse_args(argv)
    cfg = QuickstartConfig(out_dir=a.out, device=a.device, train_problems=a.train_problems,
                           test_problems=a.test_problems, train_steps=a.train_steps,
                           train_batch_size=a.train_batch_size, batch_size=1000,
                           thresholds=[float(t) for t in a.thresholds.split(",")])
    if a.teacher:
        cfg.teacher = a.teacher
    out = Path(a.out)
    task, spec, meta = testbed_task(cfg.teacher)
    train, test = problems(spec, meta, cfg.train_problems, cfg.test_problems)
    traj = build_trajectories(cfg, task, train, meta, out)
    results = {}
    for name in a.variants.split(","):
        for seed in range(a.seeds):
            key = f"{name}-s{seed}"
            path = train_student(cfg, name, traj, out, seed, **VARIANTS[name])
            results[key] = evaluate_model(cfg, key, path, task, test, meta, out)
        table, numbers = summary_table(results, tpf_grid=(10, 12, 14, 16))  # rewritten after each variant
        (out / "ablation.md").write_text(table + "\n")
        (out / "ablation.json").write_text(json.dumps({"variants": {k: VARIANTS[k] for k in a.variants.split(",")},
                                                       "summary": numbers}, indent=1, default=str))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
