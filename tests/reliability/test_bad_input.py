"""Bad input gives a clear error (the message is asserted) and leaves nothing half-written.

Cases already covered elsewhere are listed in docs/reliability.md with their tests; this file adds the
missing ones: corrupt / malformed files for task loading and trajectory reading, incompatible
trajectories at training time, over-long prompts and empty datasets at the command lines, unknown or
malformed recipe keys, invalid decoding options, damaged checkpoints, and failures in the middle of a
write.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tadllm.cli import main as _tad_main
from tadllm.decoding import DecodeConfig
from tadllm.errors import UserError
from tadllm.tasks import get_task
from tadllm.tasks.arith import generate_problems, write_jsonl
from tadllm.trajectories import generate_trajectories, read_trajectories, storage

GSM8K_ROW = {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"}
SMALL = DecodeConfig(gen_length=16, block_length=16, policy="low_confidence", temperature=0.0)
LONG_QUESTION = "start 5" + " add 1" * 40  # 247 characters: with 32 generated tokens > 256 positions


def tad(*args) -> int:
    return _tad_main(["--debug"] + [str(a) for a in args])  # errors raise (tests/test_first_run.py: one line)


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------ task loading


def test_task_corrupt_parquet_names_the_file(tmp_path):
    path = tmp_path / "test.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(ValueError, match=rf"{path}: cannot read parquet file"):
        get_task("gsm8k").load(path)


def test_task_parquet_row_missing_a_field_names_file_and_row(tmp_path):
    path = write_parquet(tmp_path / "test.parquet", [GSM8K_ROW, {"question": "q", "answer": None}])
    with pytest.raises(ValueError, match=rf"{path}, row 2: "):
        get_task("gsm8k").load(path)
    path = write_parquet(tmp_path / "other.parquet", [{"question": "q"}])
    with pytest.raises(ValueError, match=rf"{path}, row 1: missing field 'answer' for task 'gsm8k'"):
        get_task("gsm8k").load(path)


def test_arith_row_of_the_wrong_type_names_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "start 1 add 2"}) + "\n" + json.dumps({"question": 12}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}, line 2: field 'question' must be a string"):
        get_task("arith").load(path)


# ------------------------------------------------------------------------------ trajectory reading


def record(pid="p0", **change):
    rec = dict(problem_id=pid, sample_idx=0, prompt_ids=[5, 6], teacher_prompt_ids=[7, 8, 9], tokens=[11, 12, 13],
               reveal_step=[2, 1, 3], num_steps=3, correct=True, text="", answer="", meta="{}")
    rec.update(change)
    return rec


@pytest.mark.parametrize("lines, message", [
    ([json.dumps(record()), '{"problem_id": "p1", "tokens": [1, '], r"line 2: invalid JSON"),
    ([json.dumps(record()), "", json.dumps([1, 2])],
     r"line 3: expected a trajectory record \(a JSON object\), got list"),
    ([json.dumps({k: v for k, v in record().items() if k != "reveal_step"})],
     r"line 1: trajectory record lacks field\(s\) \['reveal_step'\]"),
])
def test_trajectory_jsonl_errors_name_file_and_line(tmp_path, lines, message):
    from tadllm.distill.data import TrajectoryDataset

    path = tmp_path / "traj.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path}, {message}"):
        TrajectoryDataset(path, mask_token_id=39)


def test_trajectory_parquet_errors_name_the_file(tmp_path):
    from tadllm.distill.data import TrajectoryDataset

    folder = tmp_path / "traj"
    folder.mkdir()
    write_parquet(folder / "shard-r000-00000.parquet", [record()])
    broken = folder / "shard-r000-00001.parquet"
    broken.write_bytes((folder / "shard-r000-00000.parquet").read_bytes()[:40])  # truncated copy
    with pytest.raises(ValueError, match=rf"{broken}: cannot read trajectory parquet file"):
        TrajectoryDataset(folder, mask_token_id=39)
    with pytest.raises(Exception, match=str(broken)):  # the trajectory package's reader (pyarrow's message)
        read_trajectories(folder)
    broken.unlink()
    write_parquet(folder / "shard-r000-00002.parquet", [{k: v for k, v in record().items() if k != "tokens"}])
    with pytest.raises(ValueError, match=r"shard-r000-00002.parquet: trajectory file lacks column\(s\) \['tokens'\]"):
        TrajectoryDataset(folder, mask_token_id=39)


# ------------------------------------------------------------------- trajectories vs the model


@pytest.fixture(scope="module")
def trajectories(char_model, tmp_path_factory):
    """A small real trajectory set (with its metadata) of the tiny char model, every record kept."""
    model, tok, family = char_model
    out = tmp_path_factory.mktemp("traj") / "run"
    generate_trajectories(model, tok, family, get_task("arith"), generate_problems(4, seed=3), SMALL, out,
                          keep="all", chunk_size=4, progress=False, model_name="tiny")
    return out


def train_config(model_dir, data, out, *overrides):
    from tadllm.distill.config import load_config

    return load_config(None, [f"model_name_or_path={model_dir}", f"train_data={data}", f"output_dir={out}",
                              "use_cpu=true", "use_peft=false", "only_correct=false", "report_to=none",
                              "disable_tqdm=true", "max_steps=1", "save_strategy=no", *overrides])


def test_trajectories_of_another_tokenizer_are_refused_by_the_trainer(char_ckpt, trajectories, tmp_path):
    """Same vocabulary size and mask id, two characters swapped: every id is valid, so only the tokenizer
    fingerprint in the records' metadata can tell (before, training went ahead on scrambled data)."""
    from tadllm.distill.trainer import build_trainer

    other = tmp_path / "other-tokenizer"
    shutil.copytree(char_ckpt, other)
    spec = json.loads((other / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    (other / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"incompatible with this model:(.|\n)*different tokenizer"):
        build_trainer(train_config(other, trajectories, tmp_path / "o"))
    assert build_trainer(train_config(char_ckpt, trajectories, tmp_path / "ok")) is not None  # the right model


def test_trajectories_with_another_mask_id_are_refused_by_the_trainer(char_ckpt, trajectories, tmp_path):
    from tadllm.distill.trainer import build_trainer

    with pytest.raises(ValueError, match=r"mask token id 3, the model uses 2"):
        build_trainer(train_config(char_ckpt, trajectories, tmp_path / "o", "mask_token_id=2"))


# ----------------------------------------------------------------------------- over-long prompts


def data_with_a_too_long_problem(tmp_path):
    """Three ordinary arith problems and one whose prompt does not fit the model with 32 generated tokens."""
    data = tmp_path / "test.jsonl"
    write_jsonl(generate_problems(3, seed=1), data)
    with data.open("a") as f:
        f.write(json.dumps({"id": "too-long", "question": LONG_QUESTION}) + "\n")
    return data


def test_tad_eval_with_a_too_long_prompt_fails_before_decoding_and_writes_nothing(char_ckpt, tmp_path):
    data = data_with_a_too_long_problem(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"example 'too-long' has 247 prompt tokens \+ gen_length 32 > the "
                                         r"model's maximum sequence length 256"):
        tad("eval", "--model", char_ckpt, "--task", "arith", "--data", data, "--out", out, "--gen-length", "32",
            "--block-length", "32", "--device", "cpu", "--no-progress")
    assert listing(out) == []


def test_tad_trajectories_with_a_too_long_prompt_fails_before_writing(char_ckpt, tmp_path):
    data = data_with_a_too_long_problem(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"problem 'too-long': its teacher prompt has \d+ tokens \+ gen_length "
                                         r"32 > the model's maximum sequence length 256"):
        tad("trajectories", "--model", char_ckpt, "--task", "arith", "--data", data, "--split", "test",
            "--out", out, "--gen-length", "32", "--block-length", "32", "--device", "cpu", "--no-progress")
    assert listing(out) == []


# ------------------------------------------------------------------------------- empty datasets


def test_empty_task_dataset_is_an_error_for_eval_and_trajectories(char_ckpt, char_model, tmp_path):
    empty = tmp_path / "test.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match=r"no examples in .*test.jsonl \(split 'test'\)"):
        tad("eval", "--model", char_ckpt, "--task", "arith", "--data", empty, "--out", tmp_path / "e",
            "--device", "cpu")
    with pytest.raises(UserError, match=r"no examples in .*test.jsonl \(split 'test'\)"):
        tad("trajectories", "--model", char_ckpt, "--task", "arith", "--data", empty, "--split", "test",
            "--out", tmp_path / "t", "--device", "cpu")
    model, tok, family = char_model
    with pytest.raises(ValueError, match="no problems to decode"):
        generate_trajectories(model, tok, family, get_task("arith"), [], SMALL, tmp_path / "py")
    assert listing(tmp_path / "e") == listing(tmp_path / "t") == listing(tmp_path / "py") == []


def test_tad_train_on_trajectories_that_are_all_incorrect(char_ckpt, trajectories, tmp_path):
    from tadllm.distill.trainer import build_trainer

    n = len(read_trajectories(trajectories))
    with pytest.raises(ValueError, match=rf"all {n} records have correct=False and only_correct is on"):
        build_trainer(train_config(char_ckpt, trajectories, tmp_path / "o", "only_correct=true"))


# ------------------------------------------------------------------------------- recipes (YAML)


def test_tad_train_unknown_yaml_key_fails_before_anything_is_written(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\nlearning_rate: 1.0e-4\nper_device_batch_size: 4\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) in .*r.yaml: 'per_device_batch_size' "
                                         r"\(did you mean .*per_device_train_batch_size"):
        tad("train", "--config", recipe)
    recipe.write_text("- model_name_or_path\n- train_data\n")
    with pytest.raises(ValueError, match="must hold a mapping of field: value, got list"):
        tad("train", "--config", recipe)
    assert not (tmp_path / "out").exists()


def test_tad_pretrain_unknown_or_malformed_yaml_recipe(tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\nd_modle: 64\n")
    with pytest.raises(ValueError, match=r"unknown PretrainConfig key\(s\): d_modle \(did you mean d_model\?\)"):
        tad("pretrain", "--config", recipe)
    recipe.write_text("- d_model\n")  # a list, not a mapping (was an AttributeError)
    with pytest.raises(ValueError, match=r"recipe .*p.yaml must hold a mapping of field: value, got list"):
        tad("pretrain", "--config", recipe)
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- decoding parameters


@pytest.mark.parametrize("kwargs, message", [
    ({"gen_length": 0}, r"gen_length \(0\) and block_length \(32\) must be > 0"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
    ({"policy": "entropy", "threshold": 0.0}, r"entropy threshold must be > 0 \(nats\)"),
    ({"policy": "confidence", "threshold": 0.9, "block_add_threshold": 1.5},
     r"block_add_threshold must be in \[0, 1\]"),
    ({"use_cache": "always"}, "use_cache must be none, prefix or dual"),
])
def test_invalid_decoding_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecodeConfig(**kwargs)


def test_tad_trajectories_rejects_bad_decoding_options_before_loading(tmp_path, arith_file):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="policy 'entropy' needs a threshold"):
        tad("trajectories", "--model", tmp_path / "no-such-model", "--task", "arith", "--data", arith_file,
            "--out", out, "--policy", "entropy", "--device", "cpu")
    with pytest.raises(ValueError, match="block_length 24 must divide gen_length 64"):
        tad("trajectories", "--model", tmp_path / "no-such-model", "--task", "arith", "--data", arith_file,
            "--out", out, "--gen-length", "64", "--block-length", "24", "--device", "cpu")
    assert not out.exists()


# ----------------------------------------------------------------------------------- checkpoints


def test_damaged_checkpoint_folders(char_ckpt, tmp_path):
    from tadllm.models import load_model

    no_weights = tmp_path / "no-weights"
    shutil.copytree(char_ckpt, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(OSError, match=rf"no file named model.safetensors.*{no_weights}"):
        load_model(no_weights, device="cpu")
    no_config = tmp_path / "no-config"
    shutil.copytree(char_ckpt, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(no_config, device="cpu")
    truncated = tmp_path / "truncated"
    shutil.copytree(char_ckpt, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    # the safetensors error does not name the file (it comes from tadllm.models / safetensors)
    with pytest.raises(Exception, match="deserializing header"):
        load_model(truncated, device="cpu")


# --------------------------------------------------------------------------- nothing half-written


def test_disk_full_while_writing_a_shard_leaves_no_shard_and_the_rerun_completes(char_model, tmp_path,
                                                                                   monkeypatch):
    model, tok, family = char_model
    problems = generate_problems(6, seed=5)
    kw = dict(keep="all", chunk_size=2, batch_size=2, progress=False, model_name="tiny")
    generate_trajectories(model, tok, family, get_task("arith"), problems, SMALL, tmp_path / "ref", **kw)

    real = storage.pq.write_table
    calls = {"n": 0}

    def disk_full_on_second(table, where, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(28, "No space left on device")
        return real(table, where, **k)

    monkeypatch.setattr(storage.pq, "write_table", disk_full_on_second)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        generate_trajectories(model, tok, family, get_task("arith"), problems, SMALL, out, **kw)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-r000-00000.parquet"]  # no torn shard
    assert len(storage.read_done(out / "done-r0.jsonl")) == 1 and not (out / "summary.json").exists()
    assert read_trajectories(out).num_rows == 2  # what is visible is readable
    monkeypatch.setattr(storage.pq, "write_table", real)
    summary = generate_trajectories(model, tok, family, get_task("arith"), problems, SMALL, out, **kw)
    assert summary["complete"] and summary["samples"] == 6
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []  # the leftover temporary is removed
    key = lambda r: (r["problem_id"], r["sample_idx"])  # noqa: E731
    assert sorted(read_trajectories(out, as_list=True), key=key) == \
        sorted(read_trajectories(tmp_path / "ref", as_list=True), key=key)


def test_failed_write_of_results_json_keeps_the_previous_file(char_model, tmp_path, monkeypatch):
    from tadllm.eval import runner
    from tadllm.eval.runner import parse_sweep, run_sweep

    model, tok, family = char_model
    task = get_task("arith")
    examples = generate_problems(4, seed=2)
    base = {"gen_length": 16, "block_length": 16, "policy": "entropy", "stop_at_eos": True}
    out = tmp_path / "out"
    run_sweep(model, tok, family, task, examples, base, parse_sweep("threshold=0.5"), out, model_name="tiny",
              method="m", progress=False, log=lambda m: None)
    before = (out / "results.json").read_bytes()
    real_replace = os.replace

    def crash_before_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash_before_rename)
    with pytest.raises(OSError, match="No space left"):
        run_sweep(model, tok, family, task, examples, base, parse_sweep("threshold=0.5,0.25"), out,
                  model_name="tiny", method="m", progress=False, log=lambda m: None)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (out / "results.json").read_bytes() == before  # untouched: one run, valid JSON
    assert len(json.loads(before)["runs"]) == 1
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []  # the temporary is removed
