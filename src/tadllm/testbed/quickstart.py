"""`tad quickstart`: the whole TAD pipeline on the bundled testbed teacher, end to end.

Stages: load the teacher -> verified teacher trajectories on training problems -> train a TAD-Quality
and a TAD-Speed student (and, with --baselines, the equal-compute control and CE-only students) ->
evaluate every model with a confidence-threshold sweep on held-out problems -> one table (accuracy,
TPF, AUP per method) and a report folder (results.json, report.md, accuracy-vs-TPF PNG).

The defaults take minutes on a 2-core CPU (measured times in the README); `--device cuda` with the size knobs
(`--train-problems`, `--train-steps`, `--test-problems`, `--seeds`) runs the full experiment with the
same recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BUNDLED_TEACHER = Path(__file__).resolve().parents[1] / "assets" / "testbed-teacher"


@dataclass
class QuickstartConfig:
    """The quickstart's knobs (`tad quickstart --FLAG`, `--config FILE.yaml` or `key=value`)."""

    out_dir: str = field(default="quickstart_out", metadata={"help": "output folder (resumed: trained students "
                                                                     "are reused)"})
    teacher: str = field(default=str(BUNDLED_TEACHER), metadata={
        "help": "testbed teacher checkpoint (default: bundled)"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N"})
    train_problems: int = field(default=128, metadata={"help": "training problems the teacher decodes"})
    test_problems: int = field(default=300, metadata={"help": "held-out problems every model is evaluated on"})
    traj_temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the trajectories"})
    train_steps: int = field(default=100, metadata={"help": "optimizer steps of each student"})
    train_batch_size: int = field(default=32, metadata={"help": "training batch size"})
    learning_rate: float = field(default=1e-4, metadata={"help": "learning rate of the students"})
    quality_delta: int = field(default=4, metadata={"help": "δ of the TAD-Quality student"})
    speed_delta: int = field(default=16, metadata={"help": "δ of the TAD-Speed student"})
    policy: str = field(default="confidence", metadata={"help": "threshold policy of the evaluation sweep",
                                                         "choices": ("confidence", "entropy")})
    thresholds: list[float] = field(default_factory=lambda: [0.999, 0.99, 0.95, 0.9, 0.7], metadata={
        "help": "comma-separated confidence thresholds of the sweep"})
    tpf1_point: bool = field(default=False, metadata={"help": "also evaluate one token per step (TPF 1)"})
    baselines: bool = field(default=False, metadata={"help": "add the control and CE-only students"})
    seeds: int = field(default=1, metadata={"help": "students trained per method (seeds seed, seed+1, ...)"})
    batch_size: int = field(default=256, metadata={"help": "decoding batch size"})
    seed: int = field(default=0, metadata={"help": "first seed"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads"})


# Seconds per unit of work, fitted to the README's default run on 2 otherwise idle CPU cores: a decoding step
# of one trajectory, one training example of a student, one test problem at one threshold. Only the first
# estimate uses them as they are; later ones are scaled by how fast the finished stages ran here.
COST = {"load": 0.5, "trajectory_step": 0.0079, "train_example": 0.025, "eval_point": 0.0167, "report": 1.0}


def stage_estimates(cfg: QuickstartConfig, methods: list[str], gen_length: int) -> dict[str, float]:
    """Predicted seconds of each stage from the size knobs (`COST`)."""
    points = len(cfg.thresholds) + (1 if cfg.tpf1_point else 0)
    evaluate = cfg.test_problems * points * COST["eval_point"]
    out = {"load teacher and problems": COST["load"],
           "teacher trajectories": cfg.train_problems * gen_length * COST["trajectory_step"]}
    out.update({f"train {m}": cfg.seeds * cfg.train_steps * cfg.train_batch_size * COST["train_example"]
                for m in methods})
    out.update({"evaluate teacher": evaluate}, **{f"evaluate {m}": cfg.seeds * evaluate for m in methods})
    out["report"] = COST["report"]
    return out


class Stages:
    """Prints each stage with the elapsed time and the time left: the stages' predicted seconds, scaled by
    how much longer or shorter than predicted the finished stages took on this machine."""

    def __init__(self, estimates: dict[str, float]):
        self.estimates, self.times, self.current, self.index = estimates, {}, None, 0
        self.start = self.stage_start = time.monotonic()

    def begin(self, name: str):
        self._finish()
        self.current, self.index = name, self.index + 1
        print(f"\n==> [{self.index}/{len(self.estimates)}] {name}  (elapsed {_fmt(self.stage_start - self.start)}, "
              f"{self.left()})", flush=True)

    def left(self) -> str:
        remaining = sum(v for k, v in self.estimates.items() if k not in self.times)
        predicted = sum(self.estimates[k] for k in self.times)
        if predicted < 10:  # nothing long measured yet: the guess of `COST`
            return f"about {_fmt(remaining)} left (first estimate)"
        return f"about {_fmt(remaining * sum(self.times.values()) / predicted)} left"

    def _finish(self):
        now = time.monotonic()
        if self.current is not None:
            self.times[self.current] = now - self.stage_start
        self.stage_start = now

    def end(self) -> dict[str, float]:
        """Print the total and every stage's time; returns the stage times in seconds."""
        self._finish()
        self.current = None
        print(f"\n==> done in {_fmt(time.monotonic() - self.start)}  ("
              + ", ".join(f"{k} {_fmt(v)}" for k, v in self.times.items()) + ")", flush=True)
        return dict(self.times)


def _fmt(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def testbed_task(teacher_dir: str):
    """The arithmetic task with the difficulty the teacher was trained on (its testbed.json): the same task
    `tad eval --task arith` and `tad trajectories --task arith` use for this model."""
    from .settings import load_task, recorded_settings

    meta = recorded_settings(teacher_dir)
    task = load_task("arith", meta)
    return task, task.spec, meta


def problems(spec, meta, n_train: int, n_test: int):
    """Training problems (a prefix of the teacher's training split) and held-out test problems."""
    from ..tasks.arith import make_splits

    train, test = make_splits(n_train, max(n_test, meta.get("n_test", n_test)), seed=meta.get("data_seed", 0),
                              spec=spec)
    return train, test[:n_test]


def build_trajectories(cfg: QuickstartConfig, task, train, meta, out: Path) -> Path:
    from ..decoding import DecodeConfig
    from ..models import load_model
    from ..trajectories import generate_trajectories

    model, tokenizer, family = load_model(cfg.teacher, dtype="float32", device=cfg.device)
    L = meta["gen_length"]
    decode = DecodeConfig(gen_length=L, block_length=meta["block_length"], policy="low_confidence", steps=L,
                          temperature=cfg.traj_temperature, seed=cfg.seed)
    path = out / "trajectories"
    summary = generate_trajectories(model, tokenizer, family, task, train, decode, out_dir=path,
                                    batch_size=cfg.batch_size, seed=cfg.seed, model_name="testbed-teacher")
    print(f"trajectories: {summary.get('kept')} kept of {summary.get('samples')} "
          f"(teacher accuracy with the hint {100 * summary.get('teacher_accuracy', 0):.1f}%)")
    if not summary.get("kept"):
        raise RuntimeError(f"the teacher {cfg.teacher} produced no verified-correct trajectory on "
                           f"{summary.get('samples')} training problems, so there is nothing to distil: train the "
                           f"teacher longer (tad pretrain) or point --teacher at a trained one")
    return path


def train_student(cfg: QuickstartConfig, name: str, traj: Path, out: Path, seed: int, **tad) -> Path:
    from ..distill import load_config, train

    out_dir = out / "students" / f"{name}-s{seed}"
    if (out_dir / "config.json").exists() and (out_dir / "model.safetensors").exists():
        print(f"{name}: reusing {out_dir}")
        return out_dir
    config = load_config(None, None, model_name_or_path=cfg.teacher, train_data=str(traj), output_dir=str(out_dir),
                         use_peft=False, model_dtype="float32", learning_rate=cfg.learning_rate,
                         lr_scheduler_type="constant", per_device_train_batch_size=cfg.train_batch_size,
                         max_steps=cfg.train_steps, logging_steps=max(1, cfg.train_steps // 6), save_strategy="no",
                         seed=seed, use_cpu=cfg.device == "cpu", bf16=False, report_to="none",
                         dataloader_num_workers=0, **tad)
    train(config)
    return out_dir


def train_control(cfg: QuickstartConfig, task, train_examples, meta, out: Path, seed: int) -> Path:
    """The equal-compute control: the pretraining objective continued on the same problems."""
    from .pretrain import PretrainConfig, continue_pretraining

    out_dir = out / "students" / f"control-s{seed}"
    if (out_dir / "model.safetensors").exists():
        print(f"control: reusing {out_dir}")
        return out_dir
    pc = PretrainConfig(output_dir=str(out_dir / "run"), learning_rate=cfg.learning_rate,
                        lr_scheduler_type="constant", warmup_steps=0, per_device_train_batch_size=cfg.train_batch_size,
                        max_steps=cfg.train_steps, gen_length=meta["gen_length"], block_length=meta["block_length"],
                        hint=meta.get("hint", "answer"), accuracy_every=10**9, save_strategy="no", seed=seed,
                        use_cpu=cfg.device == "cpu", bf16=False, logging_steps=max(1, cfg.train_steps // 6),
                        save_dtype="float32", dataloader_num_workers=0)
    return continue_pretraining(pc, cfg.teacher, task, train_examples, out_dir)


def evaluate_model(cfg: QuickstartConfig, name: str, path, task, test, meta, out: Path) -> dict:
    from ..decoding import DecodeConfig
    from ..eval.runner import run_sweep
    from ..models import load_model

    model, tokenizer, family = load_model(path, dtype="float32", device=cfg.device)
    base = DecodeConfig(gen_length=meta["gen_length"], block_length=meta["block_length"], policy=cfg.policy,
                        threshold=cfg.thresholds[0], stop_at_eos=True, seed=cfg.seed)
    points = [{"threshold": t} for t in cfg.thresholds]
    results = run_sweep(model, tokenizer, family, task, test, base, points, out / "eval" / name,
                        model_name=str(path), method=name, batch_size=cfg.batch_size)
    if cfg.tpf1_point:
        one = DecodeConfig(gen_length=meta["gen_length"], block_length=meta["block_length"],
                           policy="low_confidence", stop_at_eos=True, seed=cfg.seed)
        results = run_sweep(model, tokenizer, family, task, test, one, None, out / "eval" / name,
                            model_name=str(path), method=name, batch_size=cfg.batch_size)
    return results


def accuracy_at_tpf(curve: list[tuple[float, float]], tpf: float) -> float | None:
    """Accuracy interpolated linearly between the two sweep points around `tpf` (None outside the range)."""
    for (t0, a0), (t1, a1) in zip(curve, curve[1:]):
        if t0 <= tpf <= t1:
            return a0 if t1 == t0 else a0 + (a1 - a0) * (tpf - t0) / (t1 - t0)
    return curve[0][1] if len(curve) == 1 and abs(curve[0][0] - tpf) < 1e-9 else None


def method_of(key: str) -> str:
    """'tad-speed-s2' -> 'tad-speed' (seeded runs of one method are grouped)."""
    head, _, tail = key.rpartition("-s")
    return head if head and tail.isdigit() else key


def point_label(config: dict) -> str:
    """A sweep point named by its setting: 'threshold 0.99' (threshold policies) or '1 token/step'."""
    from ..decoding.config import THRESHOLD_POLICIES

    if config.get("policy") in THRESHOLD_POLICIES:
        return f"threshold {config['threshold']:g}"
    steps, length = config.get("steps"), config.get("gen_length")
    return "1 token/step" if steps == length else f"{config.get('policy')} {steps} steps"


def summary_table(all_results: dict[str, dict], tpf_grid=(4, 8, 12, 16)) -> tuple[str, dict]:
    """Markdown tables: each sweep point (accuracy @ TPF, a column per setting) and AUP per run (y_max = best
    accuracy of any run), then per method the mean and spread over seeds of AUP and of accuracy at matched
    TPF (only the TPF values that some method's sweep reaches)."""
    from ..eval.aup import aup_table

    cells = {name: {point_label(r["config"]): (r["aggregate"]["accuracy"], r["aggregate"]["tpf"]) for r in res["runs"]}
             for name, res in all_results.items()}
    columns = list(dict.fromkeys(label for c in cells.values() for label in c))
    curves = {name: sorted((tpf, acc) for acc, tpf in c.values()) for name, c in cells.items()}
    aups = aup_table(curves)
    lines = [_row(["run (acc % @ TPF)"] + columns + ["AUP"]), "|" + "---|" * (len(columns) + 2)]
    for name, c in cells.items():
        row = [f"{c[k][0]:.1f} @ {c[k][1]:.1f}" if k in c else "" for k in columns]
        lines.append(_row([name] + row + [f"{aups[name]:.0f}"]))
    per_method = method_summary(curves, aups, tpf_grid)
    grid = [t for t in tpf_grid if any(m["acc_at_tpf"][t] is not None for m in per_method.values())]
    lines += ["", _row(["method", "runs", "AUP mean ± sd"] + [f"acc % @ TPF {t}" for t in grid]),
              "|" + "---|" * (3 + len(grid))]
    for method, m in per_method.items():
        at = [f"{m['acc_at_tpf'][t]:.1f}" if m["acc_at_tpf"][t] is not None else "–" for t in grid]
        lines.append(_row([method, str(len(m["runs"])), f"{m['aup_mean']:.0f} ± {m['aup_sd']:.0f}"] + at))
    return "\n".join(lines), {"curves": curves, "aup": aups, "methods": per_method}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def method_summary(curves: dict, aups: dict, tpf_grid) -> dict:
    """Per method (seeded runs grouped): AUP mean and sd, and the mean accuracy at each TPF of the grid
    (None where no run's sweep reaches that TPF)."""
    import statistics

    groups: dict[str, list[str]] = {}
    for name in curves:
        groups.setdefault(method_of(name), []).append(name)
    out = {}
    for method, names in groups.items():
        values = [aups[n] for n in names]
        at = {t: [a for a in (accuracy_at_tpf(curves[n], t) for n in names) if a is not None] for t in tpf_grid}
        out[method] = {"aup_mean": statistics.fmean(values), "runs": names,
                       "aup_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                       "acc_at_tpf": {t: (statistics.fmean(v) if v else None) for t, v in at.items()}}
    return out


def run(cfg: QuickstartConfig) -> dict:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quickstart_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    methods = ["tad-quality", "tad-speed"] + (["control", "ce-only"] if cfg.baselines else [])
    task, spec, meta = testbed_task(cfg.teacher)
    stages = Stages(stage_estimates(cfg, methods, meta["gen_length"]))

    stages.begin("load teacher and problems")
    train_examples, test = problems(spec, meta, cfg.train_problems, cfg.test_problems)
    print(f"teacher {cfg.teacher}: {meta.get('parameters', 0) / 1e6:.2f}M parameters; "
          f"{len(train_examples)} training problems, {len(test)} test problems; device {cfg.device}")

    stages.begin("teacher trajectories")
    traj = build_trajectories(cfg, task, train_examples, meta, out)

    students: dict[str, Path] = {}
    for m in methods:
        stages.begin(f"train {m}")
        for s in range(cfg.seeds):
            seed = cfg.seed + s
            key = m if cfg.seeds == 1 else f"{m}-s{seed}"
            if m == "tad-quality":
                students[key] = train_student(cfg, m, traj, out, seed, delta=cfg.quality_delta, loss_mode="tad")
            elif m == "tad-speed":
                students[key] = train_student(cfg, m, traj, out, seed, delta=cfg.speed_delta, loss_mode="tad")
            elif m == "ce-only":
                students[key] = train_student(cfg, m, traj, out, seed, delta=cfg.quality_delta, loss_mode="ce_only")
            else:
                students[key] = train_control(cfg, task, train_examples, meta, out, seed)

    all_results = {}
    stages.begin("evaluate teacher")
    all_results["teacher"] = evaluate_model(cfg, "teacher", cfg.teacher, task, test, meta, out)
    for m in methods:
        stages.begin(f"evaluate {m}")
        for key in [k for k in students if k == m or k.startswith(m + "-s")]:
            all_results[key] = evaluate_model(cfg, key, students[key], task, test, meta, out)

    stages.begin("report")
    from ..eval.report import report_main

    table, numbers = summary_table(all_results)
    report = report_main([out / "eval"], out / "report", n_boot=200)
    combined = {"config": asdict(cfg), "teacher_meta": meta, "methods": all_results, "summary": numbers,
                "report": {k: v for k, v in report.items() if isinstance(v, str)}}
    (out / "results.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nreport: {out / 'report'} (report.md, accuracy_vs_tpf.png, aup_bar.png); all numbers: {out / 'results.json'}")
    combined["stage_seconds"] = stages.end()
    (out / "results.json").write_text(json.dumps(combined, indent=1, default=str))
    return combined


def build_parser():
    from tadllm.cliargs import ConfigParser

    p = ConfigParser(prog="tad quickstart", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_dataclass(QuickstartConfig, "quickstart")
    return p


def main_quickstart(argv=None) -> int:
    p = build_parser()
    (cfg,) = p.parse(argv)
    if not cfg.thresholds:
        p.error("--thresholds needs at least one value")
    if not (Path(cfg.teacher) / "testbed.json").exists():
        p.error(f"{cfg.teacher} is not a testbed teacher (no testbed.json); train one with `tad pretrain`")
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main_quickstart())
