"""`TADConfig`: the TAD training configuration (a `transformers.TrainingArguments` with the TAD fields),
and `load_config`: YAML file + `key=value` overrides, typed from the dataclass fields.

Model/LoRA field names follow TRL (`model_name_or_path`, `use_peft`, `lora_r`, …) so recipes read the
same as TRL ones. Defaults follow the release recipe (docs/method.md §4): LoRA r=128, α=128, dropout 0.05, AdamW
lr 2e-5 constant, weight decay 0.01, clip 1.0, one epoch.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from .data import LOSS_MODES
from .partition import check_delta

# δ of the named presets (docs/method.md §5). A small δ puts few tokens under hard CE (Quality); a large δ forces
# confidence on more upcoming tokens (Speed). The values are chosen by the testbed experiment (measured on
# the project's own tiny model, see docs/training.md); an explicit `delta` always wins over a preset.
PRESETS: dict[str, int] = {"quality": 4, "speed": 16}
# δ when neither `delta` nor `preset` is given: the release's value for LLaDA.
DEFAULT_DELTA = 8
TEACHER_MODES = ("auto", "disable_adapter", "frozen_copy")


@dataclass
class TADConfig(TrainingArguments):
    """TAD training configuration. Every `transformers.TrainingArguments` field is available as well."""

    # ---- model (TRL names)
    model_name_or_path: str | None = field(default=None, metadata={"help": "base model (folder or hub name)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow non-native families' own code"})
    model_dtype: str | None = field(default=None, metadata={
        "help": "dtype to load the model in (bfloat16, float16, float32, auto); None = the checkpoint's"})
    mask_token_id: int | None = field(default=None, metadata={
        "help": "override the mask id when the checkpoint does not name it"})
    use_peft: bool = field(default=True, metadata={"help": "train a LoRA adapter (else full fine-tuning)"})
    lora_r: int = 128
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "module names for LoRA; None = the family default (every linear layer of the blocks)"})
    # ---- data
    train_data: str | None = field(default=None, metadata={
        "help": "trajectory records: a .parquet file, a folder of .parquet shards, or a .jsonl file"})
    steps_per_trajectory: int | None = field(default=None, metadata={
        "help": "None = every step of every trajectory; k = k random steps per trajectory per epoch"})
    only_correct: bool = field(default=True, metadata={"help": "drop records with correct=False"})
    # ---- TAD loss
    delta: int | None = field(default=None, metadata={
        "help": "near horizon δ in decoding steps; None = the preset's δ, else 8"})
    preset: str | None = field(default=None, metadata={"help": "quality | speed: sets δ when delta is unset"})
    ce_weight: float = 1.0
    kl_weight: float = 1.0
    temperature: float = field(default=1.0, metadata={"help": "distillation temperature τ (KL term × τ²)"})
    loss_mode: str = field(default="tad", metadata={"help": "tad | ce_only"})
    teacher_mode: str = field(default="auto", metadata={
        "help": "auto (LoRA: disable_adapter; full FT: frozen_copy) | disable_adapter | frozen_copy"})
    # ---- TrainingArguments defaults changed for TAD (release recipe)
    output_dir: str | None = field(default="outputs/tad", metadata={"help": "where checkpoints and the result go"})
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "constant"
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    logging_steps: float = 10
    remove_unused_columns: bool = False
    report_to: str | list[str] | None = "none"

    def __post_init__(self):
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)} (or set delta)")
        if self.delta is None:
            self.delta = PRESETS[self.preset] if self.preset is not None else DEFAULT_DELTA
        self.delta = check_delta(self.delta)
        if self.loss_mode not in LOSS_MODES:
            raise ValueError(f"unknown loss_mode {self.loss_mode!r}; choose one of {', '.join(LOSS_MODES)}")
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(f"unknown teacher_mode {self.teacher_mode!r}; choose one of {', '.join(TEACHER_MODES)}")
        if self.teacher_mode == "disable_adapter" and not self.use_peft:
            raise ValueError("teacher_mode=disable_adapter needs a LoRA student (use_peft=true); full fine-tuning "
                             "uses teacher_mode=frozen_copy (or auto)")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.ce_weight < 0 or self.kl_weight < 0:
            raise ValueError(f"ce_weight ({self.ce_weight}) and kl_weight ({self.kl_weight}) must be >= 0")
        if self.steps_per_trajectory is not None and self.steps_per_trajectory < 1:
            raise ValueError(f"steps_per_trajectory must be null (all steps) or >= 1, got {self.steps_per_trajectory}")
        if self.use_peft and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        super().__post_init__()

    @property
    def resolved_teacher_mode(self) -> str:
        if self.teacher_mode != "auto":
            return self.teacher_mode
        return "disable_adapter" if self.use_peft else "frozen_copy"

    @property
    def needs_teacher(self) -> bool:
        return self.loss_mode != "ce_only" and self.kl_weight != 0

    def tad_dict(self) -> dict:
        """The TAD-specific fields (no TrainingArguments ones)."""
        base = {f.name for f in dataclasses.fields(TrainingArguments)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in base}


# ------------------------------------------------------------------------------------------- loading
def config_fields() -> dict[str, object]:
    """name -> resolved type of every settable TADConfig field."""
    hints = typing.get_type_hints(TADConfig)
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(TADConfig) if f.init}


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


def _coerce_union(name: str, value, tp):
    """`coerce` for `X | Y | None`: None where allowed, a value that already fits a member, else the first
    member that converts it."""
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


def coerce(name: str, value, tp):
    """Convert `value` (from YAML or a CLI string) to the field type `tp`; ValueError names the field."""
    if _is_union(tp):
        return _coerce_union(name, value, tp)
    if value is None:
        raise ValueError(f"{name} cannot be null")
    if tp is typing.Any:
        return value
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
        number = float(value)
        if number != int(number):
            raise ValueError(f"{name} expects an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} expects a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} expects a string, got {value!r}")
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


def _yaml_load(text: str):
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def _parse_override(item: str) -> tuple[str, object]:
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. delta=8 or lora_r=16)")
    raw = raw.strip()
    if raw == "":
        return key, None
    try:
        return key, _yaml_load(raw)
    except yaml.YAMLError:
        return key, raw


def _check_known(data: dict, source: dict, known) -> None:
    """Unknown keys are an error naming where each was given and the closest field names."""
    by_source: dict[str, list[str]] = {}
    for k in data:
        if k in known:
            continue
        close = difflib.get_close_matches(str(k), list(known), n=3, cutoff=0.6)
        by_source.setdefault(source.get(k, ""), []).append(
            f"{k!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if by_source:
        parts = [f"{where}: {'; '.join(keys)}".strip() for where, keys in by_source.items()]
        raise ValueError(f"unknown config key(s) {' and '.join(parts)}. See docs/training.md for the fields.")


def load_config(yaml_path: str | Path | None = None, overrides: list[str] | None = None, **kwargs) -> TADConfig:
    """Build a `TADConfig` from a YAML mapping, then `key=value` overrides (later wins), then kwargs.

    Values are converted to each field's declared type (so `learning_rate: 1e-4`, which YAML reads as a
    string, becomes a float; `lora_target_modules=q_proj,v_proj` becomes a list). Unknown keys raise a
    ValueError that lists the closest known names."""
    data: dict = {}
    source: dict = {}  # key -> where it was given, for the error messages
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = _yaml_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of field: value, got {type(loaded).__name__}")
        data.update(loaded)
        source.update(dict.fromkeys(loaded, f"in {yaml_path}"))
    for item in overrides or []:
        key, value = _parse_override(item)
        data[key] = value
        source[key] = "on the command line"
    data.update(kwargs)
    source.update(dict.fromkeys(kwargs, "in the keyword arguments"))
    _check_known(data, source, config_fields())
    known = config_fields()
    typed = {}
    for key, value in data.items():
        try:
            typed[key] = coerce(key, value, known[key])
        except (TypeError, ValueError) as err:
            raise ValueError(f"config key {key!r}: cannot use {value!r} (expected {known[key]}): {err}") from None
    return TADConfig(**typed)
