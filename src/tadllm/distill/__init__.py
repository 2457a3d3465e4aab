"""TAD distillation: the temporal partition, the loss, trajectory datasets, the trainer and LoRA merging.

Light modules (`partition`, `loss`) import only torch; the rest (transformers, peft) load on first use:
`from tadllm.distill import TADConfig, build_trainer, train` works and stays lazy until then.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "near_distant_masks": "partition", "masked_at": "partition", "check_delta": "partition",
    "tad_loss": "loss", "tad_loss_rows": "loss",
    "TrajectoryDataset": "data", "TADCollator": "data", "LOSS_MODES": "data",
    "TADConfig": "config", "load_config": "config", "PRESETS": "config", "DEFAULT_DELTA": "config",
    "TADTrainer": "trainer", "build_trainer": "trainer", "train": "trainer", "main_train": "cli",
    "response_logits": "trainer", "save_result": "trainer",
    "merge_adapter": "merge", "main_merge": "merge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
