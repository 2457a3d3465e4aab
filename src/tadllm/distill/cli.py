"""`tad train`: train a TAD student from a YAML recipe and key=value overrides."""

from __future__ import annotations

import sys

from tadllm.cliargs import ArgumentParser

from .config import load_config


def main_train(argv: list[str] | None = None) -> int:
    """`tad train --config recipe.yaml key=value ...`"""
    parser = ArgumentParser(
        prog="tad train", description="Train a TAD student on teacher trajectories (see docs/training.md).")
    parser.add_argument("--config", "-c", help="YAML recipe (TADConfig fields)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="field overrides applied after the YAML, e.g. delta=8 lora_r=16 output_dir=out")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides are key=value)")
    config = load_config(args.config, list(args.overrides) + extra)
    if args.print_config:
        print(config.to_json_string())
        return 0
    from .trainer import train

    train(config)
    return 0


if __name__ == "__main__":  # python -m tadllm.distill.cli ...
    sys.exit(main_train())
