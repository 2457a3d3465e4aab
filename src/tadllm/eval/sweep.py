"""The sweep grammar of `tad eval --sweep KEY=V1,V2,...`: `parse_sweep` turns specs into override dicts (a
product over keys), `sweep_configs` into validated `DecodeConfig`s; `config_key` identifies a config in
results.json (resume) and `short_config` names it in logs."""

from __future__ import annotations

import itertools
import json
import typing
from collections.abc import Mapping, Sequence

from tadllm.config import coerce, config_fields
from tadllm.decoding.config import FIXED_COUNT_POLICIES, THRESHOLD_POLICIES, DecodeConfig

__all__ = ["parse_sweep", "sweep_configs", "config_key", "short_config"]


_CONFIG_FIELDS = config_fields(DecodeConfig)  # name -> type
_NONE_WORDS = {"none", "null"}


def _coerce(key: str, raw: str):
    """A sweep value, typed after the DecodeConfig field by `tadllm.config.coerce` (the conversion of every
    recipe value too); ``none`` / ``null`` for optional fields."""
    text = raw.strip()
    ftype = _CONFIG_FIELDS[key]
    members = [t for t in typing.get_args(ftype) if t is not type(None)] or [ftype]
    if text.lower() in _NONE_WORDS:
        if type(None) not in typing.get_args(ftype):
            raise ValueError(f"sweep {key}: {key} cannot be None")
        return None
    try:
        return coerce(key, text, ftype)
    except (TypeError, ValueError):
        raise ValueError(f"sweep {key}: {raw!r} is not a valid {members[0].__name__}") from None


def parse_sweep(specs: str | Sequence[str] | None) -> list[dict]:
    """Override dicts for ``key=v1,v2,...`` specs; several specs give their product (first key outermost).

    ``parse_sweep("threshold=0.9,0.7")`` -> ``[{"threshold": 0.9}, {"threshold": 0.7}]``;
    ``parse_sweep(["threshold=0.9,0.5", "block_length=16,32"])`` -> 4 points. Keys are DecodeConfig fields
    (``-`` may stand for ``_``); values are typed after the field (``none`` for optional fields). No spec
    gives ``[{}]``: one run with the base config.
    """
    if specs is None:
        return [{}]
    if isinstance(specs, str):
        specs = [specs]
    axes: dict[str, list] = {}
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"sweep {spec!r}: expected key=v1,v2,... (e.g. threshold=0.9,0.7,0.5)")
        key, values = spec.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in _CONFIG_FIELDS:
            raise ValueError(f"sweep {spec!r}: unknown decoding option {key!r}; known: {sorted(_CONFIG_FIELDS)}")
        if key in axes:
            raise ValueError(f"sweep key {key!r} given twice")
        parts = [v for v in values.split(",") if v.strip()]
        if not parts:
            raise ValueError(f"sweep {spec!r}: no values")
        typed = [_coerce(key, v) for v in parts]
        if len({json.dumps(v) for v in typed}) != len(typed):
            raise ValueError(f"sweep {spec!r}: repeated value")
        axes[key] = typed
    if not axes:
        return [{}]
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def sweep_configs(base: DecodeConfig | Mapping, points: Sequence[Mapping]) -> list[DecodeConfig]:
    """One validated DecodeConfig per sweep point (base settings overridden by the point).

    ``base`` may be a dict that is not valid on its own (e.g. ``policy="entropy"`` without a threshold
    when the sweep sets it). Raises ValueError for a point that is invalid, or that sweeps an option the
    policy ignores (``threshold`` under a fixed-count policy, ``steps`` under a threshold policy).
    """
    base = base.to_dict() if isinstance(base, DecodeConfig) else dict(base)
    configs, seen = [], set()
    for point in points:
        merged = {**base, **point}
        try:
            cfg = DecodeConfig.from_dict(merged)
        except ValueError as err:
            where = f" (sweep point {dict(point)})" if point else ""
            raise ValueError(f"invalid decoding config{where}: {err}") from None
        if "threshold" in point and cfg.policy in FIXED_COUNT_POLICIES:
            raise ValueError(f"sweeping threshold has no effect with policy {cfg.policy!r}; "
                             f"use --policy {' or '.join(THRESHOLD_POLICIES)}")
        if "steps" in point and cfg.policy in THRESHOLD_POLICIES:
            raise ValueError(f"sweeping steps has no effect with policy {cfg.policy!r}; use "
                             f"--policy {' or '.join(FIXED_COUNT_POLICIES)}")
        key = config_key(cfg.to_dict())
        if key in seen:
            raise ValueError(f"sweep point {dict(point)} repeats an earlier configuration")
        seen.add(key)
        configs.append(cfg)
    return configs


def config_key(config: Mapping) -> str:
    return json.dumps(dict(config), sort_keys=True, default=str)


def short_config(cfg: DecodeConfig) -> str:
    if cfg.policy in THRESHOLD_POLICIES:
        s = f"{cfg.policy}@{cfg.threshold:g}"
    else:
        s = f"{cfg.policy} steps={cfg.steps}"
    return s + (" multi-block" if cfg.multi_block else "")
