#!/usr/bin/env bash
# Issue-16 latency follow-up on one GPU: the GPU tests, where a serving step's time goes (profile_serve_step.py at
# batch 1 and 16), and `tad serve` at LLaDA-8B's shape under 1 / 4 / 16 clients with the two admission rules side
# by side (--admit step: at the next step; --admit refresh: at the next step that refreshes some row).
# Usage (repository root): OUT=folder bash benchmarks/run_serve_latency_gpu.sh   (~9 min on an H200)
set -u
OUT="${OUT:-runs/serve-latency}"; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
source benchmarks/gpu_steps.sh
PARTS="${PARTS:-tests profile step refresh}"
case " $PARTS " in *" tests "*) step 110 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py;; esac
case " $PARTS " in *" profile "*) step 80 $PY benchmarks/profile_serve_step.py --out "$OUT";; esac
for admit in step refresh; do
  case " $PARTS " in *" $admit "*) step 170 $PY benchmarks/bench_serve.py --out "$OUT" --clients 1 4 16 --requests 32 \
    --use-cache dual --admit $admit;; esac
done
grep -v "it/s\]" "$LOG" | grep -E "^(===|clients|---| +[0-9]|batch|    |serve|[0-9]+ passed|FAILED|E  |Traceback|.*Error)" | tail -80
