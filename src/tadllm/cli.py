"""`tad`: the command-line interface. Each subcommand imports its stage lazily, so `tad --help` is instant.

    tad generate     decode a prompt (optionally showing the parallel decoding live)
    tad trajectories build verified teacher trajectories
    tad train        TAD distillation (YAML recipe + key=value overrides)
    tad merge        merge a LoRA adapter into its base checkpoint
    tad eval         accuracy / TPF / tokens/s of one decoding configuration or a sweep
    tad report       plots and AUP tables over several eval runs
    tad aup          AUP of published (TPF, accuracy) points from a YAML file
    tad pretrain     train the testbed's teacher from scratch
    tad quickstart   the whole pipeline on the bundled tiny model
    tad serve        an OpenAI-compatible HTTP server that batches concurrent requests

generate, eval, trajectories, serve, quickstart, report, aup and merge take their options as flags, from
`--config FILE.yaml` and as trailing `key=value` (flags win over `key=value`, which wins over the file;
`tad CMD --help` lists them); train and pretrain take a YAML recipe (`--config`) and `key=value`.

A mistake in the input (a missing folder, a bad value, an unknown key) is reported on one line;
`tad --debug COMMAND ...` (or TAD_DEBUG=1) shows the traceback instead.
"""

# This module only dispatches: each command lives next to its stage (COMMANDS), and the helpers the commands
# share (flags, one-line argparse errors, the model's recorded settings) are in `tadllm.cliargs`. Nothing
# below `tadllm.cli` imports it.

from __future__ import annotations

import os
import sys

COMMANDS = {
    "generate": ("tadllm.decoding.cli", "main_generate"),
    "trajectories": ("tadllm.trajectories.cli", "main_trajectories"),
    "train": ("tadllm.distill.cli", "main_train"),
    "merge": ("tadllm.distill.merge", "main_merge"),
    "eval": ("tadllm.eval.cli", "main_eval"),
    "report": ("tadllm.eval.cli", "main_report"),
    "aup": ("tadllm.eval.cli", "main_aup"),
    "pretrain": ("tadllm.testbed.cli", "main_pretrain"),
    "quickstart": ("tadllm.testbed.quickstart", "main_quickstart"),
    "serve": ("tadllm.serve.cli", "main_serve"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(argv) and argv[0] == "--debug"
    argv = argv[1:] if debug else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"tad: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if "--debug" in argv[1:]:  # also accepted after the command
        debug, argv = True, [a for a in argv if a != "--debug"]
    return run_command(name, argv[1:], debug or os.environ.get("TAD_DEBUG", "") not in ("", "0"))


def run_command(name: str, args: list[str], debug: bool = False) -> int:
    """Run `tad NAME ARGS`; a user error (`tadllm.errors`) becomes one line on stderr and exit status 2,
    unless `debug`, which lets it raise with its traceback."""
    import importlib

    from .errors import one_line, user_error_types

    module, func = COMMANDS[name]
    try:
        result = getattr(importlib.import_module(module), func)(args)
    except user_error_types() as err:
        if debug:
            raise
        print(f"tad {name}: error: {one_line(err)} (--debug for the traceback)", file=sys.stderr, flush=True)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
