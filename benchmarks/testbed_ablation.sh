#!/usr/bin/env bash
# GPU run of benchmarks/testbed_ablation.py within one 10-minute slot; results to $OUT.
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUTDIR=${OUT:-ablation_out}; mkdir -p $OUTDIR
timeout 540 python3 benchmarks/testbed_ablation.py --device cuda --out runs/ablation "$@" 2>&1 \
  | grep -v -E "it/s\]|s/it\]|ex/s\]|traj/s\]|Loading weights|Writing model" > $OUTDIR/ablation.log
cp runs/ablation/ablation.md runs/ablation/ablation.json $OUTDIR/ 2>/dev/null
tail -30 $OUTDIR/ablation.log
