#!/usr/bin/env bash
# The testbed experiment on the `commute` variant (several valid responses per problem; teacher from
# configs/testbed-pretrain-commute.yaml), then the τ = 2 ablation variants on the same teacher. One GPU,
# under 10 minutes. Usage (repository root, the teacher folder present):
#   TEACHER=runs/testbed-teacher-commute/final OUT=folder bash benchmarks/testbed_commute_experiment.sh
set -uo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
TEACHER=${TEACHER:-runs/testbed-teacher-commute/final}
OUTDIR=${OUT:-experiment_out}
mkdir -p "$OUTDIR"
start=$SECONDS
# 1. teacher, control, CE-only, TAD-Quality, TAD-Speed; 3 seeds; equal compute (as testbed_experiment.sh)
OUT="$OUTDIR/experiment" RUN_DIR=runs/testbed-commute-experiment EXPERIMENT_LIMIT=${EXPERIMENT_LIMIT:-320} \
  bash benchmarks/testbed_experiment.sh --teacher "$TEACHER" ${EXTRA_ARGS:-}
echo "=== experiment done after $((SECONDS - start)) s"
# 2. softer KL (τ = 2) at δ 16 and 4, with CE-only again as the within-table reference
left=$(( ${TOTAL_LIMIT:-560} - (SECONDS - start) ))
if [ "$left" -gt 60 ]; then
  timeout "$left" python3 benchmarks/testbed_ablation.py --device "${DEVICE:-cuda}" --teacher "$TEACHER" ${ABLATION_ARGS:-} \
    --out runs/testbed-commute-ablation --variants ce-only,tad-d16-tau2,tad-d4-tau2 2>&1 \
    | grep --line-buffered -v -E "it/s\]|s/it\]|ex/s\]|traj/s\]|Loading weights|Writing model" > "$OUTDIR/ablation.log"
  cp runs/testbed-commute-ablation/ablation.md runs/testbed-commute-ablation/ablation.json "$OUTDIR/" 2>/dev/null
  tail -15 "$OUTDIR/ablation.log"
else
  echo "no time left for the ablation ($left s)"
fi
echo "=== all done after $((SECONDS - start)) s"
# the device tool returns at most 8 files: one archive with everything, plus the two tables
cp "$OUTDIR/experiment/results.md" "$OUTDIR/experiment_results.md" 2>/dev/null
tar czf "$OUTDIR/commute_results.tgz" -C "$OUTDIR" experiment $(cd "$OUTDIR" && ls ablation.* 2>/dev/null)
rm -rf "$OUTDIR/experiment" "$OUTDIR/ablation.log" "$OUTDIR/ablation.json"
ls -la "$OUTDIR"
