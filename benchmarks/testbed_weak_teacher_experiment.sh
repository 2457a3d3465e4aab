#!/usr/bin/env bash
# Diagnostic for the testbed investigation: does TAD beat CE-only when the teacher is far from converged (as
# in the prototype of docs/testbed-task.md, "The prototype that sized the testbed", whose teacher scored 23 %)? Trains a short
# teacher with the bundled recipe (configs/testbed-pretrain.yaml, STEPS steps with a complete cosine schedule,
# fewer training problems), then runs the same experiment as benchmarks/testbed_experiment.sh on it.
# One GPU, one call of under 10 minutes:  OUT=folder [STEPS=3000] bash benchmarks/testbed_weak_teacher_experiment.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
DEST=${OUT:-weak_teacher_out}; mkdir -p "$DEST"
STEPS=${STEPS:-3000}
start=$SECONDS
OUT="$DEST" CONFIG=configs/testbed-pretrain.yaml OUTDIR=runs/testbed-teacher-weak HARD_LIMIT=240 \
  bash scripts/gpu_pretrain_teacher.sh 180 max_steps="$STEPS" n_train=200000 warmup_steps=300 \
  save_steps="$STEPS" accuracy_every=500 > /dev/null 2>&1
rm -f "$DEST"/ckpt.tar.part* "$DEST"/final.tar  # only the log and the accuracy curve come back
echo "=== teacher done after $((SECONDS - start)) s"; tail -3 "$DEST/accuracy_curve.jsonl"
OUT="$DEST/experiment" RUN_DIR=runs/testbed-weak-experiment EXPERIMENT_LIMIT=${EXPERIMENT_LIMIT:-380} \
  bash benchmarks/testbed_experiment.sh --teacher runs/testbed-teacher-weak/final | tail -25
rm -f "$DEST/experiment/aup_bar.png"  # the device tool returns at most 8 files
echo "=== all done after $((SECONDS - start)) s"
