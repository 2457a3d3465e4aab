"""Trajectory generation, storage, resume and sharding on a tiny random LLaDA (CPU)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import trajhelpers as h
from tadllm.decoding import DecodeConfig
from tadllm.models import encode_prompt
from tadllm.trajectories import (check_compatible, default_trajectory_decode_config, generate_trajectories,
                                 read_trajectories, state_at, summarize)
from tadllm.trajectories import runner, storage

SMALL = DecodeConfig(gen_length=32, block_length=8, policy="low_confidence", steps=32, temperature=0.0)
RANDOM_ORDER = dataclasses.replace(SMALL, policy="random")  # seed-dependent without sampling noise


def run(traj_model, out, n=12, config=SMALL, **kw):
    model, tok, fam = traj_model
    kw = {"samples_per_problem": 2, "batch_size": 8, "keep": "all", "chunk_size": 5, "progress": False,
          "model_name": "tiny", **kw}
    return generate_trajectories(model, tok, fam, h.FakeTask(), h.make_examples(n), config, out, **kw)


def content(path):
    """The dataset as a sorted list of comparable rows; asserts no (problem, sample) is stored twice."""
    rows = read_trajectories(path, as_list=True)
    keys = [(r["problem_id"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate trajectories"
    return sorted((r["problem_id"], r["sample_idx"], tuple(r["tokens"]), tuple(r["reveal_step"]), r["correct"],
                   r["text"]) for r in rows)


# ---------------------------------------------------------------------------------------- basics


def test_default_decode_config():
    cfg = default_trajectory_decode_config()
    assert (cfg.policy, cfg.gen_length, cfg.steps, cfg.block_length, cfg.temperature) == (
        "low_confidence", 256, 256, 32, 0.7)
    assert not cfg.stop_at_eos
    assert default_trajectory_decode_config(temperature=0.0).temperature == 0.0


def test_state_at_lists_and_tensors():
    rec = {"tokens": [7, 8, 9, 10], "reveal_step": [2, 1, 4, 3]}
    M = 99
    assert state_at(rec, 0, M) == [M, M, M, M]
    assert state_at(rec, 1, M) == [M, 8, M, M]
    assert state_at(rec, 3, M) == [7, 8, M, 10]
    assert state_at(rec, 4, M) == state_at(rec, 100, M) == [7, 8, 9, 10]
    t = {"tokens": torch.tensor([[7, 8, 9, 10]]), "reveal_step": torch.tensor([[2, 1, 4, 3]])}
    assert state_at(t, 3, M).tolist() == [[7, 8, M, 10]]
    with pytest.raises(ValueError):
        state_at(rec, -1, M)


def test_tokenizer_none_is_a_clear_error(traj_model, tmp_path):
    model, _, fam = traj_model
    with pytest.raises(ValueError, match="tokenizer"):
        generate_trajectories(model, None, fam, h.FakeTask(), h.make_examples(2), SMALL, tmp_path)


# ------------------------------------------------------------------------------- round trip


def test_round_trip_every_step_matches_the_decoding_run(traj_model, tmp_path, monkeypatch):
    model, tok, fam = traj_model
    captured = {}  # (teacher prompt, decode seed) -> {step: state}
    real = runner.decode_generate

    def spy(model_, family, prompts, config, batch_size=None, progress=None, on_step=None):
        states = {i: {} for i in range(len(prompts))}

        def record(step, tokens, revealed, indices):  # indices: input positions of the batch's rows
            for row, i in enumerate(indices):
                states[i][step] = tokens[row].tolist()

        out = real(model_, family, prompts, config, batch_size=batch_size, progress=progress, on_step=record)
        for i, p in enumerate(prompts):
            captured[(tuple(p), config.seed)] = states[i]
        return out

    monkeypatch.setattr(runner, "decode_generate", spy)
    examples = h.make_examples(7)
    summary = run(traj_model, tmp_path, n=7, config=RANDOM_ORDER, samples_per_problem=2, chunk_size=4)
    assert summary["samples"] == 14 and summary["kept"] == 14 and summary["complete"]
    records = read_trajectories(tmp_path, as_list=True)
    assert len(records) == 14
    mask = fam.mask_token_id
    task = h.FakeTask()
    by_id = {ex.id: ex for ex in examples}
    for rec in records:
        meta = json.loads(rec["meta"])
        states = captured[(tuple(rec["teacher_prompt_ids"]), meta["decode_config"]["seed"])]
        last = max(states)
        assert rec["num_steps"] == max(rec["reveal_step"]) <= last
        assert state_at(rec, 0, mask) == [mask] * SMALL.gen_length
        for s in range(1, last + 1):
            assert state_at(rec, s, mask) == states[s], (rec["problem_id"], s)
        assert min(rec["reveal_step"]) == 1 and len(rec["tokens"]) == SMALL.gen_length
        ex = by_id[rec["problem_id"]]
        assert rec["prompt_ids"] == encode_prompt(tok, fam, task.user_prompt(ex))
        assert rec["teacher_prompt_ids"] == encode_prompt(tok, fam, task.privileged_prompt(ex))
        body = rec["tokens"][:rec["tokens"].index(fam.eos_token_id)] if fam.eos_token_id in rec["tokens"] \
            else rec["tokens"]
        assert rec["text"] == tok.decode(body, skip_special_tokens=True)
        assert rec["correct"] == (ex.answer in rec["text"])
        assert rec["answer"] == task.extract_answer(rec["text"])
        assert meta["mask_token_id"] == mask and meta["vocab_size"] == len(tok) and meta["task"] == "fake"
        assert meta["model"] == "tiny" and meta["tokenizer_hash"] == storage.tokenizer_fingerprint(tok)
    # the two samples of a problem are drawn with different seeds
    seeds = {}
    for rec in records:
        seeds.setdefault(rec["problem_id"], set()).add(json.loads(rec["meta"])["decode_config"]["seed"])
    assert all(len(s) == 2 for s in seeds.values())
    differ = [a["reveal_step"] != b["reveal_step"] for a, b in zip(records[::2], records[1::2])]
    assert all(differ)


def test_keep_correct_filters_and_keep_all_flags(traj_model, tmp_path):
    s_all = run(traj_model, tmp_path / "all", keep="all")
    s_ok = run(traj_model, tmp_path / "ok", keep="correct")
    every, kept = content(tmp_path / "all"), content(tmp_path / "ok")
    flags = [r[4] for r in every]
    assert any(flags) and not all(flags), "the fake task should accept some responses and reject others"
    assert kept == [r for r in every if r[4]]
    assert s_all["correct"] == s_ok["correct"] == sum(flags) == s_ok["kept"]
    assert s_all["kept"] == s_all["samples"] == 24
    assert s_ok["teacher_accuracy"] == pytest.approx(sum(flags) / 24)
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["kept"] == s_ok["kept"]


# ------------------------------------------------------------------------------------ resume


def test_resume_after_crash_between_shard_and_done_log(traj_model, tmp_path, monkeypatch):
    run(traj_model, tmp_path / "ref")
    reference = content(tmp_path / "ref")

    real_append = storage.append_done
    calls = {"n": 0}

    def crash_on_second(path, entry):
        calls["n"] += 1
        if calls["n"] == 2:  # chunk 1's shard is already in place, its done line is not
            raise KeyboardInterrupt("simulated kill")
        real_append(path, entry)

    monkeypatch.setattr(storage, "append_done", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(traj_model, tmp_path / "run")
    monkeypatch.setattr(storage, "append_done", real_append)
    out = tmp_path / "run"
    assert (out / "shard-r000-00001.parquet").exists()
    assert len(storage.read_done(out / "done-r0.jsonl")) == 1
    assert not (out / "summary.json").exists()

    decoded = []
    real_decode = runner.decode_generate
    monkeypatch.setattr(runner, "decode_generate",
                        lambda *a, **k: decoded.append(len(a[2])) or real_decode(*a, **k))
    summary = run(traj_model, out)
    assert sum(decoded) == (12 - 5) * 2  # chunk 0 (5 problems x 2 samples) was not decoded again
    assert content(out) == reference
    assert summary["complete"] and summary["problems_done"] == 12 and summary["samples"] == 24
    assert summary == {**json.loads((tmp_path / "ref" / "summary.json").read_text()),
                       "elapsed_s": summary["elapsed_s"]}
    decoded.clear()
    run(traj_model, out)  # everything done: nothing is decoded, nothing changes
    assert decoded == [] and content(out) == reference


def test_resume_ignores_a_partial_trailing_line(traj_model, tmp_path):
    run(traj_model, tmp_path / "ref")
    out = tmp_path / "run"
    run(traj_model, out)
    done = out / "done-r0.jsonl"
    lines = done.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    done.write_bytes(b"".join(lines[:2]) + lines[2][:17])  # the last append was cut off mid-line
    (out / ".shard-r000-00002.parquet.tmp-123").write_bytes(b"junk")  # stale temporary file
    summary = run(traj_model, out)
    assert summary["complete"] and content(out) == content(tmp_path / "ref")
    assert len(storage.read_done(done)) == 3 and done.read_bytes().endswith(b"\n")
    assert not list(out.glob(".shard-*.tmp-*"))


SCRIPT = """
import json, sys, time
import torch
sys.path.insert(0, {helpers!r})
torch.set_num_threads(1)
import trajhelpers as h
from tadllm.decoding import DecodeConfig
from tadllm.models import load_model
from tadllm.trajectories import generate_trajectories, runner

