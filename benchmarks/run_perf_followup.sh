#!/usr/bin/env bash
# Issue-6 follow-up on one GPU (~8 min): the decoding benchmark at the 1.65B shape (eager, compiled) and at
# LLaDA-8B's shape (eager, compiled), the training step at the 8B shape with gradient checkpointing (the
# recipes' setting) and at 1.65B with and without it, and storage. Writes JSON + run.log to $OUT.
# Usage (repository root): OUT=folder bash benchmarks/run_perf_followup.sh
set -u
OUT="${OUT:-runs/perf}"; mkdir -p "$OUT"
: > "$OUT/run.log"; source benchmarks/gpu_steps.sh
step 100 $PY benchmarks/bench_decoding.py --out "$OUT" --name decoding_1.6b.json
step 100 $PY benchmarks/bench_decoding.py --out "$OUT" --compile --modes none dual --repeat 2 --name decoding_1.6b_compile.json
step 80 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --modes none dual --repeat 2 --name decoding_8b.json
step 120 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --compile --modes none dual --repeat 2 --name decoding_8b_compile.json
step 90 $PY benchmarks/bench_training.py --out "$OUT" --arch 8b --gradient-checkpointing --name training_8b_gc.json
step 50 $PY benchmarks/bench_training.py --out "$OUT" --gradient-checkpointing --name training_1.6b_gc.json
step 30 $PY benchmarks/bench_storage.py --out "$OUT"
grep -v "it/s\]" "$LOG" | grep -E "^(===|batch|disable|frozen|teacher_mode|---|  |set|decoding|training|storage)" | tail -80
