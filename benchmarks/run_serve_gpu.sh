#!/usr/bin/env bash
# Issue-16 run on one GPU: the GPU tests, then `tad serve` under 1 / 4 / 16 / 64 concurrent clients against the
# same requests one at a time, at LLaDA-8B's shape (random weights, dual cache, eager forwards: graphs together with
# the cache keep buffers per batch shape and ran out of memory) and on the testbed teacher (PARTS="tests 8b testbed"). The web stack travels as wheels in .whl (README of the device tool); writes JSON + run.log to $OUT.
# Usage (repository root): OUT=folder bash benchmarks/run_serve_gpu.sh   (~8 min on an H200)
set -u
OUT="${OUT:-runs/serve}"; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
source benchmarks/gpu_steps.sh
PARTS="${PARTS:-tests 8b testbed}"
case " $PARTS " in *" tests "*) step 100 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py;; esac
case " $PARTS " in *" 8b "*) step 330 $PY benchmarks/bench_serve.py --out "$OUT" --clients 1 4 16 64 --requests 32 \
  --use-cache dual;; esac
case " $PARTS " in *" testbed "*) step 120 $PY benchmarks/bench_serve.py --out "$OUT" \
  --model src/tadllm/assets/testbed-teacher --device cuda --clients 1 4 16 64 --requests 128;; esac
grep -v "it/s\]" "$LOG" | grep -E "^(===|clients|---| +[0-9]|serve|[0-9]+ passed|FAILED|E  |Traceback|.*Error)" | tail -60
