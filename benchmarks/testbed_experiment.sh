#!/usr/bin/env bash
# The testbed experiment (issue: the main job) on one GPU, in one run of the quickstart recipe at full size:
# teacher, control, CE-only, TAD-Quality, TAD-Speed, equal student compute, several seeds.
#   bash benchmarks/testbed_experiment.sh [extra quickstart args]
# Writes the summary, report and a compressed copy of every results.json to $OUT (or ./experiment_out).
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUTDIR=${OUT:-experiment_out}
RUN=${RUN_DIR:-runs/testbed-experiment}
mkdir -p $OUTDIR
timeout ${EXPERIMENT_LIMIT:-530} python3 -m tadllm.cli quickstart --device cuda --out-dir $RUN --baselines --seeds 3 \
  --train-problems 4096 --train-steps 500 --train-batch-size 64 --test-problems 1000 --batch-size 1000 \
  --thresholds 0.999,0.99,0.95,0.9,0.7 --tpf1-point "$@" 2>&1 \
  | grep --line-buffered -v -E "it/s\]|s/it\]|ex/s\]|traj/s\]|Loading weights|Writing model" | tee $OUTDIR/experiment.log; grep -q . $RUN/results.md 2>/dev/null || exit 1
mkdir -p $OUTDIR; cp $RUN/results.md $OUTDIR/
cp $RUN/report/report.md $OUTDIR/report.md
cp $RUN/report/accuracy_vs_tpf.png $RUN/report/aup_bar.png $OUTDIR/
tar czf $OUTDIR/eval_results.tar.gz $RUN/eval $RUN/quickstart_config.json $RUN/trajectories/summary.json
ls -la $OUTDIR
