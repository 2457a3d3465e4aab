#!/usr/bin/env bash
# All benchmarks on one GPU in about 5-8 minutes. Writes 6 files to $OUT (default runs/bench):
#   decoding.json  decoding_compile.json  trajectories.json  training.json  storage.json  run_all.log
# Usage (from the repository root):  OUT=/some/folder bash benchmarks/run_all_gpu.sh
# Each benchmark has its own time limit, so one that fails or hangs does not stop the others.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
LOG="$OUT/run_all.log"
: > "$LOG"

step() {  # step <seconds> <title> <command...>
    local limit=$1 title=$2
    shift 2
    echo "=== $title (limit ${limit}s) ===" | tee -a "$LOG"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "=== $title: exit $rc after $((SECONDS - t0))s ===" | tee -a "$LOG"
}

# SMALL=1: the CPU smoke versions (to check this script without a GPU)
EXTRA=()
if [ "${SMALL:-0}" = 1 ]; then EXTRA=(--small); fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PY" -c 'import torch, transformers, peft, pyarrow; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__, "| peft", peft.__version__, "| pyarrow", pyarrow.__version__)'
} 2>&1 | tee -a "$LOG"

step 140 "decoding (eager; batch 1 and 16; none / prefix / dual)" \
    "$PY" benchmarks/bench_decoding.py --out "$OUT" "${EXTRA[@]}"
step 100 "training step (disable_adapter vs frozen_copy) + loss memory" \
    "$PY" benchmarks/bench_training.py --out "$OUT" "${EXTRA[@]}"
step 80 "trajectories (batched vs one at a time)" \
    "$PY" benchmarks/bench_trajectories.py --out "$OUT" "${EXTRA[@]}"
step 60 "storage (parquet vs snapshot JSON)" \
    "$PY" benchmarks/bench_storage.py --out "$OUT" "${EXTRA[@]}"
if [ "${SMALL:-0}" != 1 ]; then
    step 150 "decoding with torch.compile (none / dual)" \
        "$PY" benchmarks/bench_decoding.py --out "$OUT" --compile --modes none dual --repeat 2
fi

echo "=== summary (the table each benchmark printed last; full output in $LOG) ==="
awk '/^=== .*exit/ {show=0; print; next}
     /^=== / {next}
     /^(decoding|training step|TAD loss|trajectories|storage):/ {show=1}
     show {print}' "$LOG"
ls -l "$OUT"
