#!/usr/bin/env bash
# Train (or resume) the bundled testbed teacher on a GPU within one time slot; used through the device tool:
#   [CONFIG=configs/testbed-pretrain.yaml] [OUTDIR=runs/testbed-teacher] bash scripts/gpu_pretrain_teacher.sh [TIME_LIMIT_S] [key=value ...]
# A checkpoint carried in `carry_ckpt/` (split tar parts) is restored first; the new checkpoint, the final
# bf16 model and the accuracy curve are written to $OUT (files <= 15 MB).
set -euo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
LIMIT=${1:-420}; shift || true
OUTDIR=${OUTDIR:-runs/testbed-teacher}
CONFIG=${CONFIG:-configs/testbed-pretrain.yaml}
if compgen -G "carry_ckpt/ckpt.tar.part*" > /dev/null; then cat carry_ckpt/ckpt.tar.part* | tar xf -; fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# time_limit_s bounds the training loop only (data generation and tokenisation come first: ~1-2 min for
# 1M problems); HARD_LIMIT kills the whole run so that what was saved still comes back within a 10-min call.
timeout --signal=INT --kill-after=15 "${HARD_LIMIT:-$((LIMIT + 150))}" \
  python3 -m tadllm.cli pretrain --config "$CONFIG" output_dir=$OUTDIR time_limit_s=$LIMIT "$@" \
  2>&1 | grep --line-buffered -v -E "it/s\]|s/it\]" | tee "${OUT:-/tmp}/pretrain.log" || true
cp $OUTDIR/accuracy_curve.jsonl "${OUT:-/tmp}/" || true
tar cf - $OUTDIR/checkpoint-* $OUTDIR/accuracy_curve.jsonl | split -b 15M - "${OUT:-/tmp}/ckpt.tar.part"
[ -d $OUTDIR/final ] && tar cf "${OUT:-/tmp}/final.tar" -C $OUTDIR final
ls -la "${OUT:-/tmp}"
