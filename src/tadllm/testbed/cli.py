"""`tad pretrain --config RECIPE.yaml [key=value ...]`: train the testbed teacher from a recipe."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings to a dict; values are read as YAML scalars (numbers, booleans, null)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value != "" else ""
    return out


def recipe_dict(config_path: str | None, overrides: list[str]) -> dict:
    import yaml

    data = {}
    if config_path:
        path = Path(config_path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"recipe {path} must hold a mapping of field: value, got {type(data).__name__}")
    data.update(parse_overrides(overrides))
    return data


def build_dataclass(cls, data: dict):
    """Typed construction through transformers' HfArgumentParser; unknown keys are an error."""
    import dataclasses
    import difflib

    from transformers import HfArgumentParser

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        hints = [f"{k} (did you mean {', '.join(difflib.get_close_matches(k, known, 2))}?)"
                 if difflib.get_close_matches(k, known, 2) else k for k in unknown]
        raise ValueError(f"unknown {cls.__name__} key(s): {'; '.join(hints)}")
    args = []
    for key, value in data.items():
        if isinstance(value, bool):
            args += [f"--{key}", str(value)]
        elif isinstance(value, (list, tuple)):
            args += [f"--{key}", *map(str, value)]
        elif value is not None:
            args += [f"--{key}", str(value)]
    (parsed,) = HfArgumentParser(cls).parse_args_into_dataclasses(args=args)
    return parsed


def main_pretrain(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tad pretrain", description=__doc__)
    parser.add_argument("--config", help="YAML recipe (e.g. configs/testbed-pretrain.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of recipe fields")
    args = parser.parse_args(argv)
    from .pretrain import PretrainConfig, pretrain

    cfg = build_dataclass(PretrainConfig, recipe_dict(args.config, args.overrides))
    final = pretrain(cfg)
    print(f"[pretrain] saved {final}")
    return 0
