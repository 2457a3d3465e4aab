#!/usr/bin/env bash
# Issue-16 run on one GPU: the GPU tests, then `tad serve` under 1 / 4 / 16 / 64 concurrent clients against the
# same requests one at a time, at LLaDA-8B's shape (random weights, dual cache, CUDA graphs) and on the testbed
# teacher. The web stack travels as wheels in .whl (README of the device tool); writes JSON + run.log to $OUT.
# Usage (repository root): OUT=folder bash benchmarks/run_serve_gpu.sh   (~8 min on an H200)
set -u
OUT="${OUT:-runs/serve}"; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
source benchmarks/gpu_steps.sh
step 100 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py
step 300 $PY benchmarks/bench_serve.py --out "$OUT" --clients 1 4 16 64 --requests 64 --use-cache dual --cuda-graphs
step 120 $PY benchmarks/bench_serve.py --out "$OUT" --model src/tadllm/assets/testbed-teacher --device cuda \
  --clients 1 4 16 64 --requests 128
grep -v "it/s\]" "$LOG" | grep -E "^(===|clients|---| +[0-9]|serve|[0-9]+ passed|FAILED|E  |Traceback|.*Error)" | tail -60
