"""`kill -9` in the middle of `tad trajectories`, `tad train` and `tad eval` (the real CLI, `python -m
tadllm.cli`, in a subprocess on a tiny CPU model), then the same command again: the final outputs must
equal those of an uninterrupted run (same records, none lost or duplicated; bitwise-equal trained weights).

The uninterrupted reference runs in this process through the same entry point (`tadllm.cli.main`), on one
thread like the subprocesses (`OMP_NUM_THREADS=1`; the `one_thread` fixture), so float results are identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tadllm.cli import main as _tad_main
from tadllm.trajectories import read_trajectories, storage

from .conftest import cli_env, tad_cmd

POLL_S = 0.005


def tad_main(args) -> int:
    """`tad ARGS` in this process (the uninterrupted reference)."""
    return _tad_main([str(a) for a in args])


def start(args, log: Path) -> subprocess.Popen:
    return subprocess.Popen(tad_cmd(*args), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=cli_env())


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 150.0) -> None:
    """SIGKILL `proc` as soon as `ready()` is true; fail if the command ended (or stalled) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            return
        if proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before it could be killed:\n"
                        f"{log.read_text()[-3000:]}")
        time.sleep(POLL_S)
    proc.kill()
    pytest.fail(f"the command made no visible progress in {timeout}s:\n{log.read_text()[-3000:]}")


def finish(args, log: Path, timeout: float = 150.0) -> None:
    proc = subprocess.run(tad_cmd(*args), stdout=log.open("wb"), stderr=subprocess.STDOUT, env=cli_env(),
                          timeout=timeout)
    assert proc.returncode == 0, log.read_text()[-3000:]


def no_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# ------------------------------------------------------------------------------------- trajectories


def traj_args(ckpt, data, out):
    return ["trajectories", "--model", ckpt, "--task", "arith", "--data", data, "--split", "test", "--out", out,
            "--gen-length", "32", "--block-length", "32", "--temperature", "0.7", "--keep", "all",
            "--chunk-size", "2", "--batch-size", "2", "--seed", "1", "--device", "cpu", "--dtype", "fp32",
            "--no-progress"]


