"""Trajectory storage: the compact record format, parquet shards, the manifest and the run summaries.

One record per teacher trajectory. A trajectory of the standard (never re-masking) sampler is fully
described by two int arrays of length L: `tokens[i]`, the final token at position i, and `reveal_step[i]`,
the 1-based step at which position i was unmasked. The state after step s is
`x(s)_i = tokens[i] if reveal_step[i] <= s else MASK` (`state_at`); per-step snapshots are never stored.

Layout of an output directory (one run):

    manifest.json                  settings of the run (checked on resume)
    shard-r{rank:03d}-{chunk:05d}.parquet   records of one finished chunk of one rank
    done-r{rank}.jsonl             one JSON line per finished chunk (problem ids, shard, counts)
    summary-r{rank}.json           per-rank summary; summary.json merges them (`summarize`)

Only the standard library, pyarrow and (lazily) torch are imported here.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from tadllm.io import atomic_write, atomic_write_bytes  # noqa: F401 - atomic_write_bytes re-exported

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
SHARD_GLOB = "shard-r*-*.parquet"

SCHEMA = pa.schema([
    pa.field("problem_id", pa.string(), nullable=False),
    pa.field("sample_idx", pa.int32(), nullable=False),
    pa.field("prompt_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("teacher_prompt_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("tokens", pa.list_(pa.int32()), nullable=False),
    pa.field("reveal_step", pa.list_(pa.int32()), nullable=False),
    pa.field("num_steps", pa.int32(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("answer", pa.string()),
    pa.field("correct", pa.bool_(), nullable=False),
    pa.field("meta", pa.string(), nullable=False),
])
FIELDS = tuple(SCHEMA.names)


# ------------------------------------------------------------------------------------------ names


def shard_name(rank: int, chunk: int) -> str:
    return f"shard-r{rank:03d}-{chunk:05d}.parquet"


def done_name(rank: int) -> str:
    return f"done-r{rank}.jsonl"


def summary_name(rank: int) -> str:
    return f"summary-r{rank}.json"


# ------------------------------------------------------------------------------------ atomic files
# one implementation for the whole package: `tadllm.io` (hidden `.NAME.PID.tmp`, fsync, os.replace)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


# Dictionary encoding only for the repetitive string columns: on token-id lists from a large vocabulary the
# dictionary holds nearly every id once; plain + zstd level 9 is smaller (benchmarks/RESULTS.md, "Storage").
DICTIONARY_COLUMNS = ["problem_id", "text", "answer", "meta"]


def write_shard(path: str | os.PathLike, records: list[dict]) -> int:
    """Write records as one parquet file, atomically (tmp file + fsync + os.replace). Returns its size."""
    path = Path(path)
    table = records_to_table(records)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", compression_level=9,
                                                  use_dictionary=DICTIONARY_COLUMNS))
    return path.stat().st_size


def records_to_table(records: list[dict]) -> pa.Table:
    missing = [k for k in FIELDS if records and k not in records[0]]
    if missing:
        raise ValueError(f"trajectory records lack field(s) {missing}")
    return pa.Table.from_pylist([{k: r[k] for k in FIELDS} for r in records], schema=SCHEMA)


# ---------------------------------------------------------------------------------------- done log


def read_done(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """The complete JSON lines of a per-rank done log. A trailing line without its newline (a write cut off
    by a kill) is ignored, and with `repair=True` truncated away so that later appends start on a fresh
    line. A complete line that is not valid JSON is an error (the file was edited or corrupted)."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with open(path, "rb+") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    entries = []
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {n} is not valid JSON ({err}); remove it to resume") from err
    return entries


def append_done(path: str | os.PathLike, entry: dict) -> None:
    """Append one JSON line with a single write, then fsync."""
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ reading

# Fields a record needs to be trained on (`tadllm.distill.data`); `sample_idx`, `correct` and `meta` are
# read when present, the text fields (`text`, `answer`) only when asked for.
REQUIRED_FIELDS = ("problem_id", "prompt_ids", "teacher_prompt_ids", "tokens", "reveal_step", "num_steps")
TRAINING_FIELDS = REQUIRED_FIELDS + ("sample_idx", "correct", "meta")


def shard_files(path: str | os.PathLike) -> list[str]:
    """Parquet files of a trajectory set: a run directory (its `shard-*.parquet`; else every `.parquet` below
    it, hidden files and folders excluded: those are writers' temporaries), one file, or a glob."""
    path = str(path)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, SHARD_GLOB)))
        if not files:  # a directory of other parquet files (copied / re-sharded data)
            root = Path(path)
            files = sorted(str(f) for f in root.rglob("*.parquet")
                           if not any(part.startswith(".") for part in f.relative_to(root).parts))
        return files
    if os.path.isfile(path):
        return [path]
    files = sorted(glob.glob(path))
    if not files:
        raise FileNotFoundError(f"trajectory data {path} does not exist; write it first with `tad trajectories "
                                f"--model MODEL --task TASK --out {path}` (docs/training.md)")
    return files


