"""`TADTrainer`: a `transformers.Trainer` whose loss is the TAD loss; `build_trainer`, `train`, `save_result`.

Teacher logits (docs/method.md §4; `tadllm.distill.teacher`):
- LoRA student (`teacher_mode` disable_adapter, the default with `use_peft`): the same module with the
  adapter disabled, in eval mode, under `torch.no_grad()` (`as_teacher`) — exactly the base weights, no
  second copy. Accelerate/DDP/DeepSpeed wrappers are unwrapped to reach the `PeftModel`.
- Full fine-tuning (`teacher_mode` frozen_copy): `frozen_copy` of the model, made once when the trainer is
  built. (Not for DeepSpeed ZeRO-3 / FSDP-sharded models.)
Both student and teacher logits go through `tadllm.models.aligned_logits`; only the response positions
(the last L of each input, see `tadllm.distill.data`) are used.

Gradient accumulation: `compute_loss` returns the mean over this micro-batch's near/distant tokens. The
Trainer divides it by the number of accumulation steps (we set `loss_is_scaled_for_ga = False` for
transformers 5.x and `model_accepts_loss_kwargs = False` for 4.x, which also turns off the
`num_items_in_batch` path), so an optimizer step averages the micro-batch means: the same scale as one
batch of `per_device_train_batch_size * gradient_accumulation_steps` examples (identical when the token
counts per micro-batch are equal). Nothing here divides by the accumulation steps itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from ..models.family import ModelFamily, aligned_logits
from .checkpoint import portable_tokenizer_config, resolve_resume
from .config import TADConfig
from .data import TADCollator, TrajectoryDataset
from .lora import apply_lora
from .loss import tad_loss_rows
from .teacher import as_teacher, freeze, frozen_copy, peft_classes, teacher_parts

logger = logging.getLogger(__name__)
TAD_CONFIG_NAME = "tad_config.json"


def response_logits(logits: torch.Tensor, family: ModelFamily, length: int) -> torch.Tensor:
    """Aligned logits (index i predicts token i) of the last `length` positions, without copying the whole
    (B, T, V) tensor: shifted families need one extra position on the left."""
    if family.shift_logits:
        if logits.shape[1] < length + 1:
            raise ValueError(f"input of length {logits.shape[1]} has no prompt position before the "
                             f"{length}-token response (shifted-logit families need at least one)")
        return aligned_logits(logits[:, -(length + 1):], family)[:, 1:]
    return aligned_logits(logits[:, -length:], family)


def model_inputs(family: ModelFamily, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """Keyword arguments of one forward pass, as the decoding engine builds them."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if family.supports_position_ids:  # positions that skip the left padding, like tadllm.decoding
        kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    return kwargs


