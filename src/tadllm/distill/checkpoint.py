"""Checkpoints of a training run: which `checkpoint-N` folder to resume from, and saved tokenizers that
load in transformers 4.x and 5.x alike."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .config import TADConfig

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint folder by the HF Trainer


def checkpoint_complete(folder: str | Path) -> bool:
    """True when a `checkpoint-*` folder was fully written: the Trainer writes `trainer_state.json` after the
    weights, optimizer, scheduler and RNG states, so a folder cut off by a kill lacks it (or holds a
    truncated one)."""
    try:
        json.loads((Path(folder) / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The `checkpoint-N` folder with the largest N that is complete (see `checkpoint_complete`);
    incomplete ones (a save interrupted by a kill) are skipped with a warning."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = []
    for p in out.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    for _, p in sorted(found, reverse=True):
        if checkpoint_complete(p):
            return str(p)
        logger.warning("skipping %s: incomplete checkpoint (no readable %s; interrupted while saving?)",
                       p, TRAINER_STATE)
    return None


def resolve_resume(config: TADConfig):
    """None, or the checkpoint to resume from: `true` = the last complete one in output_dir (must exist),
    `auto` = the last complete one if any, else a path (which must be a complete checkpoint)."""
    value = config.resume_from_checkpoint
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("", "false", "no", "none")):
        return None
    out = Path(config.output_dir)
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "auto", "last")):
        last = last_complete_checkpoint(out)
        if last is None and str(value).lower() not in ("auto",):
            raise FileNotFoundError(f"resume_from_checkpoint={value}: no complete checkpoint-* folder in {out}; "
                                    f"use resume_from_checkpoint=auto to start fresh when there is none")
        return last
    if not Path(value).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: {value} is not a checkpoint folder")
    if not checkpoint_complete(value):
        raise FileNotFoundError(f"resume_from_checkpoint: {value} is incomplete (no readable {TRAINER_STATE}; "
                                f"was its save interrupted?); pass an earlier checkpoint")
    return value


def portable_tokenizer_config(folder: str | Path) -> None:
    """transformers 5 saves fast tokenizers as "TokenizersBackend", a class 4.x cannot load;
    "PreTrainedTokenizerFast" loads the same tokenizer.json in both."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.exists() or not (Path(folder) / "tokenizer.json").exists():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") == "TokenizersBackend":
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
