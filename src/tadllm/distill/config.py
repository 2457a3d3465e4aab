"""`TADConfig`: the TAD training configuration (a `transformers.TrainingArguments` with the TAD fields),
and `load_config`: YAML file + `key=value` overrides, typed from the dataclass fields (`tadllm.config`, the
one configuration mechanism of `tad train` and `tad pretrain`).

Model/LoRA field names follow TRL (`model_name_or_path`, `use_peft`, `lora_r`, …) so recipes read the
same as TRL ones. Defaults follow the release recipe (docs/method.md §4): LoRA r=128, α=128, dropout 0.05, AdamW
lr 2e-5 constant, weight decay 0.01, clip 1.0, one epoch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from tadllm.config import build_config, coerce  # noqa: F401 - coerce re-exported
from tadllm.config import config_fields as _fields

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
    return _fields(TADConfig)


def load_config(yaml_path: str | Path | None = None, overrides: list[str] | None = None, **kwargs) -> TADConfig:
    """Build a `TADConfig` from a YAML mapping, then `key=value` overrides (later wins), then kwargs
    (`tadllm.config.build_config`, the mechanism `tad pretrain` uses too).

    Values are converted to each field's declared type (so `learning_rate: 1e-4`, which YAML reads as a
    string, becomes a float; `lora_target_modules=q_proj,v_proj` becomes a list). Unknown keys raise a
    ValueError that lists the closest known names."""
    return build_config(TADConfig, yaml_path, overrides, kwargs)
