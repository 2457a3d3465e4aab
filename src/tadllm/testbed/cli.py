"""`tad pretrain --config RECIPE.yaml [key=value ...]`: train the testbed teacher from a recipe."""

from __future__ import annotations

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


def recipe_dict(config_path: str | None, overrides: list[str], sources: dict | None = None) -> dict:
    """The recipe's mapping updated by the overrides; `sources` (if given) gets where each key came from."""
    import yaml

    sources = {} if sources is None else sources
    data = {}
    if config_path:
        path = Path(config_path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"recipe {path} must hold a mapping of field: value, got {type(data).__name__}")
        sources.update(dict.fromkeys(data, f"in {path}"))
    extra = parse_overrides(overrides)
    sources.update(dict.fromkeys(extra, "on the command line"))
    data.update(extra)
    return data


def build_dataclass(cls, data: dict, sources: dict | None = None):
    """Typed construction through transformers' HfArgumentParser; unknown keys are an error (naming where
    each was given when `sources` says)."""
    import dataclasses
    import difflib

    from transformers import HfArgumentParser

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        hints = [f"{k} (did you mean {', '.join(difflib.get_close_matches(k, known, 2))}?)"
                 if difflib.get_close_matches(k, known, 2) else k for k in unknown]
        hints = [f"{h} {sources[k]}" if sources and k in sources else h for h, k in zip(hints, unknown)]
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
    from tadllm.cliargs import ArgumentParser

    parser = ArgumentParser(prog="tad pretrain", description=__doc__)
    parser.add_argument("--config", help="YAML recipe (e.g. configs/testbed-pretrain.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of recipe fields")
    args = parser.parse_args(argv)
    from .pretrain import PretrainConfig, pretrain

    sources: dict = {}
    cfg = build_dataclass(PretrainConfig, recipe_dict(args.config, args.overrides, sources), sources)
    final = pretrain(cfg)
    print(f"[pretrain] saved {final}")
    return 0