real = runner.decode_generate
def slow(*a, **k):
    time.sleep(0.1)
    return real(*a, **k)
runner.decode_generate = slow
model, tok, fam = load_model({ckpt!r}, dtype="float32", device="cpu")
generate_trajectories(model, tok, fam, h.FakeTask(), h.make_examples({n}), DecodeConfig(**json.loads({cfg!r})),
                      {out!r}, samples_per_problem=2, batch_size=8, keep="all", chunk_size=2, progress=False,
                      model_name="tiny")
"""


def _kill_when(proc, done, min_lines, delay, timeout=120.0):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it could be killed:\n{proc.stderr.read().decode()}")
        if done.exists() and done.read_bytes().count(b"\n") >= min_lines:
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    raise AssertionError("the run made no progress")


def test_resume_after_sigkill(traj_model, traj_checkpoint, tmp_path):
    n, chunks = 16, 8
    run(traj_model, tmp_path / "ref", n=n, chunk_size=2)
    out = tmp_path / "run"
    script = tmp_path / "gen.py"
    script.write_text(SCRIPT.format(helpers=str(Path(h.__file__).parent), ckpt=str(traj_checkpoint), n=n,
                                    cfg=json.dumps(dataclasses.asdict(SMALL)), out=str(out)))
    done = out / "done-r0.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(runner.__file__).parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}
    # first kill: right after a chunk was logged; second: at an arbitrary moment in a later chunk
    for min_lines, delay in ((1, 0.0), (3, 0.13)):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env)
        _kill_when(proc, done, min_lines, delay)
        logged = len(storage.read_done(done))
        assert min_lines <= logged < chunks, "the kill should land mid-run"
    summary = run(traj_model, out, n=n, chunk_size=2)
    assert summary["complete"] and summary["samples"] == 2 * n
    assert content(out) == content(tmp_path / "ref")
    assert len(storage.read_done(done)) == chunks


def test_resume_refuses_a_different_run(traj_model, tmp_path):
    run(traj_model, tmp_path, n=4)
    with pytest.raises(ValueError, match="keep"):
        run(traj_model, tmp_path, n=4, keep="correct")
    with pytest.raises(ValueError, match="problems_sha256|n_problems"):
        run(traj_model, tmp_path, n=5)
    run(traj_model, tmp_path, n=4, batch_size=3)  # batch size may change on resume


# ---------------------------------------------------------------------------------- sharding


def test_two_ranks_cover_every_problem_once(traj_model, tmp_path):
    run(traj_model, tmp_path / "ref", n=11, chunk_size=3)
    out = tmp_path / "run"
    s0 = run(traj_model, out, n=11, chunk_size=3, rank=0, world_size=2)
    assert s0["problems"] == 6 and s0["complete"]
    assert not json.loads((out / "summary.json").read_text())["complete"]  # rank 1 has not run yet
    s1 = run(traj_model, out, n=11, chunk_size=3, rank=1, world_size=2)
    assert s1["problems"] == 5
    rows = content(out)
    ids = [r[0] for r in rows if r[1] == 0]
    assert sorted(ids) == [f"p{i:03d}" for i in range(11)]
    files = sorted(p.name for p in out.glob("shard-*.parquet"))
    assert files == ["shard-r000-00000.parquet", "shard-r000-00001.parquet", "shard-r001-00000.parquet",
                     "shard-r001-00001.parquet"]
    rank_of = {}
    for f in files:
        for r in read_trajectories(out / f, as_list=True):
            rank_of[r["problem_id"]] = int(f[7:10])
    assert all(rank_of[f"p{i:03d}"] == i % 2 for i in range(11))
    merged = summarize(out)
    assert merged["complete"] and merged["problems"] == merged["problems_done"] == 11
    assert merged["samples"] == 22 and merged["kept"] == 22 and merged["ranks"] == [0, 1]
    assert merged["correct"] == s0["correct"] + s1["correct"]
    with pytest.raises(ValueError, match="world_size"):
        run(traj_model, out, n=11, chunk_size=3, rank=0, world_size=3)


# ------------------------------------------------------------------------------ storage format


def test_datasets_load_dataset_parquet(traj_model, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "run"
    run(traj_model, out)
    files = sorted(str(p) for p in out.glob("shard-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 24
    assert set(ds.column_names) == set(storage.FIELDS)
    table = read_trajectories(out, as_list=True)
    assert ds[0] == table[0]
    assert ds.features["tokens"].feature.dtype == "int32"


def test_check_compatible(traj_model, tmp_path):
    model, tok, fam = traj_model
    out = tmp_path / "run"
    run(traj_model, out, n=4)
    table = read_trajectories(out)
    for obj in (table, table.to_pylist(), table.to_pylist()[0], table.to_pylist()[0]["meta"], out):
        check_compatible(obj, tok, fam)
    with pytest.raises(ValueError, match="mask token id"):
        check_compatible(table, tok, dataclasses.replace(fam, mask_token_id=fam.mask_token_id + 1))
    other = h.char_tokenizer()
    other.add_tokens(["<|extra|>"])
    with pytest.raises(ValueError, match="vocabulary"):
        check_compatible(table, other, fam)
    with pytest.raises(ValueError, match="different tokenizer"):
        check_compatible({**json.loads(table.to_pylist()[0]["meta"]), "tokenizer_hash": "0" * 16}, tok, fam)
    with pytest.raises(ValueError, match="no trajectory metadata"):
        check_compatible([], tok, fam)


def test_compact_storage_is_tiny_next_to_step_snapshots(traj_model, tmp_path):
    """Stored bytes per trajectory (parquet file size / records, every column and the footer included)
    vs the release's format: S + 1 snapshots of L ids as JSON, for L = 256, steps = 256, blocks of 32."""
    model, tok, fam = traj_model
    cfg = default_trajectory_decode_config(temperature=0.0)
    out = tmp_path / "run"
    n = 12
    run(traj_model, out, n=n, config=cfg, samples_per_problem=1, batch_size=n, chunk_size=n)
    records = read_trajectories(out, as_list=True)
    assert len(records) == n and all(len(r["tokens"]) == 256 and r["num_steps"] == 256 for r in records)
    stored = sum(p.stat().st_size for p in out.glob("shard-*.parquet")) / n
    snapshots = sum(len(json.dumps([state_at(r, s, fam.mask_token_id) for s in range(r["num_steps"] + 1)]))
                    for r in records) / n
    print(f"\nstored {stored:.0f} B/trajectory vs {snapshots:.0f} B of JSON snapshots: 1/{snapshots / stored:.0f}")
    assert stored * 100 <= snapshots


