#!/usr/bin/env bash
# Issue-14 run on one GPU: the GPU tests (multi-block with the cache and CUDA graphs included) and the decoding
# loop's step cost with multi-block entropy decoding, before and after the reference rule, side by side:
# BASELINE's loop (an older checkout's src/, the `activated` rule), this checkout with `--reveal activated` (the
# same rule: same tokens, same cost expected) and with `--reveal opened` (the reference's rule).
# Usage (repository root): OUT=folder BASELINE=folder bash benchmarks/run_fidelity_gpu.sh   (~8 min on an H200)
set -u
OUT="${OUT:-runs/fidelity}"; mkdir -p "$OUT"
source benchmarks/gpu_steps.sh
step 150 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py
MB8="--arch 8b --batch-sizes 1 --prompt-length 256 --modes none dual --variants graphs --schedule multi_block"
MB16="--batch-sizes 16 --prompt-length 64 --modes none dual --variants eager --schedule multi_block"
if [ -n "${BASELINE:-}" ]; then
  step 100 env PYTHONPATH="$BASELINE/src" $PY benchmarks/bench_decoding.py --out "$OUT" $MB8 --reveal activated \
    --name decoding_8b_mb_before.json
fi
step 100 $PY benchmarks/bench_decoding.py --out "$OUT" $MB8 --reveal activated --name decoding_8b_mb_activated.json
step 100 $PY benchmarks/bench_decoding.py --out "$OUT" $MB8 --reveal opened --name decoding_8b_mb_opened.json
if [ -n "${BASELINE:-}" ]; then
  step 90 env PYTHONPATH="$BASELINE/src" $PY benchmarks/bench_decoding.py --out "$OUT" $MB16 --reveal activated \
    --name decoding_1.6b_b16_mb_before.json
fi
step 90 $PY benchmarks/bench_decoding.py --out "$OUT" $MB16 --reveal activated --name decoding_1.6b_b16_mb_activated.json
step 90 $PY benchmarks/bench_decoding.py --out "$OUT" $MB16 --reveal opened --name decoding_1.6b_b16_mb_opened.json
grep -v "it/s\]" "$LOG" | grep -E "^(===|batch|---|  |decoding|[0-9]+ passed|FAILED|E  )" | tail -80
