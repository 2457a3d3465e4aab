"""First run on the bundled model: a bad input is one line naming what to fix, defaults come from the model's
recorded task settings, `tad generate` never prints an empty answer silently, decoding flags go together."""

from __future__ import annotations

import json
import time

import pytest

from tadllm.cli import main
from tadllm.testbed.quickstart import BUNDLED_TEACHER

TEACHER = str(BUNDLED_TEACHER)
QUALITY = "configs/testbed-tad-quality.yaml"


def tad(*args) -> int:
    """`tad ARGS`'s exit status (argparse's errors exit through SystemExit)."""
    try:
        return main(list(args))
    except SystemExit as err:
        return err.code


def one_error(capsys, command: str) -> str:
    """The single error line on stderr (other lines may only be the model-settings note and transformers'
    weight-loading bar)."""
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.strip() and not line.startswith("Loading weights")]
    assert not any("Traceback" in line for line in lines)
    errors = [line for line in lines if line.startswith(f"tad {command}: error: ")]
    others = [line for line in lines if line not in errors and " recorded in " not in line]
    assert len(errors) == 1 and not others, lines
    return errors[0]


@pytest.mark.parametrize("command", ["eval", "generate", "trajectories"])
def test_a_missing_model_folder_is_named_at_once(command, tmp_path, capsys):
    extra = {"eval": ["--task", "arith"], "generate": ["--prompt", "x"],
             "trajectories": ["--task", "arith", "--out", str(tmp_path / "t")]}[command]
    for missing in (str(tmp_path / "nope"), "./nope", "outputs/testbed/nope"):
        start = time.perf_counter()
        assert main([command, "--model", missing, *extra]) == 2
        assert time.perf_counter() - start < 10  # no hub lookup
        line = one_error(capsys, command)
        assert f"model folder {missing} does not exist" in line and "Repo id" not in line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--debug", "eval", "--model", str(tmp_path / "nope"), "--task", "arith"])
    with pytest.raises(FileNotFoundError):
        main(["eval", "--model", str(tmp_path / "nope"), "--task", "arith", "--debug"])


def test_a_malformed_jsonl_file_is_one_line_with_file_and_line(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps({"question": "start 1 add 2"}) + "\n{not json\n")
    assert main(["eval", "--model", TEACHER, "--task", "arith", "--data", str(data)]) == 2
    assert f"{data}, line 2" in one_error(capsys, "eval")


def test_unknown_keys_say_where_they_were_given(tmp_path, capsys):
    assert main(["train", "--config", QUALITY, "lora_rnk=8", "--print-config"]) == 2
    line = one_error(capsys, "train")
    assert "unknown config key(s) on the command line: 'lora_rnk' (did you mean lora_r" in line
    assert QUALITY not in line
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: x\nper_device_batch_size: 4\n")
    assert main(["train", "--config", str(recipe), "delta_x=1", "--print-config"]) == 2
    line = one_error(capsys, "train")
    assert f"in {recipe}: 'per_device_batch_size'" in line and "on the command line: 'delta_x'" in line
    assert main(["pretrain", "d_modle=32"]) == 2
    assert "d_modle (did you mean d_model?) on the command line" in one_error(capsys, "pretrain")


@pytest.mark.parametrize("command, args, message", [
    ("train", ["--config", QUALITY, "learning_rate=fast", "--print-config"],
     "config key 'learning_rate': cannot use 'fast'"),
    ("train", ["--config", "configs/nope.yaml"], "config file configs/nope.yaml does not exist"),
    ("train", ["--config", QUALITY, "train_data=outputs/none"], "trajectory data outputs/none does not exist; "
     "write it first with `tad trajectories --model MODEL --task TASK --out outputs/none`"),
    ("eval", ["--model", TEACHER, "--task", "arith", "--policy", "confidence", "--threshold", "1.5"],
     "confidence threshold must be in (0, 1]"),
    ("eval", ["--model", TEACHER, "--task", "arith", "--threshold", "0.9"],
     "--threshold 0.9 has no effect with --policy low_confidence"),
    ("generate", ["--model", TEACHER, "--prompt", "x", "--threshold", "0.9", "--policy", "random"],
     "--threshold 0.9 has no effect with --policy random"),
    ("trajectories", ["--model", TEACHER, "--task", "arith", "--out", "x", "--policy", "entropy", "--threshold",
                      "0.5", "--steps", "8"], "--steps 8 has no effect with --policy entropy"),
    ("eval", ["--model", TEACHER, "--task", "arithmetic"], "unknown task 'arithmetic'; known tasks:"),
    ("pretrain", ["d_model=abc"], "config key 'd_model': cannot use 'abc' (expected int)"),
    ("eval", ["--model", TEACHER, "--task", "arith", "--dtype", "bf17"], "unknown dtype 'bf17'"),
    ("generate", ["--model", TEACHER, "--prompt", "start 1 add 2", "--gen-length", "256"],
     "the prompt has 13 tokens + --gen-length 256 > the model's maximum sequence length 256; lower "
     "--gen-length to 243 or less"),
])
def test_bad_values_are_one_line(command, args, message, capsys):
    assert tad(command, *args) == 2
    assert message in one_error(capsys, command)


def test_dtype_accepts_both_spellings_in_every_command():
    from tadllm.eval.runner import build_eval_parser
    from tadllm.trajectories.cli import build_parser

    for dtype in ("bf16", "bfloat16", "fp32", "float32", "fp16", "float16", "auto"):
        assert build_eval_parser().parse_args(["--model", "m", "--task", "t", "--dtype", dtype]).dtype == dtype
        assert build_parser().parse_args(["--model", "m", "--task", "t", "--out", "o", "--dtype", dtype]).dtype == dtype


def test_generate_takes_the_model_lengths_and_warns_on_an_empty_answer(capsys):
    prompt = ["generate", "--model", TEACHER, "--raw", "--prompt", "start 74 add 29 mul 6", "--policy", "confidence",
              "--threshold", "0.9"]
    assert main(prompt) == 0  # gen_length 64 from testbed.json
    out, err = capsys.readouterr()
    assert out.strip() == "74+29=103;103*6=618;####618" and "using gen_length 64, block_length 32" in err
    assert "warning" not in err
    assert main(prompt + ["--gen-length", "128"]) == 0  # a length the teacher never saw: it stops at once
    out, err = capsys.readouterr()
    assert out.strip() == "" and "warning: the model generated no text" in err


def test_the_model_settings_give_the_task_and_lengths():
    import argparse

    from tadllm.testbed.settings import fill_lengths, load_task, recorded_settings

    settings = recorded_settings(TEACHER)
    task = load_task("arith", settings)
    assert (task.spec.min_ops, task.spec.max_ops) == (2, 4)
    assert load_task("arith", {}).spec.max_ops == 5  # a model without settings: the task's own default
    args = argparse.Namespace(gen_length=None, block_length=16)
    assert fill_lengths(args, settings, {"gen_length": 256, "block_length": 32}) == ["gen_length 64"]
    assert (args.gen_length, args.block_length) == (64, 16)  # an explicit flag wins
    args = argparse.Namespace(gen_length=None, block_length=None)
    assert fill_lengths(args, {}, {"gen_length": 256, "block_length": 32}) == []
    assert (args.gen_length, args.block_length) == (256, 32)