def read_trajectories(path: str | os.PathLike, as_list: bool = False, columns: list[str] | None = None):
    """All records of a trajectory set as a `pyarrow.Table`, or with `as_list=True` as a list of dicts.

    `path`: a run directory or folder of parquet shards, a parquet file, a glob, or a `.jsonl` / `.json` file
    (hand-made records; a `.json` file holds a list, or {"records": [...]}). Records are ordered by file,
    then as written. `columns`: the fields to read (None: all); the `REQUIRED_FIELDS` among them must be
    present, the others are read where present. A file that cannot be read, a JSON row that is not an
    object or a file without a required field is a ValueError naming the file (and the line)."""
    p = Path(path)
    if p.is_file() and p.suffix in (".jsonl", ".json"):
        records = _json_records(p, columns)
        return records if as_list else pa.Table.from_pylist(records)
    tables = [_read_shard(f, columns) for f in shard_files(path)]
    if not tables:
        table = SCHEMA.empty_table()
        table = table if columns is None else table.select([c for c in columns if c in FIELDS])
    else:
        table = pa.concat_tables(tables, promote_options="default")
    return table.to_pylist() if as_list else table


def _required(columns: list[str] | None) -> list[str]:
    return list(REQUIRED_FIELDS) if columns is None else [c for c in columns if c in REQUIRED_FIELDS]


def _read_shard(path: str, columns: list[str] | None) -> pa.Table:
    try:
        names = pq.read_schema(path).names
        missing = [c for c in _required(columns) if c not in names]
        if missing:
            raise ValueError(f"{path}: trajectory file lacks column(s) {missing}; it has {names}")
        return pq.read_table(path, columns=None if columns is None else [c for c in columns if c in names])
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: cannot read trajectory parquet file ({err})") from err


