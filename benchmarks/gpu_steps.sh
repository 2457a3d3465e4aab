# Sourced by the benchmarks/run_*_gpu.sh scripts (after they set OUT): the environment of a GPU run, its log
# ($OUT/run.log, appended to), `step <seconds> <command...>` (runs one command under a time limit so that a
# slow step cannot eat the device call, logging its exit status and time) and a banner of the device.
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python3}"; LOG="$OUT/run.log"; touch "$LOG"
step() { local limit=$1; shift; echo "=== $* (limit ${limit}s)" | tee -a "$LOG"; local t0=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" >> "$LOG" 2>&1; echo "=== exit $? after $((SECONDS - t0))s" | tee -a "$LOG"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
$PY -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' | tee -a "$LOG"