class _SetEpochCallback(TrainerCallback):
    """Redraws the dataset's step subset at each epoch (accelerate does not always forward set_epoch)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))


class TADTrainer(Trainer):
    """Trainer with the TAD loss. `args` is a `TADConfig`; `family` the model family from `load_model`.

    `teacher`: an explicit teacher module (frozen here); None = per `args.teacher_mode` (`frozen_copy` of
    `model` is made here for `frozen_copy`)."""

    # transformers >= 5: the loss we return is a per-micro-batch mean; let `training_step` divide it by the
    # number of accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: TADConfig | None = None, family: ModelFamily | None = None,
                 teacher: nn.Module | None = None, **kwargs):
        if not isinstance(args, TADConfig):
            raise TypeError("TADTrainer needs args=TADConfig(...)")
        if family is None:
            raise ValueError("TADTrainer needs the model family (from tadllm.models.load_model)")
        self.family = family
        self.teacher_mode = args.resolved_teacher_mode
        self._teacher_parts = None  # (peft model, teacher_parts(peft model)) once the teacher has run
        if teacher is None and args.needs_teacher and self.teacher_mode == "frozen_copy":
            teacher = frozen_copy(model)
        self.teacher = None if teacher is None else freeze(teacher)
        if args.needs_teacher and self.teacher is None and not isinstance(model, peft_classes()):
            raise ValueError("teacher_mode=disable_adapter needs a peft LoRA model (use_peft=true), or pass a "
                             "frozen teacher / use teacher_mode=frozen_copy")
        kwargs = _processing_class_kwarg(kwargs)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        dataset = kwargs.get("train_dataset")
        if hasattr(dataset, "set_epoch"):
            callbacks.append(_SetEpochCallback(dataset))
        super().__init__(model=model, args=args, callbacks=callbacks, **kwargs)
        # transformers 4.x: the Trainer divides by the accumulation steps only when the model does not take
        # loss kwargs; this also keeps `num_items_in_batch` out (see the module docstring).
        self.model_accepts_loss_kwargs = False
        self._tad_sums: dict[str, float | torch.Tensor] = {}
        self._tad_count = 0

    # ------------------------------------------------------------------------------------ teacher
    def _peft_model(self, model):
        unwrapped = self.accelerator.unwrap_model(model) if hasattr(self, "accelerator") else model
        for candidate in (unwrapped, getattr(unwrapped, "module", None)):
            if isinstance(candidate, peft_classes()):
                return candidate
        raise TypeError(f"teacher_mode=disable_adapter needs a peft model; got {type(unwrapped).__name__}")

    @torch.no_grad()
    def teacher_logits(self, model, inputs: dict) -> torch.Tensor:
        """Aligned teacher logits (B, L, V) over the response positions of `inputs`."""
        length = inputs["labels"].shape[1]
        kwargs = model_inputs(self.family, inputs["teacher_input_ids"], inputs["teacher_attention_mask"])
        if self.teacher is not None:
            device = inputs["teacher_input_ids"].device
            if next(self.teacher.parameters()).device != device:
                self.teacher.to(device)
            out = self.teacher(**kwargs)
        else:
            peft_model = self._peft_model(model)
            if self._teacher_parts is None or self._teacher_parts[0] is not peft_model:
                self._teacher_parts = (peft_model, teacher_parts(peft_model))
            # Call the wrapped module (DDP / FSDP / DeepSpeed) so sharded parameters are gathered as in the
            # student's forward; the adapter is off, so these are the base weights.
            with as_teacher(peft_model, self._teacher_parts[1]):
                out = model(**kwargs)
        return response_logits(out.logits, self.family, length)

    # ------------------------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: TADConfig = self.args
        labels, near, distant = inputs["labels"], inputs["near"].bool(), inputs["distant"].bool()
        length = labels.shape[1]
        teacher_rows = None
        if args.kl_weight != 0 and bool(distant.any()):
            teacher_rows = self.teacher_logits(model, inputs)[distant]  # keep only the rows, free the rest
        outputs = model(**model_inputs(self.family, inputs["input_ids"], inputs["attention_mask"]))
        student = response_logits(outputs.logits, self.family, length)
        loss, stats = tad_loss_rows(student[near], labels[near], student[distant], teacher_rows,
                                    ce_weight=args.ce_weight, kl_weight=args.kl_weight,
                                    temperature=args.temperature)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(self._nonfinite_message(loss, stats, inputs, student[near | distant],
                                                             teacher_rows))
        if model.training:
            self._accumulate(stats)
        if return_outputs:
            return loss, {"logits": student}
        return loss

    def _nonfinite_message(self, loss, stats, inputs, student_rows, teacher_rows) -> str:
        """Which step and which batch gave a NaN/inf loss, and where the non-finite values are."""
        steps = inputs["step"].tolist()
        dataset = self.train_dataset
        if "trajectory" in inputs and hasattr(dataset, "problem_ids"):
            names = [f"{dataset.problem_ids[t]!s}@s={s}" for t, s in zip(inputs["trajectory"].tolist(), steps)]
        else:
            names = [f"example {i}@s={s}" for i, s in enumerate(steps)]
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        where = [name for name, rows in (("student logits", student_rows), ("teacher logits", teacher_rows))
                 if rows is not None and rows.numel() and not bool(torch.isfinite(rows).all())]
        epoch = self.state.epoch
        return (f"non-finite TAD loss {loss.item()} at global step {self.state.global_step}"
                f"{'' if epoch is None else f' (epoch {epoch:.2f})'}, in the micro-batch of {len(steps)} "
                f"example(s) [problem_id@step: {shown}]; loss_ce={stats['loss_ce'].item()}, "
                f"loss_kl={stats['loss_kl'].item()}, near={stats['n_near']}, distant={stats['n_distant']}; "
                f"NaN/inf values in: {', '.join(where) or 'the loss only (logits finite)'}. Lower the learning "
                f"rate, check the model dtype (bf16 instead of fp16) and the data")

    def _accumulate(self, stats: dict) -> None:
        for key in ("loss_ce", "loss_kl"):
            self._tad_sums[key] = self._tad_sums.get(key, 0.0) + stats[key].float()
        for key in ("n_near", "n_distant"):
            self._tad_sums[key] = self._tad_sums.get(key, 0) + stats[key]
        self._tad_count += 1

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Adds `loss_ce`, `loss_kl` (means over the micro-batches since the last log) and the mean
        near/distant token counts per micro-batch to training logs (this process's batches)."""
        if "loss" in logs and self._tad_count:
            n = self._tad_count
            logs["loss_ce"] = round(float(self._tad_sums["loss_ce"]) / n, 4)
            logs["loss_kl"] = round(float(self._tad_sums["loss_kl"]) / n, 4)
            logs["near_tokens"] = round(self._tad_sums["n_near"] / n, 2)
            logs["distant_tokens"] = round(self._tad_sums["n_distant"] / n, 2)
            self._tad_sums, self._tad_count = {}, 0
        super().log(logs, *args, **kwargs)


