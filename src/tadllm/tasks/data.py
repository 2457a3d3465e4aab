"""Reading dataset rows for the tasks: local .jsonl / .json / .parquet files (JSON also gzipped:
.jsonl.gz / .json.gz), or a `datasets` hub name.

Every row comes with a location string (`"path, line 7"`, `"path, row 3"`, `"hub name, row 3"`) so that a
task can name the exact place of a malformed row in its error. `pyarrow` and `datasets` are imported
only when a parquet file or a hub name is actually read.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["LOCAL_SUFFIXES", "iter_rows", "iter_file", "iter_hub", "looks_local"]

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")

Row = tuple[str, int, Any]  # (location, 0-based index, row)


def looks_local(source: str | os.PathLike) -> bool:
    """True for an existing path or a string that names a data file; hub names look like `org/name`."""
    if not isinstance(source, str):
        return True  # a Path object is always meant as a local path
    text = os.fspath(source)
    return os.path.exists(text) or text.lower().endswith(LOCAL_SUFFIXES) or text.startswith((".", "/", "~"))


def iter_rows(source: str | os.PathLike | None, split: str, hub_name: str | None,
              hub_configs: Sequence[str | None] = (None,)) -> Iterator[Row]:
    """Rows of `source` (a file, a directory of `{split}*` files, a hub name, or None for `hub_name`)."""
    if source is None:
        if hub_name is None:
            raise ValueError("this task has no default dataset: pass a source")
        yield from iter_hub(hub_name, hub_configs, split)
        return
    if not looks_local(source):
        name, _, config = os.fspath(source).partition(":")
        configs = (config,) if config else (hub_configs if name == hub_name else (None,))
        yield from iter_hub(name, configs, split)
        return
    path = Path(os.path.expanduser(os.fspath(source)))
    if path.is_dir():
        for file in _split_files(path, split):
            yield from iter_file(file)
        return
    yield from iter_file(path)


def _split_files(directory: Path, split: str) -> list[Path]:
    files = sorted(p for p in directory.iterdir()
                   if p.name.startswith(split) and p.name.lower().endswith(LOCAL_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no {split}*.jsonl / .json / .parquet (or .jsonl.gz / .json.gz) file in {directory}")
    return files


def iter_file(path: str | os.PathLike) -> Iterator[Row]:
    """Rows of one local file; FileNotFoundError (with the path) if it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        yield from _iter_jsonl(path)
    elif name.endswith((".json", ".json.gz")):
        yield from _iter_json(path)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path)
    else:
        raise ValueError(f"{path}: unsupported file type (use .jsonl, .json or .parquet; JSON may be gzipped)")


def _open_text(path: Path):
    """The file as UTF-8 text, decompressed on the fly when its name ends in .gz."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _iter_jsonl(path: Path) -> Iterator[Row]:
    index = lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: invalid JSON ({e.msg})") from e
                yield f"{path}, line {lineno}", index, row
                index += 1
    except (OSError, EOFError) as e:  # e.g. a corrupt or truncated .gz (gzip.BadGzipFile is an OSError)
        raise ValueError(f"{path}: cannot read it after line {lineno} ({e})") from e


def _iter_json(path: Path) -> Iterator[Row]:
    try:
        with _open_text(path) as f:
            text = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # `datasets.to_json` writes JSON lines under a .json name
            yield from _iter_jsonl(path)
            return
        raise ValueError(f"{path}, line {e.lineno}: invalid JSON ({e.msg})") from e
    if isinstance(data, dict):  # {"data": [...]} / {"examples": [...]} / {"rows": [...]}
        data = next((data[k] for k in ("data", "examples", "rows") if isinstance(data.get(k), list)), None)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows (or JSON lines)")
    for index, row in enumerate(data):
        yield f"{path}, row {index + 1}", index, row


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow as pa  # lazy: parquet only
    import pyarrow.parquet as pq

    index = 0
    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=1024)
        for batch in batches:
            rows = batch.to_pylist()
            for row in rows:
                yield f"{path}, row {index + 1}", index, row
                index += 1
    except (pa.ArrowException, OSError) as e:  # a corrupt or truncated file: name it
        raise ValueError(f"{path}: cannot read parquet file after {index} row(s) ({e})") from e


def iter_hub(name: str, configs: Sequence[str | None], split: str) -> Iterator[Row]:
    """Rows of a `datasets` hub dataset; several configs (e.g. MATH's subjects) are concatenated."""
    try:
        import datasets  # lazy: only for hub names
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"loading {name!r} from the hub needs `datasets` (pip install tadllm[data])") from e
    index = 0
    for config in configs:
        ds = datasets.load_dataset(name, config, split=split)
        label = f"{name}:{config}" if config else name
        for offset, row in enumerate(ds):
            yield f"{label} ({split}), row {offset + 1}", index, row
            index += 1
