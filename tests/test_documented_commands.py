"""The bundled-model commands that README.md and docs/*.md show run as written, in order.

A block marked `<!-- tested: tests/test_documented_commands.py ... -->` is a sequence of `tad` commands
that must work from a fresh checkout. Each file's marked blocks run in a fresh folder that sees the
checkout's `src/` and `configs/` (the paths the docs use), through `tadllm.cli.main`, with size options
appended so that the walk takes seconds: argparse and the `key=value` overrides keep the last value given,
so the documented command itself is what is parsed and run.
"""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from tadllm.cli import main

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- tested: tests/test_documented_commands.py"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FIXED_COUNT = ("low_confidence", "random")

# What each command gets appended (small sizes); a command not listed here fails the test.
SMALL = {
    "generate": [],
    "eval": ["--limit", "2", "--batch-size", "2", "--no-progress"],
    "trajectories": ["--limit", "2", "--batch-size", "2", "--no-progress"],
    "train": ["max_steps=1", "per_device_train_batch_size=2", "save_strategy=no", "logging_steps=1"],
    "report": ["--n-boot", "10"],
}


def documented_commands(path: Path) -> list[list[str]]:
    """The `tad` commands of the marked ```bash blocks of `path`, in order (continuations joined,
    comments dropped), each as its argument list."""
    lines = path.read_text().splitlines()
    commands = []
    for i, line in enumerate(lines):
        if not line.startswith(MARK):
            continue
        assert lines[i + 1].strip() == "```bash", f"{path.name}:{i + 2}: a marked block must follow its mark"
        end = lines.index("```", i + 2)
        text = "\n".join(lines[i + 2:end]).replace("\\\n", " ")
        for command in text.splitlines():
            args = shlex.split(command, comments=True)
            if args:
                assert args[0] == "tad", f"{path.name}: only tad commands can be tested: {command!r}"
                commands.append(args[1:])
    return commands


def small(args: list[str]) -> list[str]:
    """`args` with the size options of its command appended (a fixed-count decoding also gets fewer steps)."""
    name = args[0]
    assert name in SMALL, f"no small sizes for `tad {name}`: add them to SMALL"
    extra = list(SMALL[name])
    policy = args[args.index("--policy") + 1] if "--policy" in args else config_value(args, "policy",
                                                                                       "low_confidence")
    if name in ("eval", "trajectories") and policy in FIXED_COUNT and "--steps" not in args:
        extra += ["--steps", "16"]  # 4 tokens per step over the testbed's 64 positions
    expanded = [m for a in args for m in (sorted(glob.glob(a)) or [a] if "*" in a else [a])]
    return expanded + extra


def config_value(args: list[str], key: str, default):
    """`key` of the `--config FILE.yaml` that `args` name (relative to the checkout), else `default`."""
    from tadllm.config import yaml_load

    if "--config" not in args:
        return default
    return (yaml_load((REPO / args[args.index("--config") + 1]).read_text()) or {}).get(key, default)


DOCUMENTED = {p.name: documented_commands(p) for p in DOCS}


def test_the_marked_blocks_hold_the_testbed_walkthrough():
    names = {name: [args[0] for args in commands] for name, commands in DOCUMENTED.items() if commands}
    assert names["README.md"][:2] == ["generate", "eval"]
    assert names["training.md"] == ["trajectories", "train", "train", "eval", "eval", "eval", "report"]


@pytest.mark.parametrize("doc", [name for name, commands in DOCUMENTED.items() if commands])
def test_documented_commands_run_in_order(doc, tmp_path, monkeypatch, capsys):
    for folder in ("src", "configs"):
        (tmp_path / folder).symlink_to(REPO / folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for args in DOCUMENTED[doc]:
        code = main(small(args))
        err = capsys.readouterr().err
        assert code == 0, f"`tad {shlex.join(args)}` (from {doc}) failed:\n{err[-2000:]}"
        assert "Traceback" not in err
    if doc == "training.md":  # the walk's end product: a report over the teacher and both students
        report = (tmp_path / "outputs" / "testbed" / "report" / "report.md").read_text()
        assert all(re.search(rf"\| {m} \|", report) for m in ("teacher", "tad-quality", "tad-speed"))
