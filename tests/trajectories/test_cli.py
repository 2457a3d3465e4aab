"""`tad trajectories`'s options (`tadllm.trajectories.cli`): the same setting as a flag, as key=value and in
a YAML file parses alike; only the decoding options a trajectory uses are accepted."""

from __future__ import annotations

import pytest
from tadtest import parsed_three_ways

from tadllm.trajectories.cli import TrajectoryArguments, build_parser

SETTINGS = {"task": "arith", "out": "runs/t", "keep": "all", "split": "off", "samples_per_problem": "2",
            "progress": "false", "temperature": "0", "gen_length": "64", "dtype": "fp32", "revision": "main"}


def test_a_flag_a_key_value_and_yaml_parse_alike(tmp_path):
    flags, overrides, from_yaml = parsed_three_ways(build_parser, ["--model", "m"], SETTINGS, tmp_path)
    assert flags == overrides == from_yaml
    model, trajectories, decoding = flags
    assert (model.model, model.dtype) == ("m", "fp32")
    assert trajectories == TrajectoryArguments(task="arith", out="runs/t", keep="all", split="off",
                                               samples_per_problem=2, progress=False, revision="main")
    assert (decoding.temperature, decoding.gen_length, decoding.block_length) == (0.0, 64, None)
    assert decoding.stop_at_eos is False  # the engine's default: a trajectory records every step


def test_defaults_and_the_options_it_does_not_take():
    _, trajectories, decoding = build_parser().parse(["--model", "m", "--task", "t", "--out", "o"])
    assert decoding.temperature == 0.7 and trajectories.split == "train" and trajectories.keep == "correct"
    with pytest.raises(ValueError, match=r"unknown config key\(s\): multi_block .*on the command line"):
        build_parser().parse(["--model", "m", "--task", "t", "--out", "o", "multi_block=true"])
    with pytest.raises(SystemExit):
        build_parser().parse(["--model", "m", "--task", "t", "--out", "o", "--cuda-graphs"])
