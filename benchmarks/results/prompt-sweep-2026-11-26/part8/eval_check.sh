# Final GPU check: the whole GPU test file, and `tad eval` (the user path, fused projections on a GPU) at batch 1
# with and without --use-cache dual --cuda-graphs, compared per problem with the third session's run.
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
python3 -m pytest -q -p no:hypothesispytest -m gpu tests/test_gpu.py 2>&1 | tail -4
for flags in "" "--cuda-graphs" "--use-cache dual" "--use-cache dual --cuda-graphs"; do
  name="eval-b1$(echo "$flags" | tr -d ' -')"
  python3 -m tadllm.cli eval --model src/tadllm/assets/testbed-teacher --task arith \
    --data "synthetic:n=200,seed=0,split=test,min_ops=2,max_ops=4" --policy confidence --threshold 0.9 \
    --gen-length 64 --block-length 32 --batch-size 1 --dtype fp32 --no-progress $flags --out "/tmp/ev/$name" 2>&1 | grep "accuracy"
done
python3 - <<'PY'
import json, os
old = json.load(open("benchmarks/results/perf-graphs-2026-11-26/eval_cuda_graphs_summary_capture_after2.json"))
summary = {}
for name in sorted(os.listdir("/tmp/ev")):
    run = json.load(open(f"/tmp/ev/{name}/results.json"))["runs"][0]
    correct = [r["correct"] for r in sorted(run["records"], key=lambda r: r["index"])]
    summary[name] = {**run["aggregate"], "elapsed_s": run["elapsed_s"], "correct": correct,
                     "same_per_problem_as_third_session": correct == old[name]["correct"],
                     "third_session_accuracy": old[name]["accuracy"], "third_session_tpf": old[name]["tpf"]}
    print(name, "acc", summary[name]["accuracy"], "tpf", round(summary[name]["tpf"], 3), "wall", round(run["aggregate"]["wall_time"], 2),
          "same as before:", summary[name]["same_per_problem_as_third_session"], "| before: acc", old[name]["accuracy"], "wall", round(old[name]["wall_time"], 2))
json.dump(summary, open(os.environ["OUT"] + "/eval_b1_summary.json", "w"), indent=1)
PY
