"""`tad eval`'s options (`tadllm.eval.cli`): the same setting as a flag, as key=value and in a YAML file
parses alike; unknown keys are one line naming where; the example configs/testbed-eval.yaml runs."""

from __future__ import annotations

import json
from pathlib import Path

from tadtest import parsed_three_ways

from tadllm.cli import main
from tadllm.cliargs import ModelArguments
from tadllm.eval.cli import EvalArguments, build_eval_parser

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"task": "arith", "split": "no", "limit": "5", "sweep": "threshold=0.9,0.5", "dtype": "bf16",
            "gen_length": "64", "policy": "confidence", "multi_block": "true", "stop_at_eos": "false",
            "temperature": "0", "progress": "false", "overwrite": "true", "data": "none"}


def test_a_flag_a_key_value_and_yaml_parse_alike(tmp_path):
    flags, overrides, from_yaml = parsed_three_ways(build_eval_parser, ["--model", "m"], SETTINGS, tmp_path)
    assert flags == overrides == from_yaml
    model, evaluation, decoding = flags
    assert model == ModelArguments(model="m", dtype="bf16")
    assert evaluation == EvalArguments(task="arith", split="no", limit=5, sweep=["threshold=0.9,0.5"],
                                       progress=False, overwrite=True, data="none")
    assert (decoding.gen_length, decoding.block_length, decoding.policy, decoding.multi_block) == \
        (64, None, "confidence", True)  # block_length unset: the model's recorded one fills it later
    assert decoding.stop_at_eos is False and decoding.temperature == 0.0


def test_the_old_flags_still_parse():
    model, evaluation, decoding = build_eval_parser().parse(
        ["--model", "m", "--task", "t", "--no-progress", "--no-stop-at-eos", "--multi-block", "--batch-size", "3",
         "--trust-remote-code", "--sweep", "threshold=0.9", "--sweep", "block_length=16,32"])
    assert model.trust_remote_code and model.dtype is None  # eval's dtype default: by device
    assert evaluation.sweep == ["threshold=0.9", "block_length=16,32"] and evaluation.batch_size == 3
    assert not evaluation.progress and not decoding.stop_at_eos and decoding.multi_block


def one_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tad eval: error: "), lines
    return lines[0]


def test_unknown_keys_are_one_line_naming_where(tmp_path, capsys):
    config = tmp_path / "e.yaml"
    config.write_text("model: m\ntask: arith\nlimt: 3\n")
    assert main(["eval", "--config", str(config)]) == 2
    assert f"unknown config key(s): limt (did you mean limit, split?) in {config}" in one_error(capsys)
    assert main(["eval", "--model", "m", "--task", "arith", "gen_lenght=8"]) == 2
    assert "gen_lenght (did you mean gen_length?) on the command line" in one_error(capsys)
    config.write_text("model: m\ntask: arith\ndtype: bf17\n")
    assert main(["eval", "--config", str(config)]) == 2
    assert f"config key 'dtype' in {config}: unknown dtype 'bf17'" in one_error(capsys)


def test_the_example_config_runs_with_a_small_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the config names the bundled model by its path in the repository
    out = tmp_path / "run"
    assert main(["eval", "--config", "configs/testbed-eval.yaml", "limit=3", "--out", str(out),
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [run["config"]["threshold"] for run in results["runs"]] == [0.99, 0.9, 0.7]
    assert results["data"]["limit"] == 3 and results["runs"][0]["config"]["policy"] == "confidence"
    assert results["runs"][0]["config"]["gen_length"] == 64  # from the model's testbed.json
    assert "using gen_length 64, block_length 32" in capsys.readouterr().err
