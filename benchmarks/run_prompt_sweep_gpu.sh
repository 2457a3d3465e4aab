#!/usr/bin/env bash
# Issue-6 batch-1 run on one GPU: the KV cache's speedup against the prompt length (64 ... 1024 tokens) at the
# 1.65B shape and at LLaDA-8B's shape, eager forwards and CUDA graphs (part 3: graphs of torch.compile), next
# to the roofline estimate of what a cache can give there; plus the GPU tests.
# Writes JSON + run.log to $OUT.  Usage (repository root): OUT=folder PARTS="1 2" bash benchmarks/run_prompt_sweep_gpu.sh
#   part 1 (~9 min): 8B sweep;  part 2 (~7 min): GPU tests, 1.65B sweep (batch 1), batch 16 at prompt 64;
#   part 3 (~9 min): GPU tests, 1.65B with graphs of torch.compile(dynamic=True);  part 4 (~9 min): the same at 8B;
#   BASELINE=folder (a copy of an older checkout's src/ and benchmarks/): part 1 also runs its bench_decoding
#   on the 8B shape first, for a side-by-side of the decoding loop before and after a change.
set -u
OUT="${OUT:-runs/prompt-sweep}"; mkdir -p "$OUT"; PARTS="${PARTS:-1 2}"
PROMPTS="64 128 256 512 1024"
source benchmarks/gpu_steps.sh
for part in $PARTS; do
  if [ "$part" = 1 ]; then
    if [ -n "${BASELINE:-}" ]; then
      step 90 env PYTHONPATH="$BASELINE/src" $PY "$BASELINE/benchmarks/bench_decoding.py" --out "$OUT" --arch 8b \
        --batch-sizes 1 --modes none dual --variants graphs --name decoding_8b_baseline_p64.json
      step 90 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
        --variants graphs --name decoding_8b_after_p64.json
    fi
    step 220 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs --prompt-length $PROMPTS --name decoding_8b_prompt_sweep.json
    step 150 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants eager --prompt-length 256 1024 --name decoding_8b_prompt_sweep_eager.json
  elif [ "$part" = 2 ]; then
    step 80 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py -k "waits or cuda_graphs or bf16"
    step 200 $PY benchmarks/bench_decoding.py --out "$OUT" --batch-sizes 1 --modes none dual \
      --variants eager graphs --prompt-length $PROMPTS --name decoding_1.6b_prompt_sweep.json
    step 120 $PY benchmarks/bench_decoding.py --out "$OUT" --batch-sizes 16 --modes none prefix dual \
      --variants eager graphs --name decoding_1.6b_b16.json
  elif [ "$part" = 3 ]; then
    step 80 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py -k "waits or cuda_graphs or bf16"
    step 480 $PY benchmarks/bench_decoding.py --out "$OUT" --batch-sizes 1 --modes none dual \
      --variants graphs compile+graphs --prompt-length 64 256 512 1024 --name decoding_1.6b_compile_sweep.json
  elif [ "$part" = 4 ]; then
    step 560 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs compile+graphs --prompt-length 128 256 512 --name decoding_8b_compile_sweep.json
  elif [ "$part" = 5 ]; then  # the GPU tests again after a fix, and a repeat of part 4's 8B / 512 graphs rows
    step 80 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py -k "waits or cuda_graphs or bf16"
    step 120 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs --prompt-length 512 --repeat 3 --name decoding_8b_graphs_p512_repeat.json
  elif [ "$part" = 6 ]; then  # fused projections + keys written in place: BASELINE (before them), unfused, fused
    step 90 $PY -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py -k "waits or cuda_graphs or bf16 or fuse"
    step 100 env PYTHONPATH="$BASELINE/src" $PY "$BASELINE/benchmarks/bench_decoding.py" --out "$OUT" --arch 8b \
      --batch-sizes 1 --modes none dual --variants graphs --prompt-length 64 256 512 --name decoding_8b_before.json
    step 100 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs --prompt-length 64 256 512 --unfused --name decoding_8b_unfused.json
    step 100 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs --prompt-length 64 256 512 --name decoding_8b_fused.json
    step 120 $PY benchmarks/bench_decoding.py --out "$OUT" --batch-sizes 1 16 --modes none dual \
      --variants eager graphs --prompt-length 64 --name decoding_1.6b_fused.json
  elif [ "$part" = 7 ]; then
    step 540 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants compile+graphs --prompt-length 256 512 128 --name decoding_8b_fused_compile.json
  fi
done
grep -v "it/s\]" "$LOG" | grep -E "^(===|batch|---|  |decoding|[0-9]+ passed|FAILED|E  )" | tail -80
