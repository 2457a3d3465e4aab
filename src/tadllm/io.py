"""Atomic file writes: the one implementation that results.json, trajectory shards, manifests and summaries
use. A file is written to a hidden temporary file beside its destination (`.NAME.PID.tmp`), fsynced and
`os.replace`d into place, so a reader (or a process killed mid-write) never sees a torn file;
`remove_stale_temporaries` deletes the temporaries of processes that died before the rename.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "remove_stale_temporaries",
           "temporary_path"]


def temporary_path(path: str | os.PathLike) -> Path:
    """The hidden temporary file of `path`'s atomic write by this process (same folder: os.replace stays
    atomic)."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in `path` durable (skipped where a directory cannot be opened / fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` writes the content to the temporary file `tmp`; it is then fsynced and renamed onto
    `path` (parent folders created). On any failure the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str | os.PathLike, names: list[str] | tuple[str, ...]) -> None:
    """Delete the temporary files of `atomic_write` for the files `names` in `folder` whose process is gone
    (killed mid-write); the files themselves are never torn. A live process's temporary is left alone."""
    folder = Path(folder)
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2:-len(".tmp")]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # alive (another user's process): leave it
