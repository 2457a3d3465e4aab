"""`tad pretrain --config RECIPE.yaml [key=value ...]`: train the testbed teacher from a recipe.

The recipe is read by `tadllm.config.build_config`, the configuration mechanism of `tad train` too (YAML 1.2
scalars, typed `key=value` overrides, unknown keys refused)."""

from __future__ import annotations


def main_pretrain(argv=None) -> int:
    from tadllm.cliargs import ArgumentParser
    from tadllm.config import build_config

    parser = ArgumentParser(prog="tad pretrain", description=__doc__)
    parser.add_argument("--config", help="YAML recipe (e.g. configs/testbed-pretrain.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of recipe fields")
    args = parser.parse_args(argv)
    from .pretrain import PretrainConfig, pretrain

    cfg = build_config(PretrainConfig, args.config, args.overrides, file_word="recipe", label="PretrainConfig")
    final = pretrain(cfg)
    print(f"[pretrain] saved {final}")
    return 0
