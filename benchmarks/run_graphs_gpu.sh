#!/usr/bin/env bash
# Issue-6 batch-1 run on one GPU: CUDA graphs (tadllm.decoding.graphs) vs eager forwards, without and with the
# KV cache, at the 1.65B shape (batch 1 and 16) and at LLaDA-8B's shape (batch 1, prompts of 64 and 512
# tokens); the GPU tests; and the training step at the 8B shape with the two teachers measured in both orders.
# Writes JSON + run.log to $OUT.  Usage (repository root): OUT=folder PARTS="1 2 3" bash benchmarks/run_graphs_gpu.sh
#   part 1 (~3 min): GPU tests, 1.65B decoding;  part 2 (~2.5 min): 8B decoding;  part 3 (~1 min): 8B training step;
#   parts 4 and 5 (~5-8 min each): the same decoding with graphs of torch.compile(dynamic=True) beside them;
#   part 6 (~2 min): `tad eval` of the bundled teacher with and without --cuda-graphs (and the dual cache);
#   part 7 (~6 min): 1.65B batch 16 with compiled graphs (compiles again for batch > 1).
set -u
OUT="${OUT:-runs/perf-graphs}"; mkdir -p "$OUT"; PARTS="${PARTS:-1 2 3}"
source benchmarks/gpu_steps.sh
for part in $PARTS; do
  if [ "$part" = 1 ]; then
    step 90 $PY -m pytest -q -m gpu tests/test_gpu.py
    step 200 $PY benchmarks/bench_decoding.py --out "$OUT" --variants eager graphs --name decoding_1.6b_graphs.json
  elif [ "$part" = 3 ]; then
    step 150 $PY benchmarks/bench_training.py --out "$OUT" --arch 8b --gradient-checkpointing \
      --modes frozen_copy disable_adapter disable_adapter frozen_copy --name training_8b_gc_abba.json
  elif [ "$part" = 2 ]; then
    step 130 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants eager graphs --name decoding_8b_graphs_p64.json
    step 150 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants eager graphs --prompt-length 512 --name decoding_8b_graphs_p512.json
  elif [ "$part" = 4 ]; then
    step 60 $PY -m pytest -q -m gpu tests/test_gpu.py
    step 280 $PY benchmarks/bench_decoding.py --out "$OUT" --modes none dual --variants eager graphs compile+graphs \
      --name decoding_1.6b_compile_graphs.json
  elif [ "$part" = 5 ]; then
    step 290 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs compile+graphs --name decoding_8b_compile_graphs_p64.json
    step 200 $PY benchmarks/bench_decoding.py --out "$OUT" --arch 8b --batch-sizes 1 --modes none dual \
      --variants graphs compile+graphs --prompt-length 512 --name decoding_8b_compile_graphs_p512.json
  elif [ "$part" = 6 ]; then  # the user path: tad eval with and without --cuda-graphs, same accuracy?
    for bs in 1 250; do
      n=$([ "$bs" = 1 ] && echo 200 || echo 1000)
      for flags in "" "--cuda-graphs" "--use-cache dual" "--use-cache dual --cuda-graphs"; do
        name="eval-b$bs$(echo "$flags" | tr -d ' -')"
        step 150 $PY -m tadllm.cli eval --model src/tadllm/assets/testbed-teacher --task arith \
          --data "synthetic:n=$n,seed=0,split=test,min_ops=2,max_ops=4" --policy confidence --threshold 0.9 \
          --gen-length 64 --block-length 32 --batch-size "$bs" --dtype fp32 --no-progress $flags --out "$OUT/$name"
        tail -3 "$LOG"
      done
    done
  elif [ "$part" = 7 ]; then
    step 420 $PY benchmarks/bench_decoding.py --out "$OUT" --batch-sizes 16 --modes none dual \
      --variants graphs compile+graphs --name decoding_1.6b_compile_graphs_b16.json
  fi
done
grep -v "it/s\]" "$LOG" | grep -E "^(===|batch|disable|frozen|teacher_mode|---|  |decoding|training|[0-9]+ passed|FAILED)" | tail -90
