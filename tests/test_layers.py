"""Layers point one way: the stages (and their command modules) never import the `tad` dispatcher
`tadllm.cli`; the helpers the commands share live below it, in `tadllm.cliargs`."""

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = ["tadllm.eval", "tadllm.eval.runner", "tadllm.eval.cli", "tadllm.trajectories", "tadllm.trajectories.cli",
           "tadllm.distill", "tadllm.decoding.cli", "tadllm.testbed.cli", "tadllm.cliargs", "tadllm.config",
           "tadllm.serve.cli", "tadllm.testbed.quickstart"]


def test_stages_do_not_import_the_dispatcher():
    code = ("import importlib, sys\n"
            f"for name in {MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "print('tadllm.cli' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False"


def test_dispatcher_imports_no_stage():
    code = "import sys, tadllm.cli; print(sorted(m for m in sys.modules if m.startswith('tadllm.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "['tadllm.cli']"


def test_the_configuration_and_these_command_modules_import_no_torch():
    """`tadllm.config` / `tadllm.cliargs` and these command modules import torch only inside functions, so
    importing them (and `tad quickstart --help`) stays instant."""
    modules = ["tadllm.config", "tadllm.cliargs", "tadllm.eval.cli", "tadllm.serve.cli", "tadllm.testbed.quickstart"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "from tadllm.testbed.quickstart import build_parser\n"
            "build_parser().format_help()\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
