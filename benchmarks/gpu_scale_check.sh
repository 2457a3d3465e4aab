#!/usr/bin/env bash
# GPU checks behind docs/scaling.md (best on a machine with 2 GPUs; 1 GPU works, sequentially):
#   1. peak memory of full-size LoRA training steps (LLaDA-8B and Dream-7B, random weights, one GPU each,
#      gradient checkpointing on and off): benchmarks/memory_measure.py;
#   2. `tad train` under `accelerate launch` with each shipped config (ddp, zero2, fsdp) on NPROC GPUs
#      (default: all; a single GPU runs 1 process), on a tiny
#      random Dream with a few hand-made trajectories (3 optimizer steps, LoRA, bf16, teacher forward on).
#   3. `tad eval` under `accelerate launch` with 1 and NPROC processes on the bundled testbed teacher; the two
#      must agree (records merged over ranks).
# Usage (repository root): bash benchmarks/gpu_scale_check.sh OUT_DIR   (PARTS="2 3" runs only those parts)
# zero2 needs deepspeed importable (it is not a tadllm dependency); the run is skipped otherwise. On the
# device tool: `pip download deepspeed einops hjson ... -d .whl/ds`, carry it, `python3 -m pip install --no-deps .whl/ds/*.whl`.
set -uo pipefail
OUT=${1:-/tmp/scale_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}

NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
NPROC=${NPROC:-$NGPU}
PARTS=${PARTS:-1 2 3}
has_part() { [[ " $PARTS " == *" $1 "* ]]; }
if has_part 1; then
echo "== 1. memory of full-size steps ($NGPU GPUs)"
for ck in on off; do
  if [ "$NGPU" -ge 2 ]; then
    CUDA_VISIBLE_DEVICES=0 $PY benchmarks/memory_measure.py --arch llada-8b --checkpointing $ck >>"$OUT/memory.jsonl" 2>>"$OUT/memory.err" &
    CUDA_VISIBLE_DEVICES=1 $PY benchmarks/memory_measure.py --arch dream-7b --checkpointing $ck >>"$OUT/memory.jsonl" 2>>"$OUT/memory.err" &
    wait
  else
    for arch in llada-8b dream-7b; do
      $PY benchmarks/memory_measure.py --arch $arch --checkpointing $ck >>"$OUT/memory.jsonl" 2>>"$OUT/memory.err"
    done
  fi
done
cat "$OUT/memory.jsonl"; tail -5 "$OUT/memory.err"
fi

if has_part 2; then

echo "== 2. tad train under accelerate launch, $NPROC processes"
T="${TINY_DIR:-/tmp/tad_scale_tiny}"
$PY - "$T" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np, torch
from tadllm.models.dream import DreamConfig, DreamModel
t = Path(sys.argv[1]); t.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
DreamModel(DreamConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, mask_token_id=63, eos_token_id=1, pad_token_id=1,
                       max_position_embeddings=256)).save_pretrained(t / "model")
rng = np.random.default_rng(0)
with open(t / "traj.jsonl", "w") as f:
    for i in range(32):
        L = 24
        f.write(json.dumps(dict(problem_id=f"p{i}", sample_idx=0, prompt_ids=rng.integers(2, 60, 6).tolist(),
                                teacher_prompt_ids=rng.integers(2, 60, 10).tolist(), tokens=rng.integers(2, 60, L).tolist(),
                                reveal_step=(rng.permutation(L) + 1).tolist(), num_steps=L, correct=True, text="",
                                answer="", meta="{}")) + "\n")
(t / "recipe.yaml").write_text(f"""model_name_or_path: {t / 'model'}
train_data: {t / 'traj.jsonl'}
use_peft: true
lora_r: 8
lora_alpha: 8
delta: 4
model_dtype: bfloat16
bf16: true
learning_rate: 1.0e-3
max_steps: 3
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
gradient_checkpointing: true
gradient_checkpointing_kwargs: {{use_reentrant: false}}
ddp_find_unused_parameters: false
logging_steps: 1
save_strategy: "no"
disable_tqdm: true
dataloader_num_workers: 0
report_to: none
log_level: info
""")
EOF
for cfg in ddp zero2 fsdp; do
  extra=""
  [ "$cfg" = fsdp ] && extra="model_dtype=float32"
  if [ "$cfg" = zero2 ] && ! $PY -c "import deepspeed" 2>/dev/null; then echo "$cfg: SKIPPED (no deepspeed)"; continue; fi
  start=$(date +%s)
  timeout 300 $PY -m accelerate.commands.launch --config_file configs/accelerate/$cfg.yaml --num_processes "$NPROC" \
    -m tadllm.cli train --config "$T/recipe.yaml" output_dir="$T/out-$cfg" $extra >"$OUT/train-$cfg.log" 2>&1
  rc=$?
  echo "$cfg: rc=$rc in $(( $(date +%s) - start )) s"
  grep -E "Total train batch size|'loss'" "$OUT/train-$cfg.log" | head -5
  [ $rc -ne 0 ] && tail -25 "$OUT/train-$cfg.log"
  ls "$T/out-$cfg" 2>/dev/null | tr '\n' ' '; echo
done

fi

if has_part 3; then
echo "== 3. tad eval under accelerate launch, $NPROC processes (bundled testbed teacher, 1,000 arith problems)"
for n in 1 "$NPROC"; do
  start=$(date +%s)
  multi=""; [ "$n" -gt 1 ] && multi="--multi_gpu"
  timeout 300 $PY -m accelerate.commands.launch $multi --num_processes "$n" -m tadllm.cli eval \
    --model src/tadllm/assets/testbed-teacher --task arith --data "synthetic:n=1000,seed=0,split=test,min_ops=2,max_ops=4" \
    --policy confidence --threshold 0.9 --gen-length 64 --block-length 32 --batch-size 250 --dtype "${EVAL_DTYPE:-bf16}" --no-progress \
    --out "$OUT/eval-np$n" >"$OUT/eval-np$n.log" 2>&1
  echo "eval with $n processes: rc=$? in $(( $(date +%s) - start )) s"; tail -4 "$OUT/eval-np$n.log"
done
# the two runs must agree on accuracy and forward counts (records are merged over ranks); in bf16 the
# batches differ in composition and left padding between the two runs, which can move a confidence across
# the threshold, so use EVAL_DTYPE=fp32 for an exact comparison
$PY - "$OUT/eval-np1" "$OUT/eval-np$NPROC" <<'EOF2'
import json, sys
runs = [json.load(open(f"{d}/results.json"))["runs"][0]["aggregate"] for d in sys.argv[1:]]
for r in runs:
    print({k: r.get(k) for k in ("n", "accuracy", "tpf", "tokens_per_s")})
print("same accuracy and TPF:", runs[0]["accuracy"] == runs[-1]["accuracy"] and runs[0]["tpf"] == runs[-1]["tpf"])
EOF2
fi
