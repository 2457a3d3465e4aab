"""Turn evaluation results into a report: markdown tables, an accuracy-vs-TPF plot and an AUP bar chart.

Input: one ``results.json`` per (model, method, task) evaluation, written by the evaluation runner.
This module owns its schema::

    {
      "model":  str,            # model name or path
      "method": str,            # curve / leaderboard name, e.g. "LLaDA", "TAD-Speed"
      "task":   str,            # task name, e.g. "gsm8k"
      "runs": [                 # one entry per decoding setting of the sweep
        {
          "config":    {...},   # decoding settings (e.g. DecodeConfig fields); any JSON object
          "label":     str,     # optional short name of the run; default: the config keys that vary
          "aggregate": {        # tadllm.eval.metrics.aggregate(records); extra keys are allowed
            "accuracy": float,  # percent
            "tpf": float,       # total tokens / total forward passes
            "tokens_per_s": float,
            "wall_time": float, # seconds
            "n": int
          },
          "records": [...]      # optional per-sample records (see tadllm.eval.metrics); when present,
        }                       #   a missing aggregate is computed from them and AUP gets a bootstrap CI
      ]
    }

Each (task, method) pair is one curve; its runs are the curve's points, and runs of several files with
the same (task, method, model) are pooled (a sweep split over jobs). When one method name is used by
several models, the curve is named ``"method (model)"``.

Outputs of ``report_main`` (in ``out_dir``): ``report.md`` (a row per run, an AUP table per task, mean
AUP over tasks), ``accuracy_vs_tpf.png`` (one panel per task, one curve per method), ``aup_bar.png``
(leaderboard-style horizontal bars per task, plus the mean) and ``aup.json``.

Published points live in YAML (``configs/published/*.yaml``)::

    <task>:
      y_max: 80.21              # optional; default: best accuracy of any listed method
      methods:
        <name>: [[tpf, accuracy], ...]

``aup_main`` computes AUP tables from such a file; ``report_main(..., published=path)`` puts published
methods next to one's own runs (tasks matched by name, ignoring case, punctuation and a trailing
"CoT"/"Instruct"), with y_max the larger of the published y_max and one's own best accuracy.

matplotlib is imported inside the plotting functions, through the Agg canvas (no pyplot, no global
backend switch).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tadllm.eval.aup import (
    DEFAULT_ALPHA,
    DEFAULT_OFFSET,
    aup,
    bootstrap_aup,
    default_y_max,
    kept_points,
    mean_aup,
)
from tadllm.eval.metrics import aggregate

RESULTS_NAME = "results.json"
# Shown in a run's label when no config key varies between the runs of a file.
_LABEL_KEYS = ("policy", "threshold", "steps", "block_length", "gen_length")

Points = list[tuple[float, float]]


# ----------------------------------------------------------------------------- loading results.json


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """results.json files from files or directories (a directory's own results.json, else all below it)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / RESULTS_NAME).is_file():
            found.append(p / RESULTS_NAME)
        elif p.is_dir():
            found.extend(sorted(p.rglob(RESULTS_NAME)))
        else:
            raise FileNotFoundError(f"no such results file or directory: {p}")
    if not found:
        raise FileNotFoundError(f"no {RESULTS_NAME} under {[str(p) for p in paths]}")
    return found


def _check_run(run: Mapping, where: str) -> dict:
    run = dict(run)
    if not isinstance(run.get("config", {}), Mapping):
        raise ValueError(f"{where}: 'config' must be an object")
    if "aggregate" not in run:
        if not run.get("records"):
            raise ValueError(f"{where}: a run needs 'aggregate' or 'records'")
        run["aggregate"] = aggregate(run["records"])
    missing = [k for k in ("accuracy", "tpf") if k not in run["aggregate"]]
    if missing:
        raise ValueError(f"{where}: aggregate lacks {missing}")
    return run


def load_results(path: str | Path) -> dict:
    """Read and validate one results.json; fills a missing aggregate from the run's records."""
    data = json.loads(Path(path).read_text())
    missing = [k for k in ("model", "method", "task", "runs") if k not in data]
    if missing:
        raise ValueError(f"{path}: results.json lacks {missing}")
    if not isinstance(data["runs"], list) or not data["runs"]:
        raise ValueError(f"{path}: 'runs' must be a non-empty list")
    data["runs"] = [_check_run(r, f"{path} run {i}") for i, r in enumerate(data["runs"])]
    return data


# ----------------------------------------------------------------------------- rows and curves


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def run_labels(runs: Sequence[Mapping]) -> list[str]:
    """Short label per run: its 'label', else the config keys whose values differ between the runs."""
    configs = [r.get("config") or {} for r in runs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    shown = varying or [k for k in _LABEL_KEYS if any(k in c for c in configs)]
    labels = []
    for run, cfg in zip(runs, configs):
        label = run.get("label") or cfg.get("label")
        labels.append(str(label) if label else ", ".join(f"{k}={_fmt(cfg.get(k))}" for k in shown) or "default")
    return labels


def _curve_names(results: Sequence[Mapping]) -> list[str]:
    models_per_method: dict[str, set] = {}
    for res in results:
        models_per_method.setdefault(res["method"], set()).add(res["model"])
    return [r["method"] if len(models_per_method[r["method"]]) == 1 else f"{r['method']} ({r['model']})"
            for r in results]


def _correctness(records: Sequence[Mapping]) -> list[bool] | None:
    # Bootstrap CIs need every sample's verdict; a run without them just gets no CI.
    if not records or not all("correct" in r for r in records):
        return None
    return [bool(r["correct"]) for r in records]


def result_rows(results: Sequence[Mapping]) -> list[dict]:
    """One flat row per run: task, model, method, curve, label, metrics, and per-sample correctness."""
    rows = []
    for res, curve in zip(results, _curve_names(results)):
        for run, label in zip(res["runs"], run_labels(res["runs"])):
            agg, records = run["aggregate"], run.get("records") or []
            rows.append({
                "task": res["task"], "model": res["model"], "method": res["method"], "curve": curve,
                "label": label, "accuracy": float(agg["accuracy"]), "tpf": float(agg["tpf"]),
                "tokens_per_s": float(agg.get("tokens_per_s", math.nan)), "n": agg.get("n", len(records)),
                "correct": _correctness(records),
            })
    return rows


def curves_by_task(rows: Sequence[Mapping]) -> dict[str, dict[str, Points]]:
    """{task: {curve: [(tpf, accuracy), ...]}} from result rows (runs with a NaN TPF are left out)."""
    out: dict[str, dict[str, Points]] = {}
    for row in rows:
        if math.isfinite(row["tpf"]) and row["tpf"] > 0:
            out.setdefault(row["task"], {}).setdefault(row["curve"], []).append((row["tpf"], row["accuracy"]))
    return out


# ----------------------------------------------------------------------------- published points (YAML)


def _yaml_points(pts, where: str) -> Points:
    if not isinstance(pts, list) or not pts or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
        raise ValueError(f"{where}: points must be a non-empty list of [tpf, accuracy] pairs")
    return [(float(t), float(a)) for t, a in pts]


def published_points_from_yaml(path: str | Path) -> dict[str, dict]:
    """{task: {"y_max": float | None, "methods": {name: [(tpf, acc), ...]}}} from a published-points YAML."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping task -> {{y_max, methods}}")
    out = {}
    for task, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("methods"), dict) or not spec["methods"]:
            raise ValueError(f"{path}: task {task!r} needs a non-empty 'methods' mapping name -> [[tpf, acc], ...]")
        methods = {str(m): _yaml_points(p, f"{path}: {task}/{m}") for m, p in spec["methods"].items()}
        y_max = spec.get("y_max")
        out[str(task)] = {"y_max": None if y_max is None else float(y_max), "methods": methods}
    return out


def _task_y_max(methods: Mapping[str, Points], y_max: float | None) -> float:
    return default_y_max(methods) if y_max is None else y_max


def aup_from_yaml(path: str | Path, offset: float = DEFAULT_OFFSET,
                  alpha: float = DEFAULT_ALPHA) -> dict[str, dict[str, float]]:
    """{task: {method: AUP}} for a published-points YAML (y_max from the file, else the best accuracy)."""
    out = {}
    for task, spec in published_points_from_yaml(path).items():
        y_max = _task_y_max(spec["methods"], spec["y_max"])
        out[task] = {m: aup(p, y_max, offset, alpha) for m, p in spec["methods"].items()}
    return out


def _task_key(name: str) -> str:
    # "GSM8K-CoT" and "gsm8k", "HumanEval-Instruct" and "humaneval" name the same benchmark.
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return re.sub(r"(cot|instruct)$", "", key) or key


def _merge_published(curves: dict[str, dict[str, Points]], published: Mapping[str, dict]
                     ) -> tuple[dict[str, float | None], set[str]]:
    """Add published curves to matching tasks in place; returns their y_max per task and their names."""
    by_key = {_task_key(t): spec for t, spec in published.items()}
    y_max: dict[str, float | None] = {}
    names: set[str] = set()
    for task, task_curves in curves.items():
        spec = by_key.get(_task_key(task))
        if spec is None:
            continue
        y_max[task] = _task_y_max(spec["methods"], spec["y_max"])
        for name, pts in spec["methods"].items():
            # Never overwrite one's own curve: a published "LLaDA" next to one's own "LLaDA" is renamed.
            shown = f"{name} (published)" if name in task_curves else name
            task_curves[shown] = list(pts)
            names.add(shown)
    return y_max, names


# ----------------------------------------------------------------------------- AUP tables


def _aup_tables(curves: Mapping[str, Mapping[str, Points]], y_max: Mapping[str, float], offset: float,
                alpha: float) -> dict[str, dict[str, float]]:
    return {t: {m: aup(p, y_max[t], offset, alpha) for m, p in c.items()} for t, c in curves.items()}


def _bootstrap_cis(rows: Sequence[Mapping], y_max: Mapping[str, float], n_boot: int, offset: float,
                   alpha: float) -> dict[str, dict[str, tuple[float, float]]]:
    """95% CI per (task, curve) whose runs all carry per-sample correctness."""
    sweeps: dict[tuple[str, str], list] = {}
    for row in rows:
        sweeps.setdefault((row["task"], row["curve"]), []).append(row)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (task, curve), runs in sweeps.items():
        if n_boot < 1 or task not in y_max or any(r["correct"] is None or not math.isfinite(r["tpf"]) for r in runs):
            continue
        ci = bootstrap_aup([(r["tpf"], r["correct"]) for r in runs], y_max[task], n_boot=n_boot,
                           offset=offset, alpha=alpha)
        out.setdefault(task, {})[curve] = (ci.low, ci.high)
    return out


def aup_markdown(task: str, curves: Mapping[str, Points], aups: Mapping[str, float], y_max: float,
                 cis: Mapping[str, tuple[float, float]] | None = None, offset: float = DEFAULT_OFFSET) -> str:
    """AUP table of one task, best method first (a CI column only when some method has a CI)."""
    cis = cis or {}
    head = "| method | AUP |" + (" 95% CI |" if cis else "") + " acc @ lowest TPF | max TPF kept | points kept |"
    rule = "|---|---:|" + ("---|" if cis else "") + "---:|---:|---:|"
    lines = [f"### AUP — {task} (y_max = {y_max:g})", "", head, rule]
    for name in sorted(aups, key=aups.get, reverse=True):
        kept = kept_points(curves[name], offset)
        ci = (f" [{cis[name][0]:.2f}, {cis[name][1]:.2f}] |" if name in cis else " – |") if cis else ""
        lines.append(f"| {name} | {aups[name]:.4f} |{ci} {kept[0][1]:.2f} | {kept[-1][0]:.2f} "
                     f"| {len(kept)}/{len(curves[name])} |")
    return "\n".join(lines) + "\n"


def mean_aup_markdown(tables: Mapping[str, Mapping[str, float]]) -> str:
    """Mean AUP over tasks for methods present in every task ('' for a single task).

    Uses the leaderboard's convention (per-task AUP rounded to 4 decimals, then averaged and rounded), so
    published means come out digit for digit.
    """
    if len(tables) < 2:
        return ""
    means = mean_aup(tables, ndigits=4)
    lines = [f"### Mean AUP over {len(tables)} tasks ({', '.join(tables)})", "",
             "| method | mean AUP |", "|---|---:|"]
    lines += [f"| {m} | {means[m]:.4f} |" for m in sorted(means, key=means.get, reverse=True)]
    partial = sorted({m for t in tables.values() for m in t} - set(means))
    if partial:
        lines += ["", f"Not in every task (no mean): {', '.join(partial)}."]
    return "\n".join(lines) + "\n"


def runs_markdown(rows: Sequence[Mapping]) -> str:
    """A row per run: task, model, method, config label, accuracy, TPF, tokens/s, n."""
    lines = ["| task | model | method | config | accuracy (%) | TPF | tokens/s | n |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["curve"], r["tpf"])):
        lines.append(f"| {r['task']} | {r['model']} | {r['method']} | {r['label']} | {r['accuracy']:.2f} "
                     f"| {r['tpf']:.2f} | {r['tokens_per_s']:.1f} | {r['n']} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _figure(n_panels: int, panel_w: float, panel_h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_w * ncols, panel_h * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def points_note(rows: Sequence[Mapping]) -> str:
    """One line saying what the plotted points are: which setting varies along a curve, on how many problems."""
    curves: dict[tuple, list[dict]] = {}
    for r in rows:
        curves.setdefault((r["task"], r["curve"]), []).append(
            dict(part.split("=", 1) for part in str(r["label"]).split(", ") if "=" in part))
    keys = list(dict.fromkeys(k for labels in curves.values() for k in labels[0]
                              if len({lab.get(k) for lab in labels}) > 1))  # what varies along a curve
    sizes = sorted({int(r["n"]) for r in rows if r.get("n")})
    n = "" if not sizes else f", scored on {sizes[0]} problems" if len(sizes) == 1 else \
        f", scored on {sizes[0]}-{sizes[-1]} problems"
    varying = f" per {', '.join(keys)}" if keys else " per decoding setting"
    return f"Points: one{varying}{n}; TPF = generated tokens / forward passes."


def _add_note(fig, note: str | None) -> None:
    """`note` under the panels, wrapped to the figure's width."""
    if note:
        import textwrap

        fig.supxlabel("\n".join(textwrap.wrap(note, int(fig.get_figwidth() * 19))), fontsize=7)


def plot_accuracy_vs_tpf(curves: Mapping[str, Mapping[str, Points]], path: str | Path,
                         published: set[str] = frozenset(), note: str | None = None) -> Path:
    """One panel per task, one accuracy-vs-TPF curve per method (published curves dashed); `note`: a line
    under the panels saying what the points are."""
    fig, axes = _figure(len(curves), 5.0, 3.8)
    for ax, (task, task_curves) in zip(axes, curves.items()):
        for name, pts in task_curves.items():
            xs, ys = zip(*sorted(pts))
            style = "--" if name in published else "-"
            ax.plot(xs, ys, style, marker="o", markersize=4, label=name, alpha=0.7 if name in published else 1.0)
        ax.set(title=task, xlabel="TPF (tokens per forward)", ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _add_note(fig, note)
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_aup_bars(tables: Mapping[str, Mapping[str, float]], path: str | Path,
                  published: set[str] = frozenset(), cis: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
                  note: str | None = None) -> Path:
    """Leaderboard-style horizontal AUP bars: one panel per task, plus the mean when there are several.
    `cis` ({task: {method: (low, high)}}): error bars (the 95 % bootstrap CIs of report.md); `note`: a line
    under the panels."""
    cis = cis or {}
    panels = dict(tables)
    means = mean_aup(tables) if len(tables) > 1 else {}
    if means:
        panels["mean over tasks"] = means
    height = 0.9 + 0.32 * max(len(t) for t in panels.values())
    fig, axes = _figure(len(panels), 5.0, height)
    for ax, (title, values) in zip(axes, panels.items()):
        names = sorted(values, key=values.get)  # ascending, so the best bar is on top
        colors = ["0.65" if n in published else "C0" for n in names]
        ci = cis.get(title, {})
        lows = [values[n] - ci[n][0] if n in ci else 0.0 for n in names]
        highs = [ci[n][1] - values[n] if n in ci else 0.0 for n in names]
        ax.barh(names, [values[n] for n in names], color=colors, xerr=[lows, highs] if ci else None, capsize=3,
                error_kw={"elinewidth": 1})
        for y, n in enumerate(names):  # the value right of the bar or of its error bar
            ax.text(max(values[n], ci[n][1] if n in ci else values[n]), y, f" {values[n]:.1f}", va="center",
                    fontsize=7)
        ax.set(title=title, xlabel="AUP")
        ax.margins(x=0.15)
        ax.tick_params(axis="y", labelsize=7)
    _add_note(fig, note)
    fig.savefig(path, dpi=120)
    return Path(path)


def aup_note(y_max: Mapping[str, float], n_boot: int) -> str:
    """One line under the AUP bars: what AUP measures here and where the error bars come from."""
    ys = ", ".join(f"{v:.4g}" if len(y_max) == 1 else f"{t} {v:.4g}" for t, v in y_max.items())
    ci = f"; error bars: 95 % CI, {n_boot} bootstrap resamples of the problems" if n_boot else ""
    return f"AUP of each accuracy-vs-TPF curve (y_max {ys}){ci}."


# ----------------------------------------------------------------------------- entry points


def report_main(run_dirs: Iterable[str | Path], out_dir: str | Path, published: str | Path | None = None,
                n_boot: int = 1000, offset: float = DEFAULT_OFFSET, alpha: float = DEFAULT_ALPHA) -> dict:
    """Write report.md, accuracy_vs_tpf.png, aup_bar.png and aup.json for the given results.

    ``run_dirs``: results.json files or directories holding them. ``published``: optional YAML of
    published points to compare against. ``n_boot``: bootstrap replicates for the AUP CI (0: none).
    Returns the output paths (as str) and the AUP numbers.
    """
    files = find_results(run_dirs)
    rows = result_rows([load_results(f) for f in files])
    curves = curves_by_task(rows)
    if not curves:
        raise ValueError("no run has a finite, positive TPF: nothing to report")
    pub_y_max, pub_names = _merge_published(curves, published_points_from_yaml(published)) if published else ({}, set())
    own_best = {t: max(r["accuracy"] for r in rows if r["task"] == t) for t in curves}
    y_max = {t: max(own_best[t], pub_y_max.get(t, -math.inf)) for t in curves}
    tables = _aup_tables(curves, y_max, offset, alpha)
    cis = _bootstrap_cis(rows, y_max, n_boot, offset, alpha)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# tadllm evaluation report", "", "## Runs", "", runs_markdown(rows), "## AUP", ""]
    md += [aup_markdown(t, curves[t], tables[t], y_max[t], cis.get(t), offset) for t in tables]
    md.append(mean_aup_markdown(tables))
    paths = {
        "markdown": out / "report.md",
        "accuracy_vs_tpf": plot_accuracy_vs_tpf(curves, out / "accuracy_vs_tpf.png", pub_names, points_note(rows)),
        "aup_bar": plot_aup_bars(tables, out / "aup_bar.png", pub_names, cis, aup_note(y_max, n_boot if cis else 0)),
        "aup_json": out / "aup.json",
    }
    paths["markdown"].write_text("\n".join(md))
    summary = {"y_max": y_max, "aup": tables, "mean_aup": mean_aup(tables), "aup_ci95": cis,
               "published": sorted(pub_names), "results": [str(f) for f in files]}
    paths["aup_json"].write_text(json.dumps(summary, indent=2))
    return {**{k: str(v) for k, v in paths.items()}, **summary}


def aup_main(yaml_path: str | Path, offset: float = DEFAULT_OFFSET, alpha: float = DEFAULT_ALPHA) -> str:
    """Markdown AUP tables (per task, and the mean over tasks) for a YAML of published points."""
    spec = published_points_from_yaml(yaml_path)
    tables = aup_from_yaml(yaml_path, offset, alpha)
    parts = [aup_markdown(t, spec[t]["methods"], tables[t], _task_y_max(spec[t]["methods"], spec[t]["y_max"]),
                          offset=offset) for t in tables]
    parts.append(mean_aup_markdown(tables))
    return "\n".join(p for p in parts if p)
