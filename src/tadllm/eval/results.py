"""results.json / results.md of an eval output folder: the header that identifies the examples
(`data_info`), loading an existing file to resume (`load_existing`), the markdown summary
(`results_markdown`) and the atomic writes (`write_results`, `tadllm.io`) with their stale temporaries."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from tadllm.io import atomic_write_text, remove_stale_temporaries

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

__all__ = ["RESULTS_JSON", "RESULTS_MD", "data_info", "load_existing", "results_markdown", "write_results",
           "remove_stale_results_temporaries"]


def data_info(examples: Sequence, source=None, split: str | None = None, limit: int | None = None) -> dict:
    digest = hashlib.sha1("\n".join(str(ex.id) for ex in examples).encode()).hexdigest()
    return {"source": None if source is None else str(source), "split": split, "limit": limit,
            "n": len(examples), "ids_sha1": digest}


def results_markdown(results: Mapping) -> str:
    """The runs table of ``tadllm.eval.report`` for one results dict, plus its own-curve AUP table
    (y_max = the best accuracy among these runs; compare methods with ``tad report``)."""
    from tadllm.eval.report import aup_markdown, curves_by_task, result_rows, runs_markdown
    from tadllm.eval.aup import aup

    rows = result_rows([results])
    parts = [f"# {results['method']} on {results['task']} ({results['model']})", "", runs_markdown(rows)]
    for task, curves in curves_by_task(rows).items():
        y_max = max(r["accuracy"] for r in rows if r["task"] == task)
        with warnings.catch_warnings():  # tiny / untrained models: all accuracies 0 or <= 1
            warnings.simplefilter("ignore")
            aups = {name: aup(pts, y_max) for name, pts in curves.items()}
            parts.append(aup_markdown(task, curves, aups, y_max))
    return "\n".join(parts)


def remove_stale_results_temporaries(out: Path) -> None:
    """Delete the temporaries of results.json / results.md left by a process killed mid-write."""
    remove_stale_temporaries(out, (RESULTS_JSON, RESULTS_MD))


def write_results(out: Path, results: Mapping, *, markdown_only: bool = False) -> None:
    """results.json (unless `markdown_only`) then results.md, each atomically."""
    if not markdown_only:
        atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=1))
    atomic_write_text(out / RESULTS_MD, results_markdown(results))


def load_existing(path: Path, header: Mapping, overwrite: bool) -> tuple[dict | None, str | None]:
    """(existing results or None, error message or None) for a results.json about to be extended."""
    if overwrite or not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return None, f"{path} exists but cannot be read ({err}); remove it or pass overwrite (--overwrite)"
    for key in ("model", "method", "task", "data"):
        if key in header and data.get(key) != header[key]:
            return None, (f"{path} holds results for a different {key} ({data.get(key)!r}, now {header[key]!r}); "
                          f"use another output folder or overwrite it (--overwrite)")
    if not isinstance(data.get("runs"), list):
        return None, f"{path} has no 'runs' list; remove it or pass overwrite (--overwrite)"
    return data, None
