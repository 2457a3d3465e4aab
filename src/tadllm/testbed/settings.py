"""The task settings a checkpoint records, and the defaults the command lines take from them.

A testbed checkpoint (`tad pretrain`, the bundled teacher, the students `tad train` and the quickstart make
from it) holds `testbed.json`: the task it was trained on (`arith`), the problem distribution (`min_ops`,
`max_ops`, `commute`, `data_seed`, `n_test`), the teacher's hint and the lengths it decodes (`gen_length`,
`block_length`). `tad eval`, `tad generate` and `tad trajectories` use them for every setting the user
leaves unset, so the documented commands evaluate a model on what it was trained for; explicit flags
(`--gen-length`, `--block-length`, `--data synthetic:min_ops=...`) win. Checkpoints without the file
(LLaDA, Dream, ...) are unaffected.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import UserError

SETTINGS_FILE = "testbed.json"
LENGTH_KEYS = ("gen_length", "block_length")


def recorded_settings(model) -> dict:
    """The settings in `model`'s folder (its testbed.json), or {} (a hub name, or no such file)."""
    path = Path(str(model)) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); fix or delete it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object of settings, got {type(data).__name__}")
    return data


def fill_lengths(args, settings: dict, fallbacks: dict) -> list[str]:
    """Set `args.gen_length` / `args.block_length` left unset (None) from `settings`, else `fallbacks`.
    Returns the names taken from the settings."""
    taken = []
    for key in LENGTH_KEYS:
        if getattr(args, key, None) is not None:
            continue
        value = settings.get(key)
        setattr(args, key, fallbacks[key] if value is None else int(value))
        if value is not None:
            taken.append(f"{key} {value}")
    return taken


def load_task(name: str, settings: dict | None = None):
    """The task registered as `name`; for the task the checkpoint was trained on, with its recorded problem
    distribution and hint (so the default problems are the checkpoint's own held-out split)."""
    from ..tasks import get_task

    try:
        task = get_task(name)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    settings = settings or {}
    if settings.get("task") != getattr(task, "name", None) or task.name != "arith":
        return task
    from ..tasks.arith import ArithSpec, ArithTask

    spec = ArithSpec(min_ops=int(settings.get("min_ops", ArithSpec.min_ops)),
                     max_ops=int(settings.get("max_ops", ArithSpec.max_ops)),
                     commute=float(settings.get("commute", 0.0)))
    return ArithTask(hint=settings.get("hint", "answer"), spec=spec, seed=settings.get("data_seed", 0),
                     n_test=int(settings.get("n_test", 2000)))


def describe(model, settings: dict, taken: list[str], task=None) -> str | None:
    """One line saying which defaults came from the checkpoint, or None when none did."""
    parts = list(taken)
    spec = getattr(task, "spec", None)
    if spec is not None and settings.get("task") == getattr(task, "name", None):
        parts.append(f"{task.name} problems with {spec.min_ops}-{spec.max_ops} operations")
    if not parts:
        return None
    return f"using {', '.join(parts)} recorded in {Path(str(model)) / SETTINGS_FILE} (flags override)"


def copy_settings(source_model, out_dir) -> bool:
    """Copy `source_model`'s testbed.json into `out_dir` (a model trained from it keeps its task settings)."""
    src = Path(str(source_model)) / SETTINGS_FILE
    if not src.is_file():
        return False
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, Path(out_dir) / SETTINGS_FILE)
    return True
