"""The evaluation runner: decode a task's examples with a decoding config, score them, write results.json.

- ``evaluate(model, tokenizer, family, task, examples, decode_config, batch_size)`` runs one decoding
  setting and returns one *run* of the results.json schema (``tadllm.eval.report``): ``config`` (the full
  ``DecodeConfig``), ``aggregate`` (``tadllm.eval.metrics.aggregate``), per-sample ``records``, plus the
  model path, seed, batch size and world size.
- ``parse_sweep`` / ``run_sweep`` evaluate several settings (a product of ``key=v1,v2,...`` specs) and
  write ``results.json`` (after every point, atomically) and ``results.md`` into an output folder. A re-run
  skips the points already present with the same config, so an interrupted sweep resumes.
- Under ``accelerate launch`` (or any initialised ``torch.distributed`` group) rank r decodes examples
  ``i % world == r``; rank 0 gathers every rank's records, merges them and writes the files.
- ``main_eval`` / ``main_report`` / ``main_aup`` are the ``tad eval`` / ``tad report`` / ``tad aup``
  command lines.

Prompts: ``tadllm.models.encode_prompt(tokenizer, family, task.user_prompt(ex), system_prompt)``, the
encoding trajectory generation and ``tad generate`` use too: the chat template when the tokenizer has one
(nothing added beyond it: the template already holds BOS), else the text with the tokenizer's own special
tokens. Outputs are decoded up to the first stop token (EOS / end-of-turn), skipping
special tokens; ``num_tokens`` counts the same tokens (the TPF numerator).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from tadllm.decoding.config import FIXED_COUNT_POLICIES, THRESHOLD_POLICIES, DecodeConfig
from tadllm.eval.metrics import aggregate, merge_records
from tadllm.models.family import encode_prompt  # the prompt encoding of trajectory generation too

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

__all__ = [
    "DistContext",
    "dist_context",
    "decode_output",
    "evaluate",
    "parse_sweep",
    "sweep_configs",
    "run_sweep",
    "results_markdown",
    "atomic_write_text",
    "build_eval_parser",
    "main_eval",
    "main_report",
    "main_aup",
]


# ----------------------------------------------------------------------------------- distributed


@dataclasses.dataclass
class DistContext:
    """Rank / world size of this process. ``world_size == 1``: plain single-process evaluation."""

    rank: int = 0
    world_size: int = 1
    device: Any = None  # the process's device under accelerate (None: caller decides)
    state: Any = None  # accelerate.PartialState when one was created

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return (self.world_size > 1 and torch.distributed.is_available()
                and torch.distributed.is_initialized())

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def dist_context() -> DistContext:
    """The current process's place in a multi-process run.

    - an initialised ``torch.distributed`` group: its rank and world size;
    - ``WORLD_SIZE > 1`` in the environment (``accelerate launch`` / ``torchrun``): an
      ``accelerate.PartialState`` is created (imported lazily), which initialises the group and picks the
      process's device;
    - otherwise a single process (accelerate is not imported).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = None
        if torch.cuda.is_available() and torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        return DistContext(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        try:
            from accelerate import PartialState
        except ImportError as err:  # pragma: no cover - accelerate is a core dependency
            raise ImportError("WORLD_SIZE > 1 but accelerate is not installed: pip install accelerate") from err
        # Without CUDA, accelerate only sets up a (gloo) process group when asked for the CPU explicitly.
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        state = PartialState(cpu=cpu)
        return DistContext(state.process_index, state.num_processes, state.device, state)
    return DistContext()


# ----------------------------------------------------------------------------------- prompts / outputs


def decode_output(tokenizer, tokens, num_tokens: int) -> str:
    """Text of the generated tokens before the first stop token, special tokens skipped."""
    ids = tokens[: int(num_tokens)]
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    return tokenizer.decode(ids, skip_special_tokens=True)


def _extract(task, text: str):
    try:
        return task.extract_answer(text)
    except NotImplementedError:
        return None
    except Exception as err:  # a verifier bug must not lose a whole run's decoding
        return f"<extract_answer failed: {type(err).__name__}: {err}>"


def _progress_bar(total: int, desc: str, enabled: bool):
    from tadllm.progress import sample_bar

    return sample_bar(total, desc, "ex", enabled)


# ----------------------------------------------------------------------------------- one run


def evaluate(model, tokenizer, family, task, examples: Sequence, decode_config: DecodeConfig,
             batch_size: int = 16, *, model_path: str | None = None, seed: int | None = None,
             system_prompt: str | None = None, progress: bool = True, dist: DistContext | None = None,
             label: str | None = None, desc: str | None = None) -> dict:
    """Decode and score ``examples`` with one decoding setting; returns one run of results.json.

    The run has ``config`` (``decode_config.to_dict()``), ``aggregate`` (accuracy %, TPF = total tokens
    / total forward passes, tokens/s, wall time, ...), ``records`` (one per example, in input order: ``id``,
    ``index``, ``output``, ``answer`` (extracted), ``gold`` (math/synthetic tasks), ``correct``, ``nfe``,
    ``num_tokens``, ``prompt_tokens``, ``wall_time`` = batch time / batch size), and ``model``, ``seed``,
    ``batch_size``, ``world_size``, ``n_examples``, ``elapsed_s`` (wall clock of the whole call).

    With several ranks (``dist`` or ``dist_context()``), each rank decodes examples ``i % world == rank``
    and rank 0 returns the merged run; other ranks return a run of their own share with ``partial: True``.
    ``seed`` (default ``decode_config.seed``) seeds torch; batch k's decoding generator is seeded with
    ``decode_config.seed + index of the batch's first example`` so that sampling differs between batches.
    ``desc``: the progress bar's label (default: task and policy).
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tadllm.decoding import generate

    decode_config.validate()
    ctx = dist or dist_context()
    seed = decode_config.seed if seed is None else int(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    ids = [str(ex.id) for ex in examples]
    if ctx.is_main and len(set(ids)) != len(ids):
        warnings.warn("example ids are not unique; records are matched by their index instead", stacklevel=2)

    local = [i for i in range(len(examples)) if i % ctx.world_size == ctx.rank]
    prompts = {i: encode_prompt(tokenizer, family, task.user_prompt(examples[i]), system_prompt) for i in local}
    _check_prompt_lengths(model, {ids[i]: len(p) for i, p in prompts.items()}, decode_config.gen_length)
    # Similar prompt lengths in a batch: less left padding (generate also sorts inside a batch).
    order = sorted(local, key=lambda i: len(prompts[i]))
    code_task = getattr(task, "kind", "") == "code"
    records: list[dict] = []
    n_correct = tokens_sum = nfe_sum = 0
    bar = _progress_bar(len(order), desc or f"{getattr(task, 'name', 'eval')} {_short_config(decode_config)}",
                        progress and ctx.is_main)
    from tadllm.progress import StepProgress

    steps = StepProgress(bar)  # the bar moves at every decoding step, not only per batch
    try:
        for lo in range(0, len(order), batch_size):
            batch = order[lo:lo + batch_size]
            cfg = dataclasses.replace(decode_config, seed=decode_config.seed + batch[0])
            out = generate(model, family, [prompts[i] for i in batch], cfg, progress=steps.done,
                           on_step=steps.on_step)
            texts = [decode_output(tokenizer, out.tokens[j], out.num_tokens[j]) for j in range(len(batch))]
            verdicts = task.score_batch(texts, [examples[i] for i in batch])
            share = out.wall_time / len(batch)
            for j, i in enumerate(batch):
                ex = examples[i]
                rec = {"id": ids[i], "index": i, "output": texts[j], "answer": _extract(task, texts[j]),
                       "correct": bool(verdicts[j]), "nfe": int(out.nfe[j]), "num_tokens": int(out.num_tokens[j]),
                       "prompt_tokens": len(prompts[i]), "wall_time": share}
                if not code_task:
                    rec["gold"] = ex.answer
                records.append(rec)
                n_correct += rec["correct"]
                tokens_sum += rec["num_tokens"]
                nfe_sum += rec["nfe"]
            bar.set_postfix(acc=f"{100.0 * n_correct / len(records):.1f}", tpf=f"{tokens_sum / max(nfe_sum, 1):.2f}")
    finally:
        bar.close()

    per_rank = ctx.gather(records)
    partial = not ctx.is_main
    if ctx.is_main:
        records = merge_records(per_rank, key="index")
        records.sort(key=lambda r: r["index"])
        if len(records) != len(examples):  # pragma: no cover - a lost rank
            raise RuntimeError(f"gathered {len(records)} records for {len(examples)} examples")
    else:
        records.sort(key=lambda r: r["index"])
    run = {"config": decode_config.to_dict()}
    if label:
        run["label"] = label
    run.update({
        "aggregate": aggregate(records),
        "records": records,
        "model": None if model_path is None else str(model_path),
        "task": getattr(task, "name", None),
        "seed": seed,
        "batch_size": batch_size,
        "world_size": ctx.world_size,
        "n_examples": len(examples),
        "elapsed_s": time.perf_counter() - start,
    })
    if partial:
        run["partial"] = True
    return run


def _check_prompt_lengths(model, lengths: Mapping[str, int], gen_length: int) -> None:
    """Fail before decoding anything when a prompt + the canvas exceeds the model's maximum length (the
    decoding engine would only find out at that prompt's batch, the longest prompts coming last)."""
    from tadllm.decoding.loop import max_positions

    limit = max_positions(model)
    too_long = {k: n for k, n in lengths.items() if limit is not None and n + gen_length > limit}
    if too_long:
        worst = max(too_long, key=too_long.get)
        raise ValueError(f"{len(too_long)} prompt(s) do not fit: example {worst!r} has {too_long[worst]} prompt "
                         f"tokens + gen_length {gen_length} > the model's maximum sequence length {limit}; "
                         f"shorten the prompts, lower gen_length or drop those examples")


def _short_config(cfg: DecodeConfig) -> str:
    if cfg.policy in THRESHOLD_POLICIES:
        s = f"{cfg.policy}@{cfg.threshold:g}"
    else:
        s = f"{cfg.policy} steps={cfg.steps}"
    return s + (" multi-block" if cfg.multi_block else "")


# ----------------------------------------------------------------------------------- sweeps

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(DecodeConfig)}
_NONE_WORDS = {"none", "null"}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