def traj_rows(out: Path) -> list[tuple]:
    rows = read_trajectories(out, as_list=True)
    keys = [(r["problem_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)), "a trajectory is stored twice"
    return sorted(tuple((k, json.dumps(v, sort_keys=True)) for k, v in sorted(r.items())) for r in rows)


@pytest.fixture(scope="module")
def traj_reference(char_ckpt, arith_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("traj-ref") / "out"
    assert tad_main(traj_args(char_ckpt, arith_file, out)) == 0
    return out


def test_kill9_during_tad_trajectories_then_rerun(char_ckpt, arith_file, traj_reference, tmp_path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    args = traj_args(char_ckpt, arith_file, out)
    chunks = 12  # 24 problems, 2 per chunk
    proc = start(args, log)
    kill_when(proc, lambda: any(out.glob("shard-*.parquet")), log)
    logged = len(storage.read_done(out / "done-r0.jsonl"))
    assert logged < chunks and not (out / "summary.json").exists(), "the kill should land mid-run"
    finish(args, log)
    assert traj_rows(out) == traj_rows(traj_reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["problems_done"] == 24 and summary["samples"] == 24
    assert len(storage.read_done(out / "done-r0.jsonl")) == chunks
    assert no_temporaries(out) == []


# -------------------------------------------------------------------------------------------- train

RECIPE = """\
model_name_or_path: {ckpt}
train_data: {data}
use_peft: false
only_correct: false
delta: 4
steps_per_trajectory: 2
per_device_train_batch_size: 4
learning_rate: 1.0e-3
max_steps: 16
save_strategy: steps
save_steps: 1
logging_steps: 1
use_cpu: true
seed: 0
dataloader_num_workers: 0
report_to: none
disable_tqdm: true
resume_from_checkpoint: auto
"""


@pytest.fixture(scope="module")
def train_recipe(char_ckpt, traj_reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tad.yaml"
    path.write_text(RECIPE.format(ckpt=char_ckpt, data=traj_reference))
    return path


@pytest.fixture(scope="module")
def train_reference(train_recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-ref") / "out"
    assert tad_main(["train", "--config", train_recipe, f"output_dir={out}"]) == 0
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs from the uninterrupted run"


def test_kill9_during_tad_train_resumes_to_identical_weights(train_recipe, train_reference, tmp_path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    args = ["train", "--config", train_recipe, f"output_dir={out}"]
    proc = start(args, log)
    # kill as soon as the folder of checkpoint-4 appears: usually in the middle of its save, which leaves
    # it incomplete (the re-run must then resume from checkpoint-3, the last complete one)
    kill_when(proc, lambda: (out / "checkpoint-4").exists(), log)
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint-16").exists(), \
        "the kill should land mid-run"
    first = out / "checkpoint-1" / "trainer_state.json"
    stamp = first.stat().st_mtime_ns
    finish(args, log)
    assert first.stat().st_mtime_ns == stamp, "the re-run trained from scratch instead of resuming"
    state = json.loads((out / "checkpoint-16" / "trainer_state.json").read_text())
    assert state["global_step"] == 16
    assert_same_weights(out, train_reference)
    assert_same_weights(out / "checkpoint-16", train_reference / "checkpoint-16")


def test_resume_skips_a_checkpoint_cut_off_while_saving(train_recipe, train_reference, tmp_path):
    """A kill during a save leaves `checkpoint-N` without trainer_state.json (written last); `auto` must
    resume from the previous complete checkpoint, not from the half-written one (which the HF Trainer
    would load with step 0 and fresh optimizer state)."""
    import shutil

    from tadllm.distill.config import load_config
    from tadllm.distill.checkpoint import resolve_resume

    out = tmp_path / "out"
    out.mkdir()
    for n in (5, 6):
        shutil.copytree(train_reference / f"checkpoint-{n}", out / f"checkpoint-{n}")
    (out / "checkpoint-6" / "trainer_state.json").unlink()  # cut off before its last file
    shutil.copytree(out / "checkpoint-5", out / "checkpoint-7")
    (out / "checkpoint-7" / "trainer_state.json").write_text('{"global_step": 7, "log_hi')  # cut mid-write
    cfg = load_config(train_recipe, [f"output_dir={out}"])
    assert resolve_resume(cfg) == str(out / "checkpoint-5")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        resolve_resume(load_config(train_recipe, [f"output_dir={out}",
                                                  f"resume_from_checkpoint={out / 'checkpoint-6'}"]))
    assert tad_main(["train", "--config", train_recipe, f"output_dir={out}"]) == 0
    assert_same_weights(out, train_reference)


# --------------------------------------------------------------------------------------------- eval

THRESHOLDS = "threshold=3.0,2.0,1.0,0.5,0.25,0.1"


def eval_args(ckpt, data, out):
    return ["eval", "--model", ckpt, "--task", "arith", "--data", data, "--out", out, "--policy", "entropy",
            "--gen-length", "32", "--block-length", "32", "--sweep", THRESHOLDS, "--batch-size", "4",
            "--device", "cpu", "--dtype", "fp32", "--no-progress"]


TIMING = {"wall_time", "elapsed_s", "tokens_per_s"}


def comparable(results: dict) -> list:
    runs = []
    for run in results["runs"]:
        runs.append({"config": run["config"],
                     "aggregate": {k: v for k, v in run["aggregate"].items() if k not in TIMING},
                     "records": [{k: v for k, v in r.items() if k not in TIMING} for r in run["records"]]})
    return runs


def test_kill9_during_tad_eval_then_rerun(char_ckpt, arith_file, tmp_path):
    ref = tmp_path / "ref"
    assert tad_main(eval_args(char_ckpt, arith_file, ref)) == 0
    out, log = tmp_path / "out", tmp_path / "log.txt"
    args = eval_args(char_ckpt, arith_file, out)
    proc = start(args, log)
    kill_when(proc, lambda: (out / "results.json").exists(), log)
    partial = json.loads((out / "results.json").read_text())  # complete JSON, never a torn file
    assert 1 <= len(partial["runs"]) < 6, "the kill should land mid-sweep"
    stale = out / ".results.json.999999999.tmp"  # what a kill in the middle of a write leaves
    stale.write_text('{"runs": [')
    finish(args, log)
    assert no_temporaries(out) == []
    final = json.loads((out / "results.json").read_text())
    reference = json.loads((ref / "results.json").read_text())
    assert comparable(final) == comparable(reference)
    assert len(final["runs"]) == 6 and len({json.dumps(r["config"]) for r in final["runs"]}) == 6
    assert {k: final[k] for k in ("model", "method", "task", "data")} == \
        {k: reference[k] for k in ("model", "method", "task", "data")}
