"""The `tad` entry point: dispatch, help, errors, and `tad generate` (plain, with --compile, --cuda-graphs)."""

import pytest

from tadllm.cli import COMMANDS, main
from tadllm.testbed.quickstart import BUNDLED_TEACHER

GEN = ["generate", "--model", str(BUNDLED_TEACHER), "--raw", "--prompt", "start 74 add 29 mul 6", "--gen-length",
       "64", "--block-length", "32", "--policy", "confidence", "--threshold", "0.9", "--device", "cpu"]


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "tad generate" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_command_resolves_to_a_function():
    import importlib

    for name, (module, func) in COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), func)), name


def test_generate_prints_the_answer_and_accounting(capsys):
    assert main(GEN) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "74+29=103;103*6=618;####618"
    assert "forward passes" in err and "TPF" in err


@pytest.mark.slow
def test_generate_with_compile_gives_the_same_answer(capsys):
    main(GEN)
    plain = capsys.readouterr().out
    main(GEN + ["--compile"])
    assert capsys.readouterr().out == plain


def test_cuda_graphs_need_a_cuda_device(capsys):
    for extra in (["--cuda-graphs"], ["--cuda-graphs", "--compile"]):
        assert main(GEN + extra) == 2
        assert "tad generate: error: --cuda-graphs needs the model on a CUDA device" in capsys.readouterr().err