def _json_rows(path: Path) -> list[tuple[str, Any]]:
    """(where, row) of a .jsonl file (one object per line) or a .json file (a list, or {"records": [...]})."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from err
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of trajectory records (or {{\"records\": [...]}})")
        return [(f"{path}, record {i + 1}", row) for i, row in enumerate(data)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}, line {lineno}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {lineno}: invalid JSON ({err.msg})") from err
    return rows


def _json_records(path: Path, columns: list[str] | None) -> list[dict]:
    records = []
    for where, row in _json_rows(path):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a trajectory record (a JSON object), got {type(row).__name__}")
        missing = [f for f in _required(columns) if f not in row]
        if missing:
            raise ValueError(f"{where}: trajectory record lacks field(s) {missing}; it has {sorted(row)}")
        records.append(row if columns is None else {k: row[k] for k in columns if k in row})
    return records


def state_at(record: Mapping, s, mask_id: int):
    """x(s): the response after step s (s = 0: all masks; s >= num_steps: the final tokens); the one
    definition of the state, `x(s)_i = tokens[i] if reveal_step[i] <= s else mask_id`.

    `record` holds `tokens` and `reveal_step` (a record dict, or anything with those keys). Lists give a
    list of ints; torch tensors (any leading batch dims) give a tensor, and then `s` may also be a tensor
    of one step per row (shape: the leading dims)."""
    tokens, reveal = record["tokens"], record["reveal_step"]
    if hasattr(tokens, "dim"):  # torch tensors, without importing torch here
        import torch

        if tokens.shape != reveal.shape:
            raise ValueError(f"tokens {tuple(tokens.shape)} and reveal_step {tuple(reveal.shape)} differ in shape")
        s = torch.as_tensor(s, device=reveal.device)
        if bool((s < 0).any()):
            raise ValueError(f"step must be >= 0, got {s.tolist()}")
        return torch.where(reveal <= s[..., None], tokens, torch.full_like(tokens, mask_id))
    if s < 0:
        raise ValueError(f"step must be >= 0, got {s}")
    if len(tokens) != len(reveal):
        raise ValueError(f"tokens ({len(tokens)}) and reveal_step ({len(reveal)}) differ in length")
    return [t if r <= s else mask_id for t, r in zip(tokens, reveal)]


# -------------------------------------------------------------------------------------- validation


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's token -> id map (added tokens included): equal for the same tokenizer
    whatever path it was loaded from."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _metas(obj) -> list[dict]:
    """The distinct meta dicts held by a table / record list / record / meta / run directory."""
    if isinstance(obj, (str, os.PathLike)) and os.path.exists(obj):
        p = Path(obj)
        if p.is_dir() and (p / MANIFEST).exists():
            return [json.loads((p / MANIFEST).read_text())]
        obj = read_trajectories(p, columns=["meta"])
    if isinstance(obj, pa.Table):
        if "meta" not in obj.column_names:
            raise ValueError("the table has no 'meta' column")
        return [json.loads(m) for m in set(obj.column("meta").to_pylist())]
    if isinstance(obj, str):
        return [json.loads(obj)]
    if isinstance(obj, Mapping):
        if "meta" in obj:
            return _metas(obj["meta"])
        return [dict(obj)]
    if isinstance(obj, Iterable):
        seen: dict[str, dict] = {}
        for item in obj:
            for m in _metas(item):
                seen.setdefault(json.dumps(m, sort_keys=True), m)
        return list(seen.values())
    raise TypeError(f"cannot read trajectory metadata from {type(obj).__name__}")


def check_compatible(table_or_meta, tokenizer, family) -> None:
    """Raise ValueError when trajectories were made with another mask token, vocabulary or tokenizer than
    the model about to use them. Accepts a pyarrow Table, a list of records, one record, a meta dict or
    JSON string, or a run directory / parquet path."""
    metas = _metas(table_or_meta)
    if not metas:
        raise ValueError("no trajectory metadata to check (empty trajectory set?)")
    problems = []
    fam_mask = getattr(family, "mask_token_id", None)
    vocab = len(tokenizer) if tokenizer is not None else None
    fingerprint = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    for meta in metas:
        src = f"trajectories of {meta.get('model', '?')} (tokenizer {meta.get('tokenizer', '?')})"
        if meta.get("mask_token_id") is not None and fam_mask is not None and meta["mask_token_id"] != fam_mask:
            problems.append(f"{src} use mask token id {meta['mask_token_id']}, the model uses {fam_mask}")
        if meta.get("vocab_size") is not None and vocab is not None and meta["vocab_size"] != vocab:
            problems.append(f"{src} have a vocabulary of {meta['vocab_size']} tokens, the model's tokenizer "
                            f"has {vocab}")
        if meta.get("tokenizer_hash") and fingerprint and meta["tokenizer_hash"] != fingerprint:
            problems.append(f"{src} were tokenized with a different tokenizer (fingerprint "
                            f"{meta['tokenizer_hash']} != {fingerprint} of {getattr(tokenizer, 'name_or_path', '?')})")
        if meta.get("family") and getattr(family, "name", None) and meta["family"] != family.name:
            problems.append(f"{src} come from a {meta['family']!r} model, the model is {family.name!r}")
    if problems:
        raise ValueError("trajectories are incompatible with this model:\n  - " + "\n  - ".join(
            dict.fromkeys(problems)) + "\nRegenerate them with this model (`tad trajectories`).")


# ------------------------------------------------------------------------------------------ summary


_SUM_KEYS = ("problems", "problems_done", "samples", "correct", "kept", "problems_with_correct", "shards")


def _finish(summary: dict) -> dict:
    s = summary
    s["teacher_accuracy"] = s["correct"] / s["samples"] if s["samples"] else None
    s["problem_pass_rate"] = s["problems_with_correct"] / s["problems_done"] if s["problems_done"] else None
    return s


def rank_summary(done: list[dict], base: dict) -> dict:
    """Summary of one rank from its done log (covers chunks of earlier, interrupted runs too)."""
    s = dict(base)
    s.update(problems_done=0, samples=0, correct=0, kept=0, problems_with_correct=0, shards=0)
    for e in done:
        s["problems_done"] += len(e["problem_ids"])
        s["samples"] += e["samples"]
        s["correct"] += e["correct"]
        s["kept"] += e["kept"]
        s["problems_with_correct"] += e["problems_with_correct"]
        s["shards"] += 1 if e.get("shard") else 0
    s["complete"] = s["problems_done"] == s["problems"]
    return _finish(s)


def summarize(out_dir: str | os.PathLike) -> dict:
    """Merge the per-rank `summary-r*.json` of a run into `summary.json` (returned). `complete` is true
    only when every rank of the manifest's world size has finished. Safe to call from several ranks at
    once (an exclusive lock serialises the merges, so the last rank to finish writes the full summary)."""
    out = Path(out_dir)
    with _locked(out / ".summary.lock"):
        parts = []
        for f in sorted(out.glob("summary-r*.json")):
            with contextlib.suppress(json.JSONDecodeError, OSError):
                parts.append(json.loads(f.read_text()))
        if not parts:
            raise FileNotFoundError(f"no per-rank summaries (summary-r*.json) in {out}")
        manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {}
        world = manifest.get("world_size", max(p.get("world_size", 1) for p in parts))
        merged = {k: sum(p.get(k, 0) for p in parts) for k in _SUM_KEYS}
        merged.update(
            task=parts[0].get("task"), model=parts[0].get("model"), keep=parts[0].get("keep"),
            samples_per_problem=parts[0].get("samples_per_problem"), world_size=world,
            ranks=sorted(p["rank"] for p in parts),
            complete=len({p["rank"] for p in parts}) == world and all(p.get("complete") for p in parts),
            elapsed_s=max(p.get("elapsed_s", 0.0) for p in parts),
        )
        if manifest.get("n_problems") is not None:
            merged["problems"] = manifest["n_problems"]
        merged = _finish(merged)
        atomic_write_json(out / SUMMARY, merged)
    return merged


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True):
    """An exclusive flock on `path` (released by the kernel if the process dies). The lock file is deleted
    on release, while still locked; a process that opened it before the deletion finds, once it holds the
    lock, that its file is no longer the one at `path` and locks the new one instead."""
    fd = _lock_fd(path, blocking)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _lock_fd(path: Path, blocking: bool) -> int:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError as err:
            os.close(fd)
            raise RuntimeError(f"another process holds {path}: is a second job writing the same rank to "
                               f"this directory?") from err
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder deleted the file meanwhile: lock the current one