def _coerce(key: str, raw: str):
    """A sweep value, typed after the DecodeConfig field (``int | None``, ``float``, ``bool``, ``str``)."""
    text = raw.strip()
    ftype = str(_CONFIG_FIELDS[key].type).replace(" ", "")
    optional = "None" in ftype
    base = ftype.replace("|None", "").replace("Optional[", "").rstrip("]")
    if text.lower() in _NONE_WORDS:
        if not optional:
            raise ValueError(f"sweep {key}: {key} cannot be None")
        return None
    try:
        if base == "bool":
            low = text.lower()
            if low not in _TRUE_WORDS | _FALSE_WORDS:
                raise ValueError
            return low in _TRUE_WORDS
        if base == "int":
            value = float(text)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if base == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"sweep {key}: {raw!r} is not a valid {base}") from None
    return text


def parse_sweep(specs: str | Sequence[str] | None) -> list[dict]:
    """Override dicts for ``key=v1,v2,...`` specs; several specs give their product (first key outermost).

    ``parse_sweep("threshold=0.9,0.7")`` -> ``[{"threshold": 0.9}, {"threshold": 0.7}]``;
    ``parse_sweep(["threshold=0.9,0.5", "block_length=16,32"])`` -> 4 points. Keys are DecodeConfig fields
    (``-`` may stand for ``_``); values are typed after the field (``none`` for optional fields). No spec
    gives ``[{}]``: one run with the base config.
    """
    if specs is None:
        return [{}]
    if isinstance(specs, str):
        specs = [specs]
    axes: dict[str, list] = {}
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"sweep {spec!r}: expected key=v1,v2,... (e.g. threshold=0.9,0.7,0.5)")
        key, values = spec.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in _CONFIG_FIELDS:
            raise ValueError(f"sweep {spec!r}: unknown decoding option {key!r}; known: {sorted(_CONFIG_FIELDS)}")
        if key in axes:
            raise ValueError(f"sweep key {key!r} given twice")
        parts = [v for v in values.split(",") if v.strip()]
        if not parts:
            raise ValueError(f"sweep {spec!r}: no values")
        typed = [_coerce(key, v) for v in parts]
        if len({json.dumps(v) for v in typed}) != len(typed):
            raise ValueError(f"sweep {spec!r}: repeated value")
        axes[key] = typed
    if not axes:
        return [{}]
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def sweep_configs(base: DecodeConfig | Mapping, points: Sequence[Mapping]) -> list[DecodeConfig]:
    """One validated DecodeConfig per sweep point (base settings overridden by the point).

    ``base`` may be a dict that is not valid on its own (e.g. ``policy="entropy"`` without a threshold
    when the sweep sets it). Raises ValueError for a point that is invalid, or that sweeps an option the
    policy ignores (``threshold`` under a fixed-count policy, ``steps`` under a threshold policy).
    """
    base = base.to_dict() if isinstance(base, DecodeConfig) else dict(base)
    configs, seen = [], set()
    for point in points:
        merged = {**base, **point}
        try:
            cfg = DecodeConfig.from_dict(merged)
        except ValueError as err:
            where = f" (sweep point {dict(point)})" if point else ""
            raise ValueError(f"invalid decoding config{where}: {err}") from None
        if "threshold" in point and cfg.policy in FIXED_COUNT_POLICIES:
            raise ValueError(f"sweeping threshold has no effect with policy {cfg.policy!r}; "
                             f"use --policy {' or '.join(THRESHOLD_POLICIES)}")
        if "steps" in point and cfg.policy in THRESHOLD_POLICIES:
            raise ValueError(f"sweeping steps has no effect with policy {cfg.policy!r}; use "
                             f"--policy {' or '.join(FIXED_COUNT_POLICIES)}")
        key = _config_key(cfg.to_dict())
        if key in seen:
            raise ValueError(f"sweep point {dict(point)} repeats an earlier configuration")
        seen.add(key)
        configs.append(cfg)
    return configs


