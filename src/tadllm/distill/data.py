"""Training examples of TAD: (trajectory, step s) pairs and the collator that builds student/teacher inputs.

A trajectory record (one parquet row; see docs/architecture.md) holds `prompt_ids` (student prompt),
`teacher_prompt_ids` (the privileged prompt with the reference), `tokens` and `reveal_step` (length L, the
compact trajectory) and `num_steps` S. One training example is a trajectory plus a step `s` in 0..S-1.

The collator builds, for a batch of examples:
- `input_ids`/`attention_mask`: student input `[prompt ; x(s)]`, left padded;
- `teacher_input_ids`/`teacher_attention_mask`: teacher input `[privileged prompt ; x(s)]`, left padded
  separately. In both, the response occupies the **last** `L` positions, so `logits[:, -L:]` of student
  and teacher refer to the same response positions (with different prompt lengths);
- `labels` (B, L): the trajectory token at positions still masked at `s`, -100 elsewhere;
- `near`/`distant` (B, L) bool: the temporal partition (mode "tad"), or all masked positions as near
  ("ce_only", the d3LLM-style baseline);
- `step` (B,);
- `trajectory` (B,): the dataset index of each example's trajectory (when the items carry it; used to
  name the batch in error messages).
Responses of different lengths in one batch are right-aligned; the extra columns are padding with no loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..decoding.loop import left_pad
from ..trajectories.storage import REQUIRED_FIELDS, TRAINING_FIELDS, read_trajectories, shard_files, state_at
from .partition import check_delta, masked_at, near_distant_masks

LOSS_MODES = ("tad", "ce_only")
IGNORE_INDEX = -100


def load_records(source) -> list[dict]:
    """Records of `source`: a path that `tadllm.trajectories.storage.read_trajectories` reads (only the
    training fields), or the records themselves (a list of dicts)."""
    if not isinstance(source, (str, Path)):
        return list(source)
    path = Path(source)
    records = read_trajectories(path, as_list=True, columns=list(TRAINING_FIELDS))
    if not records and path.is_dir() and not shard_files(path):
        raise ValueError(f"{path} holds no .parquet files; point train_data at the trajectory shards "
                         f"(a .parquet file, a folder of them, or a .jsonl file)")
    return records


# ---------------------------------------------------------------------------------------------- dataset
class TrajectoryDataset(Dataset):
    """(trajectory, step) examples.

    Args:
        records: a trajectory path or the records themselves (see `load_records`).
        mask_token_id: the model family's mask id (never appears in `tokens` or the prompts).
        vocab_size: the model's vocabulary size; every id must be below it (None: not checked).
        steps_per_trajectory: None = every step s in 0..S-1 of every trajectory; k = a random subset of
            min(k, S) steps per trajectory, redrawn each epoch (`set_epoch`), seeded by `seed`.
        only_correct: drop records whose `correct` field is False (the method keeps only verified
            trajectories; records without the field are kept).
    Steps after the last reveal (nothing left masked) carry no loss and are skipped.
    """

    def __init__(self, records, mask_token_id: int, vocab_size: int | None = None,
                 steps_per_trajectory: int | None = None, seed: int = 0, only_correct: bool = True):
        if steps_per_trajectory is not None and steps_per_trajectory < 1:
            raise ValueError(f"steps_per_trajectory must be None (all steps) or >= 1, got {steps_per_trajectory}")
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = vocab_size
        self.steps_per_trajectory = steps_per_trajectory
        self.seed = int(seed)
        self.epoch = 0
        self.problem_ids: list = []
        self.prompts: list[np.ndarray] = []
        self.teacher_prompts: list[np.ndarray] = []
        self.tokens: list[np.ndarray] = []
        self.reveal: list[np.ndarray] = []
        self.num_steps: list[int] = []
        self.metas: set[str] = set()  # the distinct `meta` values of the records (JSON strings)
        total = dropped = 0
        for i, rec in enumerate(load_records(records)):
            total += 1
            if only_correct and rec.get("correct") is False:
                dropped += 1
                continue
            self._add(i, rec)
        self.num_dropped_incorrect = dropped
        if not self.tokens:
            if total == 0:
                raise ValueError("the trajectory dataset is empty: train_data holds no records. Generate "
                                 "verified teacher trajectories first (tad trajectories …) and point train_data "
                                 "at the parquet shards.")
            raise ValueError(f"the trajectory dataset is empty: all {total} records have correct=False and "
                             f"only_correct is on. Use verified trajectories, or set only_correct=false.")
        # Usable steps per trajectory: 0 .. (last reveal step - 1); later states have nothing masked.
        self.usable_steps = np.array([int(r.max()) for r in self.reveal], dtype=np.int64)
        if steps_per_trajectory is None:
            self.counts = self.usable_steps
        else:
            self.counts = np.minimum(self.usable_steps, steps_per_trajectory)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self._steps: np.ndarray | None = None
        self.set_epoch(0)

    def _add(self, i: int, rec: dict) -> None:
        missing = [f for f in REQUIRED_FIELDS if f not in rec]
        pid = rec.get("problem_id", f"<record {i}>")
        if missing:
            raise ValueError(f"trajectory record {i} (problem_id={pid!r}) lacks field(s) {missing}; "
                             f"it has {sorted(rec)}")
        where = f"trajectory problem_id={pid!r} (sample_idx={rec.get('sample_idx')!r}, record {i})"
        tokens = np.asarray(rec["tokens"], dtype=np.int64)
        reveal = np.asarray(rec["reveal_step"], dtype=np.int64)
        prompt = np.asarray(rec["prompt_ids"], dtype=np.int64)
        tprompt = np.asarray(rec["teacher_prompt_ids"], dtype=np.int64)
        S = int(rec["num_steps"])
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError(f"{where}: tokens must be a non-empty list of ids")
        if reveal.shape != tokens.shape:
            raise ValueError(f"{where}: tokens has length {tokens.size} but reveal_step has length {reveal.size}")
        if S < 1:
            raise ValueError(f"{where}: num_steps must be >= 1, got {S}")
        if reveal.min() < 1 or reveal.max() > S:
            raise ValueError(f"{where}: reveal_step must lie in 1..num_steps={S}, found values in "
                             f"[{reveal.min()}, {reveal.max()}]")
        for name, ids in (("prompt_ids", prompt), ("teacher_prompt_ids", tprompt)):
            if ids.ndim != 1 or ids.size == 0:
                raise ValueError(f"{where}: {name} must be a non-empty list of ids")
        for name, ids in (("tokens", tokens), ("prompt_ids", prompt), ("teacher_prompt_ids", tprompt)):
            if ids.min() < 0:
                raise ValueError(f"{where}: {name} holds a negative id ({ids.min()})")
            if self.vocab_size is not None and ids.max() >= self.vocab_size:
                raise ValueError(f"{where}: {name} holds id {ids.max()} >= the model's vocabulary size "
                                 f"{self.vocab_size}; were the trajectories made with another model/tokenizer?")
            if (ids == self.mask_token_id).any():
                raise ValueError(f"{where}: {name} contains the mask token id {self.mask_token_id}; the "
                                 f"trajectories were made with a different mask id (another model family?) "
                                 f"or are not final responses")
        meta = rec.get("meta")
        if meta is not None:
            self.metas.add(meta if isinstance(meta, str) else json.dumps(meta, sort_keys=True, default=str))
        self.problem_ids.append(pid)
        self.prompts.append(prompt)
        self.teacher_prompts.append(tprompt)
        self.tokens.append(tokens)
        self.reveal.append(reveal)
        self.num_steps.append(S)

    @property
    def num_trajectories(self) -> int:
        return len(self.tokens)

    def set_epoch(self, epoch: int) -> None:
        """Redraw the step subset (only with `steps_per_trajectory`); deterministic in (seed, epoch)."""
        self.epoch = int(epoch)
        if self.steps_per_trajectory is None:
            self._steps = None
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self._steps = np.concatenate([rng.choice(int(n), size=int(k), replace=False)
                                      for n, k in zip(self.usable_steps, self.counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, idx: int) -> tuple[int, int]:
        """(trajectory index, step s) of example `idx`."""
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"example {idx} out of range for {len(self)} examples")
        traj = int(np.searchsorted(self.offsets, idx, side="right") - 1)
        step = idx - int(self.offsets[traj]) if self._steps is None else int(self._steps[idx])
        return traj, step

    def __getitem__(self, idx: int) -> dict:
        traj, step = self.locate(int(idx))
        return {"prompt_ids": self.prompts[traj], "teacher_prompt_ids": self.teacher_prompts[traj],
                "tokens": self.tokens[traj], "reveal_step": self.reveal[traj], "step": step,
                "trajectory": traj}


# ---------------------------------------------------------------------------------------------- collator
class TADCollator:
    """Builds a training batch from `TrajectoryDataset` items (see the module docstring)."""

    def __init__(self, mask_token_id: int, pad_token_id: int, delta: int | None = None, mode: str = "tad"):
        if mode not in LOSS_MODES:
            raise ValueError(f"unknown loss mode {mode!r}; choose one of {', '.join(LOSS_MODES)}")
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = int(pad_token_id)
        self.delta = check_delta(delta) if mode == "tad" or delta is not None else None
        self.mode = mode

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("empty batch")
        B = len(examples)
        L = max(len(e["tokens"]) for e in examples)
        tokens = torch.zeros((B, L), dtype=torch.long)
        # Padding columns of shorter responses get reveal_step 0: "already revealed", so no loss.
        reveal = torch.zeros((B, L), dtype=torch.long)
        valid = torch.zeros((B, L), dtype=torch.bool)
        for i, e in enumerate(examples):
            n = len(e["tokens"])
            tokens[i, L - n:] = torch.as_tensor(np.asarray(e["tokens"]), dtype=torch.long)
            reveal[i, L - n:] = torch.as_tensor(np.asarray(e["reveal_step"]), dtype=torch.long)
            valid[i, L - n:] = True
        step = torch.as_tensor([int(e["step"]) for e in examples], dtype=torch.long)
        state = state_at({"tokens": tokens, "reveal_step": reveal}, step, self.mask_token_id)
        masked = masked_at(reveal, step) & valid
        if self.mode == "tad":
            near, distant = near_distant_masks(reveal, step, self.delta)
            near, distant = near & valid, distant & valid
        else:  # ce_only
            near, distant = masked, torch.zeros_like(masked)
        labels = torch.where(masked, tokens, torch.full_like(tokens, IGNORE_INDEX))

        def build(key):
            seqs = []
            for i, e in enumerate(examples):
                n = len(e["tokens"])
                prompt = torch.as_tensor(np.asarray(e[key]), dtype=torch.long)
                seqs.append(torch.cat([prompt, state[i, L - n:]]))
            return left_pad(seqs, self.pad_token_id)

        input_ids, attention_mask = build("prompt_ids")
        teacher_input_ids, teacher_attention_mask = build("teacher_prompt_ids")
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "teacher_input_ids": teacher_input_ids, "teacher_attention_mask": teacher_attention_mask,
                 "labels": labels, "near": near, "distant": distant, "step": step}
        if all("trajectory" in e for e in examples):  # dataset index of each example's trajectory (for errors)
            batch["trajectory"] = torch.as_tensor([int(e["trajectory"]) for e in examples], dtype=torch.long)
        return batch

