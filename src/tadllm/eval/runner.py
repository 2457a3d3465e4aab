"""The evaluation runner: decode a task's examples with a decoding config, score them, write results.json.

- ``evaluate(model, tokenizer, family, task, examples, decode_config, batch_size)`` runs one decoding
  setting and returns one *run* of the results.json schema (``tadllm.eval.report``): ``config`` (the full
  ``DecodeConfig``), ``aggregate`` (``tadllm.eval.metrics.aggregate``), per-sample ``records``, plus the
  model path, seed, batch size and world size.
- ``run_sweep`` evaluates several settings (``parse_sweep``: a product of ``key=v1,v2,...`` specs,
  ``tadllm.eval.sweep``) and writes ``results.json`` (after every point, atomically) and ``results.md`` into
  an output folder (``tadllm.eval.results``). A re-run skips the points already present with the same
  config, so an interrupted sweep resumes.
- Under ``accelerate launch`` (or any initialised ``torch.distributed`` group; ``tadllm.distributed``) rank r
  decodes examples ``i % world == r``; rank 0 gathers every rank's records, merges them and writes the files.
- The ``tad eval`` / ``tad report`` / ``tad aup`` command lines are in ``tadllm.eval.cli`` (re-exported here;
  ``python -m tadllm.eval.runner ARGS`` is ``tad eval ARGS``).

Prompts: ``tadllm.models.encode_prompt(tokenizer, family, task.user_prompt(ex), system_prompt)``, the
encoding trajectory generation and ``tad generate`` use too: the chat template when the tokenizer has one
(nothing added beyond it: the template already holds BOS), else the text with the tokenizer's own special
tokens. Outputs are decoded up to the first stop token (EOS / end-of-turn), skipping
special tokens; ``num_tokens`` counts the same tokens (the TPF numerator).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from tadllm.decoding.config import DecodeConfig
from tadllm.decoding.state import overlong_prompts
from tadllm.distributed import DistContext, dist_context
from tadllm.eval.metrics import aggregate, merge_records
from tadllm.eval.results import (
    RESULTS_JSON,
    RESULTS_MD,
    data_info,
    load_existing,
    remove_stale_results_temporaries,
    results_markdown,
    write_results,
)
from tadllm.eval.sweep import config_key, parse_sweep, short_config, sweep_configs
from tadllm.io import atomic_write_text
from tadllm.models.family import encode_prompt  # the prompt encoding of trajectory generation too

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
    "RESULTS_JSON",
    "RESULTS_MD",
    "build_eval_parser",
    "main_eval",
    "main_report",
    "main_aup",
]


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
    with _progress_bar(len(order), desc or f"{getattr(task, 'name', 'eval')} {short_config(decode_config)}",
                       progress and ctx.is_main) as bar:
        records = _decode_and_score(model, tokenizer, family, task, examples, prompts, order, decode_config,
                                    batch_size, bar)
    records = _gathered(ctx, records, len(examples))
    run = {"config": decode_config.to_dict()}
    if label:
        run["label"] = label
    run.update({"aggregate": aggregate(records), "records": records,
                "model": None if model_path is None else str(model_path), "task": getattr(task, "name", None),
                "seed": seed, "batch_size": batch_size, "world_size": ctx.world_size, "n_examples": len(examples),
                "elapsed_s": time.perf_counter() - start})
    if not ctx.is_main:
        run["partial"] = True
    return run


def _decode_and_score(model, tokenizer, family, task, examples, prompts: dict, order: list[int],
                      decode_config: DecodeConfig, batch_size: int, bar) -> list[dict]:
    """The records of the examples `order` (this rank's, shortest prompts first), batch by batch."""
    from tadllm.decoding import generate
    from tadllm.progress import StepProgress

    code_task = getattr(task, "kind", "") == "code"
    records: list[dict] = []
    n_correct = tokens_sum = nfe_sum = 0
    steps = StepProgress(bar)  # the bar moves at every decoding step, not only per batch
    for lo in range(0, len(order), batch_size):
        batch = order[lo:lo + batch_size]
        cfg = dataclasses.replace(decode_config, seed=decode_config.seed + batch[0])
        out = generate(model, family, [prompts[i] for i in batch], cfg, progress=steps.done, on_step=steps.on_step)
        texts = [decode_output(tokenizer, out.tokens[j], out.num_tokens[j]) for j in range(len(batch))]
        verdicts = task.score_batch(texts, [examples[i] for i in batch])
        share = out.wall_time / len(batch)
        for j, i in enumerate(batch):
            rec = {"id": str(examples[i].id), "index": i, "output": texts[j], "answer": _extract(task, texts[j]),
                   "correct": bool(verdicts[j]), "nfe": int(out.nfe[j]), "num_tokens": int(out.num_tokens[j]),
                   "prompt_tokens": len(prompts[i]), "wall_time": share}
            if not code_task:
                rec["gold"] = examples[i].answer
            records.append(rec)
            n_correct += rec["correct"]
            tokens_sum += rec["num_tokens"]
            nfe_sum += rec["nfe"]
        bar.set_postfix(acc=f"{100.0 * n_correct / len(records):.1f}", tpf=f"{tokens_sum / max(nfe_sum, 1):.2f}")
    return records


def _gathered(ctx: DistContext, records: list[dict], n_examples: int) -> list[dict]:
    """Rank 0: every rank's records merged, in input order; another rank: its own, in input order."""
    per_rank = ctx.gather(records)
    if ctx.is_main:
        records = merge_records(per_rank, key="index")
        if len(records) != n_examples:  # pragma: no cover - a lost rank
            raise RuntimeError(f"gathered {len(records)} records for {n_examples} examples")
    return sorted(records, key=lambda r: r["index"])


def _check_prompt_lengths(model, lengths: Mapping[str, int], gen_length: int) -> None:
    """Fail before decoding anything when a prompt + the canvas exceeds the model's maximum length (the
    decoding engine would only find out at that prompt's batch, the longest prompts coming last)."""
    limit, too_long = overlong_prompts(model, lengths, gen_length)
    if too_long:
        worst = max(too_long, key=too_long.get)
        raise ValueError(f"{len(too_long)} prompt(s) do not fit: example {worst!r} has {too_long[worst]} prompt "
                         f"tokens + gen_length {gen_length} > the model's maximum sequence length {limit}; "
                         f"shorten the prompts, lower gen_length or drop those examples")


# ----------------------------------------------------------------------------------- sweeps


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
              "data": data_info(examples, data_source, split, limit)}
    results = error = None
    if ctx.is_main:
        remove_stale_results_temporaries(out)
        existing, error = load_existing(path, header, overwrite)
        results = existing or {**header, "tadllm_version": __version__, "runs": []}
    error = ctx.broadcast(error)
    if error:
        raise ValueError(error)
    done = ctx.broadcast({config_key(r.get("config", {})) for r in results["runs"]} if ctx.is_main else None)

    for n, (point, cfg) in enumerate(zip(points, configs), 1):
        key = config_key(cfg.to_dict())
        name = ", ".join(f"{k}={v}" for k, v in point.items()) or short_config(cfg)
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
            write_results(out, results)
            agg = run["aggregate"]
            log(f"{tag}: accuracy {agg['accuracy']:.2f}%  TPF {agg['tpf']:.3f}  "
                f"{agg['tokens_per_s']:.1f} tok/s  n={agg['n']}  ({run['elapsed_s']:.1f}s)")
        ctx.barrier()
    if not ctx.is_main:
        return None
    if results["runs"]:  # refresh results.md also when every point was skipped
        write_results(out, results, markdown_only=True)
    return results


def __getattr__(name: str):
    """The command lines, re-exported lazily from `tadllm.eval.cli` (which imports this module)."""
    if name in ("build_eval_parser", "main_eval", "main_report", "main_aup", "default_method_label"):
        from tadllm.eval import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover - `python -m tadllm.eval.runner ...` == `tad eval ...`
    from tadllm.eval.cli import main_eval

    sys.exit(main_eval())