def _config_key(config: Mapping) -> str:
    return json.dumps(dict(config), sort_keys=True, default=str)


def _data_info(examples: Sequence, source=None, split: str | None = None, limit: int | None = None) -> dict:
    digest = hashlib.sha1("\n".join(str(ex.id) for ex in examples).encode()).hexdigest()
    return {"source": None if source is None else str(source), "split": split, "limit": limit,
            "n": len(examples), "ids_sha1": digest}


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"  # same folder: os.replace stays atomic
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


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


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files of `atomic_write_text` left by a process killed mid-write (their pid is
    gone); results.json itself is never torn."""
    for tmp in list(out.glob(f".{RESULTS_JSON}.*.tmp")) + list(out.glob(f".{RESULTS_MD}.*.tmp")):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's process): leave it


def _load_existing(path: Path, header: Mapping, overwrite: bool) -> tuple[dict | None, str | None]:
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


def run_sweep(model, tokenizer, family, task, examples: Sequence, base_config: DecodeConfig | Mapping,
              points: Sequence[Mapping] | None, out_dir: str | Path, *, model_name: str, method: str,
              batch_size: int = 16, data_source=None, split: str | None = None, limit: int | None = None,
              seed: int | None = None, system_prompt: str | None = None, progress: bool = True,
              overwrite: bool = False, dist: DistContext | None = None,
              log: Callable[[str], None] | None = None) -> dict | None:
    """Evaluate every sweep point and write ``out_dir/results.json`` + ``results.md``.

    ``points``: override dicts (``parse_sweep``; None or ``[{}]`` for one run of ``base_config``).
    results.json (schema of ``tadllm.eval.report``: ``model``, ``method``, ``task``, ``runs``; plus
    ``data``, which identifies the examples, and ``tadllm_version``) is rewritten atomically after every
    point. If it already exists for the same model, method, task and examples, points whose config is
    already present are skipped and the new runs are appended (``overwrite=True`` starts afresh); a file
    for anything else raises ValueError. Returns the results dict on rank 0 and None on other ranks.
    """
    ctx = dist or dist_context()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    points = list(points or [{}])
    configs = sweep_configs(base_config, points)
    out = Path(out_dir)
    path = out / RESULTS_JSON
    from tadllm import __version__

    header = {"model": str(model_name), "method": str(method), "task": str(getattr(task, "name", task)),
              "data": _data_info(examples, data_source, split, limit)}
    results = error = None
    if ctx.is_main:
        _remove_stale_temporaries(out)
        existing, error = _load_existing(path, header, overwrite)
        results = existing or {**header, "tadllm_version": __version__, "runs": []}
    error = ctx.broadcast(error)
    if error:
        raise ValueError(error)
    done = ctx.broadcast({_config_key(r.get("config", {})) for r in results["runs"]} if ctx.is_main else None)

    for n, (point, cfg) in enumerate(zip(points, configs), 1):
        key = _config_key(cfg.to_dict())
        name = ", ".join(f"{k}={v}" for k, v in point.items()) or _short_config(cfg)
        tag = f"[{n}/{len(configs)}] {name}"
        if key in done:
            if ctx.is_main:
                log(f"{tag}: already in {path}, skipped")
            continue
        run = evaluate(model, tokenizer, family, task, examples, cfg, batch_size, model_path=model_name,
                       seed=seed, system_prompt=system_prompt, progress=progress, dist=ctx, desc=tag)
        if ctx.is_main:
            results["runs"].append(run)
            done.add(key)
            atomic_write_text(path, json.dumps(results, indent=1))
            atomic_write_text(out / RESULTS_MD, results_markdown(results))
            agg = run["aggregate"]
            log(f"{tag}: accuracy {agg['accuracy']:.2f}%  TPF {agg['tpf']:.3f}  "
                f"{agg['tokens_per_s']:.1f} tok/s  n={agg['n']}  ({run['elapsed_s']:.1f}s)")
        ctx.barrier()
    if not ctx.is_main:
        return None
    if results["runs"]:  # refresh results.md also when every point was skipped
        atomic_write_text(out / RESULTS_MD, results_markdown(results))
    return results


# ----------------------------------------------------------------------------------- CLI


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "x"


def default_method_label(policy: str, multi_block: bool = False) -> str:
    return policy + ("+multi-block" if multi_block else "")


def build_eval_parser(prog: str = "tad eval") -> argparse.ArgumentParser:
    from tadllm.cli import ArgumentParser

    p = ArgumentParser(prog=prog, description="Evaluate a masked-diffusion LM on a task: accuracy, "
                                "TPF (tokens per forward pass), throughput; writes results.json + results.md.")
    p.add_argument("--model", required=True, help="checkpoint folder or hub name")
    p.add_argument("--task", required=True, help="task name (gsm8k, math, humaneval, mbpp, kodcode, arith)")
    p.add_argument("--data", default=None, help="local .jsonl/.json/.parquet (or .jsonl.gz/.json.gz) file or "
                   "datasets hub name (default: the task's own source)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--out", default=None, help="output folder (default: eval_results/TASK/MODEL/METHOD)")
    p.add_argument("--method", default=None, help="curve / leaderboard name (default: the policy name)")
    from tadllm.cli import add_decoding_args

    g = add_decoding_args(p)
    g.add_argument("--sweep", action="append", default=None, metavar="KEY=V1,V2,...",
                   help="sweep a decoding option; repeat for a product (--sweep threshold=0.9,0.5 "
                   "--sweep block_length=16,32)")
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", type=int, default=16)
    from tadllm.cli import DTYPE_HELP, dtype_arg

    r.add_argument("--dtype", default=None, type=dtype_arg, help=DTYPE_HELP + "; default: bf16 on CUDA, fp32 on CPU")
    r.add_argument("--device", default=None, help="default: the rank's device under accelerate, else cuda if "
                   "available, else cpu")
    r.add_argument("--trust-remote-code", action="store_true")
    r.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs; "
                   "see docs/performance.md)")
    r.add_argument("--cuda-graphs", action="store_true", help="replay CUDA graphs of the decoding forwards "
                   "(pays off at small batches on GPUs; with --compile: graphs of the compiled model; see "
                   "docs/performance.md)")
    r.add_argument("--mask-token-id", type=int, default=None)
    r.add_argument("--tokenizer", default=None, help="tokenizer folder when the checkpoint has none")
    r.add_argument("--system-prompt", default=None, help="system message for the chat template")
    r.add_argument("--overwrite", action="store_true", help="start results.json afresh instead of resuming")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_eval(argv: Sequence[str] | None = None) -> int:
    """``tad eval``: evaluate (a sweep of) decoding settings; prints the markdown table at the end."""
    args = build_eval_parser().parse_args(argv)
    from tadllm.cli import apply_model_settings, decoding_options
    from tadllm.errors import UserError

    task = apply_model_settings(args, "tad eval", args.task)
    base = decoding_options(args)
    points = parse_sweep(args.sweep)
    sweep_configs(base, points)  # fail on a bad config before loading anything
    ctx = dist_context()

    from tadllm.models import load_model, load_tokenizer
    from tadllm.models.loading import default_device

    examples = task.load(args.data, split=args.split, limit=args.limit)
    if not examples:
        raise UserError(f"no examples in {args.data or args.task} (split {args.split!r})")
    device = default_device(args.device)
    if ctx.world_size > 1 and ctx.device is not None and device.index is None and \
            (args.device is None or device.type == torch.device(ctx.device).type):
        device = torch.device(ctx.device)  # one device per rank: `--device cuda` means this rank's GPU
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "float32")
    model, tokenizer, family = load_model(args.model, dtype=dtype, device=device,
                                          trust_remote_code=args.trust_remote_code,
                                          mask_token_id=args.mask_token_id)
    from tadllm.cli import accelerate_decoding

    model = accelerate_decoding(model, args)
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer, trust_remote_code=args.trust_remote_code)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files; pass --tokenizer PATH")
    method = args.method or default_method_label(args.policy, args.multi_block)
    out = Path(args.out) if args.out else Path("eval_results") / _slug(args.task) / _slug(
        Path(str(args.model).rstrip("/")).name) / _slug(method)
    if ctx.is_main:
        print(f"tad eval: {len(examples)} examples of {args.task}, {len(points)} setting(s), "
              f"{ctx.world_size} process(es), device {device}, dtype {dtype} -> {out}", file=sys.stderr)
    results = run_sweep(model, tokenizer, family, task, examples, base, points, out, model_name=str(args.model),
                        method=method, batch_size=args.batch_size, data_source=args.data, split=args.split,
                        limit=args.limit, seed=args.seed, system_prompt=args.system_prompt,
                        progress=not args.no_progress, overwrite=args.overwrite, dist=ctx)
    if ctx.is_main and results is not None:
        print(results_markdown(results))
        print(f"results: {out / RESULTS_JSON}", file=sys.stderr)
    return 0


def main_report(argv: Sequence[str] | None = None) -> int:
    """``tad report RUN_DIR... --out DIR [--published YAML]``: report.md, PNGs and aup.json."""
    from tadllm.cli import ArgumentParser

    p = ArgumentParser(prog="tad report", description="results.json files -> markdown report, "
                                "accuracy-vs-TPF plot, AUP tables and bar chart")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results.json files or folders holding them")
    p.add_argument("--out", default="report", help="output folder (default: ./report)")
    p.add_argument("--published", default=None, help="YAML of published points to compare against "
                   "(e.g. configs/published/tad_llada.yaml)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the AUP CI (0: none)")
    args = p.parse_args(argv)
    from tadllm.eval.report import report_main

    out = report_main(args.runs, args.out, published=args.published, n_boot=args.n_boot)
    print(Path(out["markdown"]).read_text())
    print(f"report written to {args.out}: report.md, accuracy_vs_tpf.png, aup_bar.png, aup.json", file=sys.stderr)
    return 0


def main_aup(argv: Sequence[str] | None = None) -> int:
    """``tad aup YAML``: AUP tables (per task and mean) for a YAML of published points."""
    from tadllm.cli import ArgumentParser

    p = ArgumentParser(prog="tad aup", description="AUP of published accuracy-vs-TPF points")
    p.add_argument("yaml", help="points YAML (task -> {y_max, methods: {name: [[tpf, acc], ...]}})")
    args = p.parse_args(argv)
    from tadllm.eval.report import aup_main

    print(aup_main(args.yaml))
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m tadllm.eval.runner ...` == `tad eval ...`
    sys.exit(main_eval())