def _processing_class_kwarg(kwargs: dict) -> dict:
    """transformers >= 4.46 names the tokenizer `processing_class`; older releases `tokenizer`."""
    params = inspect.signature(Trainer.__init__).parameters
    for given, wanted in (("tokenizer", "processing_class"), ("processing_class", "tokenizer")):
        if given in kwargs and given not in params and wanted in params:
            kwargs[wanted] = kwargs.pop(given)
    return kwargs


def build_trainer(config: TADConfig, **trainer_kwargs) -> TADTrainer:
    """Load the model (`tadllm.models.load_model`), apply LoRA when `use_peft`, build the trajectory dataset
    and collator, and return a ready `TADTrainer`."""
    from ..models import load_model

    if not config.model_name_or_path:
        raise ValueError("model_name_or_path is not set (the base model folder or hub name)")
    if not config.train_data:
        raise ValueError("train_data is not set (trajectory parquet file/folder or .jsonl)")
    config.remove_unused_columns = False  # the collator needs every field of the examples
    model, tokenizer, family = load_model(config.model_name_or_path, dtype=config.model_dtype,
                                          device=config.device, trust_remote_code=config.trust_remote_code,
                                          mask_token_id=config.mask_token_id)
    vocab_size = getattr(model.config, "vocab_size", None)
    dataset = TrajectoryDataset(config.train_data, mask_token_id=family.mask_token_id, vocab_size=vocab_size,
                                steps_per_trajectory=config.steps_per_trajectory,
                                seed=config.data_seed if config.data_seed is not None else config.seed,
                                only_correct=config.only_correct)
    if dataset.num_dropped_incorrect:
        logger.warning("dropped %d trajectories with correct=False", dataset.num_dropped_incorrect)
    check_trajectory_metadata(dataset, tokenizer, family)
    if config.steps_per_trajectory is not None and config.dataloader_persistent_workers \
            and config.num_train_epochs > 1:
        logger.warning("dataloader_persistent_workers keeps the first epoch's step subset in the workers; "
                       "turn it off to redraw steps_per_trajectory each epoch")
    collator = TADCollator(family.mask_token_id, family.fill_token_id, delta=config.delta, mode=config.loss_mode)
    model.train()
    if config.use_peft:
        model = apply_lora(model, config, family)
    if tokenizer is not None:
        trainer_kwargs.setdefault("tokenizer", tokenizer)
    return TADTrainer(model=model, args=config, family=family, train_dataset=dataset, data_collator=collator,
                      **trainer_kwargs)


def check_trajectory_metadata(dataset, tokenizer, family: ModelFamily) -> None:
    """`tadllm.trajectories.check_compatible` on the records' `meta` (mask id, vocabulary, tokenizer
    fingerprint, family of the model that made them). Records without such metadata (hand-made data) are
    not checked; the per-record id checks of `TrajectoryDataset` still apply."""
    from ..trajectories.storage import check_compatible

    keys = ("mask_token_id", "vocab_size", "tokenizer_hash", "family")
    metas = []
    for text in getattr(dataset, "metas", ()):
        try:
            meta = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(meta, dict) and any(meta.get(k) is not None for k in keys):
            metas.append(meta)
    if metas:
        check_compatible(metas, tokenizer, family)


def save_result(trainer: TADTrainer, output_dir: str | Path | None = None) -> Path:
    """Save the adapter (LoRA) or the full model, the tokenizer and `tad_config.json` (and the base's
    `testbed.json` when it has one: `tadllm.testbed.settings`)."""
    out = Path(output_dir or trainer.args.output_dir)
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        portable_tokenizer_config(out)
        record = {"tad": trainer.args.tad_dict(), "family": dataclasses.asdict(trainer.family),
                  "teacher_mode": trainer.teacher_mode, "training_args": json.loads(trainer.args.to_json_string())}
        (out / TAD_CONFIG_NAME).write_text(json.dumps(record, indent=2, default=str))
        from ..testbed.settings import copy_settings

        copy_settings(trainer.args.model_name_or_path, out)  # the student keeps the base's task settings
    return out


def train(config: TADConfig) -> TADTrainer:
    """Build the trainer, train (resuming per `resume_from_checkpoint`), save to `output_dir`."""
    trainer = build_trainer(config)
    resume = resolve_resume(config)
    if resume:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    save_result(trainer)
    return trainer
