#!/usr/bin/env bash
# Issue-16 latency follow-up on one GPU: the GPU tests, where a serving step's time goes (profile_serve_step.py at
# batch 1 and 16), and `tad serve` at LLaDA-8B's shape under 1 / 4 / 16 clients with the two admission rules side
# by side (--admit step: at the next step; --admit refresh: at the next step that refreshes some row); `decoding`: the
# decoding loop's multi-block 8B benchmark of the fidelity run (benchmarks/run_fidelity_gpu.sh), to compare after the
# refactor. Usage (repository root): OUT=folder PARTS="tests step refresh decoding profile" bash
# benchmarks/run_serve_latency_gpu.sh   (~10 min on an H200)
set -u
OUT="${OUT:-runs/serve-latency}"; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
source benchmarks/gpu_steps.sh
PARTS="${PARTS:-tests step refresh decoding profile}"
case " $PARTS " in *" tests "*) step 110 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py;; esac
for admit in refresh step; do
  case " $PARTS " in *" $admit "*) step 270 $PY benchmarks/bench_serve.py --out "$OUT" --clients 1 4 16 --requests 32 \
    --use-cache dual --admit $admit;; esac
done
case " $PARTS " in *" decoding "*) step 100 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 \
  --prompt-length 256 --modes none dual --variants graphs --schedule multi_block --reveal opened \
  --name decoding_8b_mb_opened.json;; esac
case " $PARTS " in *" profile "*) step 200 $PY benchmarks/profile_serve_step.py --out "$OUT" --batch-sizes 1 16 --variants packed split --rounds 2;; esac
grep -v "it/s\]" "$LOG" | grep -E "^(===|clients|---| +[0-9]|batch|    |serve|[0-9]+ passed|FAILED|E  |Traceback|.*Error)" | tail -80
