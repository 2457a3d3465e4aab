"""The one configuration mechanism of the recipe-driven commands (`tad train`, `tad pretrain`): a dataclass
(a `transformers.TrainingArguments` subclass) built from a YAML file, then `key=value` overrides (`--key=value`
also accepted; later wins), then keyword arguments. Values are read as YAML 1.2 scalars (`save_strategy: no`
is the string "no" in a file and on the command line alike; `1e-4` is a float) and converted to each field's
declared type (`coerce`); unknown keys are refused with one line naming where each was given.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import re
import types
import typing
from pathlib import Path

__all__ = ["build_config", "coerce", "config_fields", "parse_override", "read_config", "yaml_load"]


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _is_union(tp) -> bool:
    return typing.get_origin(tp) is typing.Union or (hasattr(types, "UnionType")
                                                     and isinstance(tp, types.UnionType))


def _matches(value, tp) -> bool:
    if tp is typing.Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, float)
    origin = typing.get_origin(tp)
    if origin is not None:
        return isinstance(value, origin) and (origin is not list
                                              or all(_matches(v, (typing.get_args(tp) or (typing.Any,))[0])
                                                     for v in value))
    return isinstance(tp, type) and isinstance(value, tp)


def coerce(name: str, value, tp):
    """Convert `value` (from YAML or a CLI string) to the field type `tp`; ValueError names the field."""
    if _is_union(tp):
        return _coerce_union(name, value, tp)
    if value is None:
        raise ValueError(f"{name} cannot be null")
    if tp is typing.Any:
        return value
    if tp in (bool, int, float, str):
        return _coerce_scalar(name, value, tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    origin = typing.get_origin(tp)
    if origin is list or tp is list:
        inner = (typing.get_args(tp) or (typing.Any,))[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [coerce(name, v, inner) for v in value]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(f"{name} expects a mapping, got {value!r}")
        return value
    return value


def _coerce_union(name: str, value, tp):
    """`X | Y | None`: a value already of a member type is kept, else the first member it converts to."""
    members = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = len(members) < len(typing.get_args(tp))
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be null")
    if optional and str not in members and isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    for m in members:
        if _matches(value, m):
            return value
    errors = []
    for m in members:
        try:
            return coerce(name, value, m)
        except (TypeError, ValueError) as err:
            errors.append(str(err))
    raise ValueError(f"{name}: cannot use {value!r} ({'; '.join(errors)})")


def _coerce_scalar(name: str, value, tp):
    """bool (true/false, yes/no, on/off, 1/0), int (also `8.0`), float or str."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError(f"{name} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} expects an integer, got {value!r}") from None
        if number != int(number):
            raise ValueError(f"{name} expects an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} expects a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} expects a number, got {value!r}") from None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"{name} expects a string, got {value!r}")


def _yaml_loader():
    """A safe YAML loader with YAML 1.2 scalars: only true/false are booleans (`save_strategy: no` stays
    the string "no") and `1e-4` is a float."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    dropped = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    Loader.yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag not in dropped]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    # appended after the int resolver, so plain integers stay ints
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+0123456789."))
    return Loader


def yaml_load(text: str):
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def parse_override(item: str) -> tuple[str, object]:
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. delta=8 or lora_r=16)")
    raw = raw.strip()
    if raw == "":
        return key, None
    try:
        return key, yaml_load(raw)
    except yaml.YAMLError:
        return key, raw


def config_fields(cls) -> dict[str, object]:
    """name -> resolved type of every settable field of the dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(cls) if f.init}


def read_config(yaml_path: str | Path | None, overrides: list[str] | None = None, kwargs: dict | None = None, *,
                file_word: str = "config file") -> tuple[dict, dict]:
    """(the YAML mapping updated by the overrides and kwargs, key -> where it was given)."""
    data: dict = {}
    source: dict = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.exists():
            raise FileNotFoundError(f"{file_word} {path} does not exist")
        loaded = yaml_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file_word} {path} must hold a mapping of field: value, got {type(loaded).__name__}")
        data.update(loaded)
        source.update(dict.fromkeys(loaded, f"in {yaml_path}"))
    for item in overrides or []:
        key, value = parse_override(item)
        data[key] = value
        source[key] = "on the command line"
    data.update(kwargs or {})
    source.update(dict.fromkeys(kwargs or {}, "in the keyword arguments"))
    return data, source


def check_known(data: dict, source: dict, known, label: str | None = None) -> None:
    """Unknown keys are an error naming where each was given and the closest field names. Two wordings, each
    kept from its command: `tad train` (label None) groups the keys by where they were given ("unknown config
    key(s) on the command line: 'k' (did you mean ...)"); `tad pretrain` (label = the dataclass name) lists
    them with their origin ("unknown PretrainConfig key(s): k (did you mean ...?) on the command line")."""
    unknown = [k for k in data if k not in known]
    if not unknown:
        return
    close = {k: difflib.get_close_matches(str(k), list(known), n=3 if label is None else 2, cutoff=0.6)
             for k in unknown}
    if label is not None:
        hints = [f"{k} (did you mean {', '.join(close[k])}?)" if close[k] else str(k) for k in sorted(unknown)]
        hints = [f"{h} {source[k]}" if k in source else h for h, k in zip(hints, sorted(unknown))]
        raise ValueError(f"unknown {label} key(s): {'; '.join(hints)}")
    by_source: dict[str, list[str]] = {}
    for k in unknown:
        by_source.setdefault(source.get(k, ""), []).append(
            f"{k!r}" + (f" (did you mean {', '.join(close[k])}?)" if close[k] else ""))
    parts = [f"{where}: {'; '.join(keys)}".strip() for where, keys in by_source.items()]
    raise ValueError(f"unknown config key(s) {' and '.join(parts)}. See docs/training.md for the fields.")


def type_name(tp) -> str:
    """`int`, `float | None`, `list[str]`: a field type as a user would write it."""
    return tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp).replace("typing.", "")


def build_config(cls, yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                 kwargs: dict | None = None, *, file_word: str = "config file", label: str | None = None):
    """`cls(**typed)` from a YAML file, `key=value` overrides and kwargs (later wins); see the module doc."""
    data, source = read_config(yaml_path, overrides, kwargs, file_word=file_word)
    known = config_fields(cls)
    check_known(data, source, known, label)
    typed = {}
    for key, value in data.items():
        try:
            typed[key] = coerce(key, value, known[key])
        except (TypeError, ValueError) as err:
            raise ValueError(f"config key {key!r}: cannot use {value!r} (expected {type_name(known[key])})") from None
    return cls(**typed)
