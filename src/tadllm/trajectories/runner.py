"""`generate_trajectories`: the teacher decodes every problem with the reference in its prompt; verified
trajectories are stored in the compact (tokens, reveal_step) form, sharded by rank, resumable by chunk.

Resume protocol (per rank r of W; rank r owns problems i with i % W == r, in input order):
- its problems are cut into fixed chunks of `chunk_size`; chunk c always holds the same problems and
  writes the same file `shard-r{r:03d}-{c:05d}.parquet`;
- a finished chunk is first written to a hidden temporary file, fsynced and `os.replace`d into place,
  and only then one JSON line naming the chunk and its problem ids is appended (single write + fsync) to
  `done-r{r}.jsonl`;
- on restart, chunks listed in the done log are skipped; a trailing line cut off by a kill is dropped.
  A chunk whose shard was written but whose done line was not is simply decoded again and its shard
  replaced, so a kill at any moment leaves neither duplicates nor holes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

from tadllm.decoding import DecodeConfig
from tadllm.decoding import generate as decode_generate
from tadllm.models.family import encode_prompt  # the prompt encoding of evaluation too
from tadllm.progress import StepProgress

from . import storage

KEEP_MODES = ("correct", "all")
DEFAULT_CHUNK_SIZE = 256
# manifest keys that may change between a run and its resumption (they do not change what a chunk holds)
_RESUMABLE_CHANGES = ("batch_size", "created", "tadllm_version", "tokenizer", "model_vocab_size")


def default_trajectory_decode_config(**overrides) -> DecodeConfig:
    """The release's sampler for trajectories: LLaDA low-confidence remasking, 1 token per step
    (steps = gen_length = 256), semi-autoregressive blocks of 32, temperature 0.7 (math; use 0 for code)."""
    cfg = dict(gen_length=256, block_length=32, policy="low_confidence", steps=256, temperature=0.7)
    cfg.update(overrides)
    return DecodeConfig(**cfg)


def _require_tokenizer(tokenizer) -> None:
    if tokenizer is None:
        raise ValueError(
            "trajectory generation needs the model's tokenizer (to build prompts and decode responses), but "
            "the checkpoint was loaded without one (no tokenizer files in its folder). Copy the tokenizer "
            "files (tokenizer.json, tokenizer_config.json, ...) into the checkpoint folder."
        )


def decode_seed(seed: int, rank: int, chunk: int, sample_idx: int) -> int:
    """The decoding seed of one (rank, chunk, sample index): stable across runs and processes."""
    digest = hashlib.sha256(f"tadllm-trajectories/{seed}/{rank}/{chunk}/{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def _model_name(model, model_name):
    if model_name:
        return str(model_name)
    for obj in (model, getattr(model, "config", None)):
        name = getattr(obj, "name_or_path", None) or getattr(obj, "_name_or_path", None)
        if name:
            return str(name)
    return type(model).__name__


def _problems_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


def _check_manifest(out: Path, manifest: dict) -> None:
    """Write the manifest, or on resume check that the existing one describes the same run."""
    path = out / storage.MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(manifest) if k not in _RESUMABLE_CHANGES
                      and old.get(k) != manifest.get(k))
        if diff:
            lines = [f"  {k}: {json.dumps(old.get(k))} (existing) != {json.dumps(manifest.get(k))} (now)"
                     for k in diff]
            raise ValueError(
                f"{out} already holds trajectories of a different run; resuming would mix them:\n"
                + "\n".join(lines) + "\nUse a new --out directory (or delete this one) to start over.")
        return
    storage.atomic_write_json(path, manifest)


def _check_prompt_lengths(model, tokenizer, family, task, examples, template, gen_length: int) -> None:
    """Fail before anything is decoded or written when a teacher prompt + the canvas exceeds the model's
    maximum sequence length (the decoding engine would only find out at that problem's chunk)."""
    from tadllm.decoding.state import max_positions, overlong_prompts

    if max_positions(model) is None:
        return  # no limit: nothing to encode
    lengths = {i: len(encode_prompt(tokenizer, family, task.privileged_prompt(ex, template)))
               for i, ex in enumerate(examples)}
    limit, too_long = overlong_prompts(model, lengths, gen_length)
    if too_long:
        first, n = next(iter(too_long.items()))
        raise ValueError(f"problem {examples[first].id!r}: its teacher prompt has {n} tokens + gen_length "
                         f"{gen_length} > the model's maximum sequence length {limit}; shorten it, lower "
                         f"--gen-length or drop that problem")


def _valid_done(done: list[dict], chunks: list[list[int]], ids: list[str], out: Path) -> dict[int, dict]:
    """Done-log entries by chunk index, checked against the chunking of this run."""
    by_chunk: dict[int, dict] = {}
    for entry in done:
        c = entry["chunk"]
        if not 0 <= c < len(chunks) or entry["problem_ids"] != [ids[i] for i in chunks[c]]:
            raise ValueError(f"{out}: done log entry for chunk {c} does not match this run's problems; "
                             f"use a new --out directory")
        if entry.get("shard") and not (out / entry["shard"]).exists():
            continue  # shard deleted by hand: decode the chunk again
        by_chunk[c] = entry
    return by_chunk


def _check_arguments(tokenizer, keep, samples_per_problem, batch_size, chunk_size, rank, world_size) -> None:
    _require_tokenizer(tokenizer)
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    if samples_per_problem < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError("samples_per_problem, batch_size and chunk_size must be >= 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


def _problem_ids(examples: list) -> list[str]:
    """The problems' ids as strings; a ValueError when there are none or an id repeats."""
    if not examples:
        raise ValueError("no problems to decode: the task's dataset is empty (check --data, --split and --limit)")
    ids = [str(ex.id) for ex in examples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"problem ids must be unique (resume and sharding rely on them); repeated: {dup}")
    return ids


def _identity(model, tokenizer, family, task, model_name, model_revision, template, seed) -> dict:
    """What the records' `meta` and the manifest say about the run's model, tokenizer and prompts."""
    return {
        "format_version": storage.FORMAT_VERSION,
        "task": getattr(task, "name", type(task).__name__),
        "model": _model_name(model, model_name),
        "model_revision": model_revision,
        "family": family.name,
        "tokenizer": getattr(tokenizer, "name_or_path", None),
        "tokenizer_hash": storage.tokenizer_fingerprint(tokenizer),
        "mask_token_id": family.mask_token_id,
        "stop_token_ids": family.stop_token_ids,
        "vocab_size": len(tokenizer),
        "model_vocab_size": getattr(getattr(model, "config", None), "vocab_size", None),
        "template": template,
        "seed": seed,
    }


def generate_trajectories(model, tokenizer, family, task, examples: Sequence, decode_config: DecodeConfig | None = None,
                          out_dir: str | os.PathLike = "trajectories", samples_per_problem: int = 1,
                          batch_size: int = 32, keep: str = "correct", template: str | None = None, seed: int = 0,
                          model_name: str | None = None, model_revision: str | None = None, rank: int = 0,
                          world_size: int = 1, progress: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict:
    """Decode the teacher (privileged prompt) on this rank's problems, verify, store; return the summary.

    Rank `rank` of `world_size` takes problems `i % world_size == rank`. With world_size 1 the returned dict
    is `summary.json`; otherwise it is this rank's `summary-r{rank}.json` (the merged `summary.json` is
    written by whichever rank finishes last, or by `summarize(out_dir)`).
    """
    _check_arguments(tokenizer, keep, samples_per_problem, batch_size, chunk_size, rank, world_size)
    decode_config = decode_config or default_trajectory_decode_config()
    decode_config.validate()
    examples = list(examples)
    ids = _problem_ids(examples)
    mine = list(range(rank, len(examples), world_size))
    _check_prompt_lengths(model, tokenizer, family, task, [examples[i] for i in mine], template,
                          decode_config.gen_length)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = _identity(model, tokenizer, family, task, model_name, model_revision, template, seed)
    _check_manifest(out, _manifest(identity, decode_config, ids, samples_per_problem=samples_per_problem, keep=keep,
                                   world_size=world_size, chunk_size=chunk_size, batch_size=batch_size))

    chunks = [mine[i:i + chunk_size] for i in range(0, len(mine), chunk_size)]
    start = time.perf_counter()
    with storage._locked(out / f".lock-r{rank}", blocking=False):
        for stale in out.glob(f".shard-r{rank:03d}-*.tmp*"):  # tadllm.io's (and older) temporaries
            stale.unlink(missing_ok=True)
        done_path = out / storage.done_name(rank)
        done = _valid_done(storage.read_done(done_path, repair=True), chunks, ids, out)
        base_summary = {"task": identity["task"], "model": identity["model"], "rank": rank,
                        "world_size": world_size, "problems": len(mine), "keep": keep,
                        "samples_per_problem": samples_per_problem}
        bar = _progress_bar(progress and rank == 0, len(mine) * samples_per_problem,
                            sum(len(e["problem_ids"]) for e in done.values()) * samples_per_problem)
        _postfix(bar, storage.rank_summary(list(done.values()), base_summary))
        try:
            for c, idxs in enumerate(chunks):
                if c in done:
                    continue
                entry = _run_chunk(model, tokenizer, family, task, [examples[i] for i in idxs], c, out,
                                   decode_config, identity, samples_per_problem, batch_size, keep, template,
                                   seed, rank, bar)
                storage.append_done(done_path, entry)
                done[c] = entry
                _postfix(bar, storage.rank_summary(list(done.values()), base_summary))
        finally:
            if bar is not None:
                bar.close()
        summary = _write_rank_summary(out, rank, done, base_summary, time.perf_counter() - start)
    merged = storage.summarize(out)
    return merged if world_size == 1 else summary


def _manifest(identity: dict, decode_config: DecodeConfig, ids: list[str], **settings) -> dict:
    """What `manifest.json` says about a run: its identity, decoding, settings (samples per problem, keep,
    world size, chunk and batch size) and problems."""
    return {**identity, "decode_config": dataclasses.asdict(decode_config), **settings,
            "n_problems": len(ids), "problems_sha256": _problems_hash(ids),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tadllm_version": _version()}


def _write_rank_summary(out: Path, rank: int, done: dict[int, dict], base_summary: dict, elapsed_s: float) -> dict:
    """This rank's summary of its finished chunks, written to `summary-r{rank}.json`."""
    summary = storage.rank_summary([done[c] for c in sorted(done)], base_summary)
    summary["elapsed_s"] = round(elapsed_s, 3)
    summary["out_dir"] = str(out)
    storage.atomic_write_json(out / storage.summary_name(rank), summary)
    return summary


def _run_chunk(model, tokenizer, family, task, exs, chunk, out, decode_config, identity, k_samples, batch_size,
               keep, template, seed, rank, bar) -> dict:
    student = [encode_prompt(tokenizer, family, task.user_prompt(ex)) for ex in exs]
    teacher = [encode_prompt(tokenizer, family, task.privileged_prompt(ex, template)) for ex in exs]
    stop = set(family.stop_token_ids)
    rows = []  # (example index, sample index, tokens, reveal, text, meta)
    for k in range(k_samples):
        cfg = dataclasses.replace(decode_config, seed=decode_seed(seed, rank, chunk, k))
        meta = json.dumps({**identity, "decode_config": dataclasses.asdict(cfg), "rank": rank, "chunk": chunk},
                          sort_keys=True)
        steps = None if bar is None else StepProgress(bar)  # the bar moves at every step, not per batch
        res = decode_generate(model, family, teacher, cfg, batch_size=batch_size,
                              progress=steps and steps.done, on_step=steps and steps.on_step)
        tokens, reveal, n_tok = res.tokens.tolist(), res.reveal_step.tolist(), res.num_tokens.tolist()
        for j in range(len(exs)):
            if family.mask_token_id in tokens[j] or min(reveal[j]) < 1:
                raise RuntimeError(f"decoding left masked positions in problem {exs[j].id}; the sampler must "
                                   f"reveal every position for a trajectory to be stored")
            body = tokens[j][:n_tok[j]]
            assert not stop.intersection(body)
            text = tokenizer.decode(body, skip_special_tokens=True)
            rows.append((j, k, tokens[j], reveal[j], text, meta))
    verdicts = [bool(v) for v in task.score_batch([r[4] for r in rows], [exs[r[0]] for r in rows])]
    if len(verdicts) != len(rows):
        raise RuntimeError(f"task.score_batch returned {len(verdicts)} verdicts for {len(rows)} responses")
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1]))  # problem, then sample
    records = []
    for i in order:
        j, k, toks, rev, text, meta = rows[i]
        if keep == "correct" and not verdicts[i]:
            continue
        answer = task.extract_answer(text)
        records.append({
            "problem_id": str(exs[j].id), "sample_idx": k, "prompt_ids": student[j],
            "teacher_prompt_ids": teacher[j], "tokens": toks, "reveal_step": rev, "num_steps": max(rev),
            "text": text, "answer": None if answer is None else str(answer), "correct": verdicts[i],
            "meta": meta,
        })
    shard = None
    if records:
        shard = storage.shard_name(rank, chunk)
        storage.write_shard(out / shard, records)
    correct_problems = {rows[i][0] for i in range(len(rows)) if verdicts[i]}
    return {"chunk": chunk, "problem_ids": [str(ex.id) for ex in exs], "shard": shard,
            "samples": len(rows), "correct": sum(verdicts), "kept": len(records),
            "problems_with_correct": len(correct_problems)}


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tadllm.progress import sample_bar

    return sample_bar(total, "trajectories", "traj", initial=initial, smoothing=0.1)


def _postfix(bar, summary: dict) -> None:
    if bar is None:
        return
    acc = summary["teacher_accuracy"]
    bar.set_postfix(acc="-" if acc is None else f"{100 * acc:.1f}%", kept=summary["kept"], refresh=False)


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("tadllm")
    except Exception:  # noqa: BLE001 - not installed (plain source checkout)
        return None