# ------------------------------------------------------------------------------------------- CLI


def test_cli_end_to_end(traj_checkpoint, tmp_path, monkeypatch):
    fake_tasks = types.ModuleType("tadllm.tasks")
    fake_tasks.get_task = lambda name: h.FakeTask()
    monkeypatch.setitem(sys.modules, "tadllm.tasks", fake_tasks)
    from tadllm.trajectories import main_trajectories

    out = tmp_path / "cli"
    argv = ["--model", str(traj_checkpoint), "--task", "fake", "--limit", "6", "--out", str(out),
            "--gen-length", "32", "--block-length", "8", "--temperature", "0", "--samples-per-problem", "2",
            "--batch-size", "4", "--chunk-size", "4", "--keep", "all", "--device", "cpu", "--no-progress",
            "--template", "{question} hint {reference}"]
    assert main_trajectories(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["template"] == "{question} hint {reference}" and manifest["n_problems"] == 6
    assert manifest["decode_config"]["gen_length"] == 32 and manifest["world_size"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 12 and summary["complete"]
    assert len(read_trajectories(out)) == 12
    assert main_trajectories(argv) == 0  # resumes: nothing left to do
    assert len(read_trajectories(out)) == 12


def test_sampled_teacher_draws_are_not_degenerate(traj_model, tmp_path):
    cfg = dataclasses.replace(SMALL, temperature=0.7)
    run(traj_model, tmp_path, n=4, config=cfg, samples_per_problem=2)
    rows = read_trajectories(tmp_path, as_list=True)
    assert any(r["text"] for r in rows)
    assert any(a["tokens"] != b["tokens"] for a, b in zip(rows[::2], rows[1::2]))


def test_a_second_writer_of_the_same_rank_is_refused(traj_model, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with storage._locked(tmp_path / ".lock-r0", blocking=False):
        with pytest.raises(RuntimeError, match="same rank"):
            run(traj_model, tmp_path, n=2)
    run(traj_model, tmp_path, n=2)  # the lock is released with its holder
    assert not [p.name for p in tmp_path.iterdir() if "lock" in p.name]  # and its file removed


# ------------------------------------------------------------------- accelerate launch, 2 processes


@pytest.mark.skipif(not (Path(sys.executable).parent / "accelerate").exists(), reason="accelerate launcher missing")
def test_accelerate_launch_two_cpu_processes_matches_one(tmp_path):
    """`accelerate launch --num_processes 2 -m tadllm.cli trajectories` (gloo on the CPU) stores the same
    trajectories as one process at temperature 0: every problem once, on its rank (sampling seeds are per
    rank and chunk, so at temperature > 0 the samples depend on the number of processes)."""
    from tadllm.testbed.quickstart import BUNDLED_TEACHER
    from tadtest import free_port

    argv = ["--model", str(BUNDLED_TEACHER), "--task", "arith", "--data", "synthetic:n=6,seed=3,split=train",
            "--gen-length", "64", "--block-length", "32", "--steps", "64", "--temperature", "0", "--batch-size", "4",
            "--chunk-size", "2", "--keep", "all", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = str(Path(sys.executable).parent / "accelerate")
    two = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                          "-m", "tadllm.cli", "trajectories", *argv, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "tadllm.cli", "trajectories", *argv, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert {int(p.name[7:10]) for p in (tmp_path / "two").glob("shard-*.parquet")} == {0, 1}
    assert summarize(tmp_path / "two")["ranks"] == [0, 1]
    assert content(tmp_path / "two") == content(tmp_path / "one")
    assert len(content(tmp_path / "one")) == 6
