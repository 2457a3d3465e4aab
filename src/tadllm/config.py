"""The one configuration mechanism of every `tad` command: options declared as dataclass fields, set from a
YAML file, `key=value` overrides and (for the commands with flags) `--flag value`, every value converted to
its field's declared type by `coerce`; unknown keys are refused with one line naming where each was given.

- `build_config` (`tad train`, `tad pretrain`: a `transformers.TrainingArguments` subclass): a YAML file, then
  `key=value` overrides (`--key=value` also accepted; later wins), then keyword arguments.
- `ConfigParser` (`tad generate`, `eval`, `trajectories`, `serve`, `quickstart`): an argparse parser whose
  flags are made from the fields of one dataclass per concern (`--gen-length` and `--gen_length`, HfArgumentParser
  style), plus `--config FILE.yaml` and trailing `key=value` overrides of the same fields.

Values are read as YAML 1.2 scalars (`save_strategy: no` is the string "no" in a file and on the command line
alike; `1e-4` is a float); `true/false`, `none`, numbers and comma lists read the same in a file, a flag and
an override because all go through `coerce`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import re
import types
import typing
from pathlib import Path

__all__ = ["ArgumentParser", "ConfigParser", "build_config", "check_known", "coerce", "config_fields", "parse_override",
           "read_config", "typed_config", "yaml_load"]


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


def typed_config(data: dict, known: dict) -> dict:
    """`data` with every value converted to its field's type (`known`: name -> type); one ValueError names the
    key, the value and the expected type."""
    typed = {}
    for key, value in data.items():
        try:
            typed[key] = coerce(key, value, known[key])
        except (TypeError, ValueError) as err:
            raise ValueError(f"config key {key!r}: cannot use {value!r} (expected {type_name(known[key])})") from None
    return typed


def build_config(cls, yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                 kwargs: dict | None = None, *, file_word: str = "config file", label: str | None = None):
    """`cls(**typed)` from a YAML file, `key=value` overrides and kwargs (later wins); see the module doc."""
    data, source = read_config(yaml_path, overrides, kwargs, file_word=file_word)
    known = config_fields(cls)
    check_known(data, source, known, label)
    return cls(**typed_config(data, known))


# ------------------------------------------------------------------------------ command lines from dataclasses


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line reported on one line (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def flag_names(name: str) -> list[str]:
    """`--gen-length` and `--gen_length` for the field `gen_length` (both accepted, as in HfArgumentParser)."""
    kebab = "--" + name.replace("_", "-")
    return [kebab] if "_" not in name else [kebab, "--" + name]


def _type_name(tp) -> str:
    """The name argparse shows in "invalid int value: 'x'" (the messages of the hand-written flags)."""
    members = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    first = members[0] if members else tp
    return getattr(typing.get_origin(first) or first, "__name__", "value")


def _item_type(tp):
    """`str` for `list[str] | None`: the type of one value of a repeatable flag."""
    members = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    return (typing.get_args(members[0]) or (str,))[0]


def _is_list(tp) -> bool:
    members = [a for a in typing.get_args(tp) if a is not type(None)] if _is_union(tp) else [tp]
    return bool(members) and typing.get_origin(members[0]) is list


def _is_bool(tp) -> bool:
    return tp is bool or (_is_union(tp) and bool in typing.get_args(tp))


def _converter(name: str, tp, check=None):
    """The argparse `type` of a flag: the same `coerce` as a YAML value or an override, then the field's check.
    A ValueError from `coerce` reads "invalid int value: 'abc'" (argparse's wording); a failed check its own
    message."""
    def convert(text):
        if _is_bool(tp) and "=" in text:  # `--overwrite limit=5`: the bool flag took the override as its value
            raise argparse.ArgumentTypeError(f"expects true or false, got {text!r}; write key=value overrides "
                                             f"before the flag, or give it a value (--{name.replace('_', '-')} true)")
        value = coerce(name, text, tp)
        if check is not None:
            try:
                check(value)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return value

    convert.__name__ = _type_name(tp)
    return convert


def _help_text(text: str, default, required: bool) -> str:
    """The help line with the default (spelled as in YAML) unless it already says it, or "required"."""
    if required:
        return f"{text} (required)".strip()
    if default is None or default is False or default == [] or "default" in text:
        return text
    shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    return f"{text} (default: {str(shown).lower() if isinstance(shown, bool) else shown})".strip()


@dataclasses.dataclass
class _Spec:
    """One dataclass added to a `ConfigParser`: its fields there and the command's defaults for it."""

    cls: type
    names: list[str]
    defaults: dict


class ConfigParser(ArgumentParser):
    """The command line of a `tad` command, made from dataclasses (one per concern, `add_dataclass`).

    Every field is a flag (`--gen-length` / `--gen_length`); a bool field is `--flag [true|false]` (alone: true),
    with `--no-flag` when it defaults to true. `--config FILE.yaml` (field: value) and trailing `key=value`
    overrides set the same fields. Precedence: defaults < the YAML < `key=value` < flags. Every value, from any
    source, is converted by `coerce` after the field's type, then checked against the field's `choices` /
    `check`. Field metadata: `help`, `choices`, `check` (callable raising ValueError), `required`, `metavar`,
    `append` (a repeatable flag; a single string in YAML is one item), `no_help` (help of `--no-flag`),
    `positional` (the field is given as bare arguments, e.g. `tad report RUN_DIR...`: every trailing argument that
    is not `key=value` belongs to it, one item for a scalar field, one or more for a list).

    `parse` returns one instance per dataclass (in the order added); `parse_args` the same values as one flat
    namespace.
    """

    def __init__(self, prog: str, description: str | None = None, **kwargs):
        super().__init__(prog=prog, description=description, **kwargs)
        self.add_argument("--config", dest="config_file", default=None, metavar="FILE.yaml",
                          help="YAML file of option: value (the option names below, with _); key=value "
                               "overrides and flags win over it")
        self._trailing = self.add_argument(
            "overrides", nargs="*", default=[], metavar="key=value",
            help="set any option below by name, e.g. gen_length=64 (flags win over these)")
        self.positional: str | None = None  # the field the bare trailing arguments fill
        self.specs: list[_Spec] = []
        self.options: dict[str, tuple] = {}  # field name -> (type, metadata, the command's default)

    def add_dataclass(self, cls, title: str | None = None, *, only=None, exclude=(), defaults: dict | None = None,
                      help: dict | None = None):  # noqa: A002 - argparse's word
        """Flags for the fields of `cls` (all, or `only` those, less `exclude`); `defaults` / `help` replace the
        field's default / help text for this command."""
        group = self.add_argument_group(title)
        defaults, help = dict(defaults or {}), dict(help or {})
        types_ = config_fields(cls)
        names = []
        for f in dataclasses.fields(cls):
            if not f.init or f.name in exclude or (only is not None and f.name not in only):
                continue
            if f.name in self.options:
                raise TypeError(f"{self.prog}: option {f.name!r} is declared twice")
            default = defaults.get(f.name, _field_default(f))
            meta = dict(f.metadata)
            self.options[f.name] = (types_[f.name], meta, default)
            self._add_flags(group, f.name, help.get(f.name, meta.get("help", "")), default)
            names.append(f.name)
        self.specs.append(_Spec(cls, names, defaults))
        return group

    def _add_flags(self, group, name: str, text: str, default) -> None:
        tp, meta, _ = self.options[name]
        if meta.get("positional"):
            if self.positional is not None:
                raise TypeError(f"{self.prog}: only one positional field ({self.positional!r} and {name!r})")
            self.positional = name
            word = meta.get("metavar") or name.upper()
            self._trailing.metavar = f"{word}|key=value"
            self._trailing.help = f"{word}{' (one or more)' if _is_list(tp) else ''}: {text}; key=value: set any " \
                                  f"option below by name (flags win over these)"
            return
        convert = _converter(name, tp, meta.get("check"))
        text = _help_text(text, default, bool(meta.get("required")))
        common = dict(dest=name, default=argparse.SUPPRESS, help=text, metavar=meta.get("metavar"))
        if _is_bool(tp):
            group.add_argument(*flag_names(name), nargs="?", const=True, type=convert,
                               **{**common, "metavar": "true|false"})
            if default is True:
                group.add_argument(*flag_names("no_" + name), dest=name, action="store_false",
                                   default=argparse.SUPPRESS, help=meta.get("no_help", f"set {name} to false"))
        elif meta.get("append"):
            group.add_argument(*flag_names(name), action="append", type=_converter(name, _item_type(tp)), **common)
        else:
            group.add_argument(*flag_names(name), type=convert, choices=meta.get("choices"), **common)

    def _get_option_tuples(self, option_string):
        # A prefix (`--gen`) matches both spellings of one flag (`--gen-length`, `--gen_length`): that is one
        # option, not an ambiguity, so the abbreviations of the hand-written flags keep working.
        seen, unique = set(), []
        for match in super()._get_option_tuples(option_string):
            if id(match[0]) not in seen:
                seen.add(id(match[0]))
                unique.append(match)
        return unique

    def parse(self, argv=None) -> tuple:
        """One instance per added dataclass: defaults < `--config` YAML < `key=value` < flags."""
        ns = self.parse_intermixed_args(argv)
        flags = {k: v for k, v in vars(ns).items() if k in self.options}
        overrides, bare = _split_trailing(ns.overrides)
        if bare:
            flags.update(self._positional_value(bare))
        data, source = read_config(ns.config_file, overrides)
        check_known(data, source, self.options, label="config")
        values = {**self._typed(data, source), **flags}
        missing = [(meta.get("metavar") or n.upper()) if n == self.positional else flag_names(n)[0]
                   for n, (_, meta, default) in self.options.items()
                   if meta.get("required") and values.get(n, default) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return tuple(spec.cls(**{**spec.defaults, **{n: values[n] for n in spec.names if n in values}})
                     for spec in self.specs)

    def _positional_value(self, bare: list[str]) -> dict:
        """The bare trailing arguments as the value of the positional field (typed like a flag's)."""
        if self.positional is None:
            self.error(f"unrecognized arguments: {' '.join(bare)} (options are --flag value or key=value)")
        tp, meta, _ = self.options[self.positional]
        item_type = _item_type(tp) if _is_list(tp) else None
        if item_type is None and len(bare) > 1:
            self.error(f"one {meta.get('metavar') or self.positional.upper()} expected, got {' '.join(bare)}")
        convert = _converter(self.positional, item_type or tp, meta.get("check"))
        try:
            values = [convert(text) for text in bare]
        except (argparse.ArgumentTypeError, ValueError) as err:
            self.error(f"{self.positional}: {err}")
        return {self.positional: values if item_type is not None else values[0]}

    def parse_args(self, args=None, namespace=None):
        """The values of `parse` as one flat namespace (every field of every dataclass)."""
        merged = argparse.Namespace() if namespace is None else namespace
        for instance in self.parse(args):
            vars(merged).update({f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)})
        return merged

    def _typed(self, data: dict, source: dict) -> dict:
        """The YAML and override values typed by `coerce`, then checked like a flag's."""
        data = {k: [v] if isinstance(v, str) and self.options[k][1].get("append") else v for k, v in data.items()}
        typed = typed_config(data, {k: self.options[k][0] for k in data})
        for key, value in typed.items():
            meta = self.options[key][1]
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ValueError(f"config key {key!r} {source[key]}: {value!r} is not one of {', '.join(choices)}")
            if meta.get("check") is not None:
                try:
                    meta["check"](value)
                except ValueError as err:
                    raise ValueError(f"config key {key!r} {source[key]}: {err}") from None
        return typed


def _split_trailing(items: list[str]) -> tuple[list[str], list[str]]:
    """The trailing arguments as (`key=value` overrides, bare arguments): an override starts with a name and `=`."""
    overrides = [item for item in items if re.match(r"[A-Za-z_][\w.]*=", item)]
    return overrides, [item for item in items if item not in overrides]


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
