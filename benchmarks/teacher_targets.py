"""How good are TAD's targets? The hinted teacher's distribution vs the verified trajectory labels.

    python benchmarks/teacher_targets.py --teacher src/tadllm/assets/testbed-teacher --out runs/targets
    python benchmarks/teacher_targets.py --teacher runs/testbed-teacher-commute/final --out runs/targets

CE-only distillation trains on the tokens of *verified-correct* teacher trajectories; TAD replaces the
labels of the distant positions (revealed more than δ steps later) by the hinted teacher's distribution.
This script builds verified trajectories exactly as `tad quickstart` does (hint `ref ####<answer>`,
one token per step, temperature 0.7), then, at every step s of every trajectory, runs the hinted teacher on
the state x(s) and reports, for each still-masked position split by the remaining steps r = reveal - s
(near: r <= δ, distant: r > δ, and finer buckets):
- `p(label)`: the teacher's mean probability of the trajectory's token (the CE label);
- `top1=label %`: how often the teacher's most likely token is that label;
- `entropy`: mean entropy of the teacher's distribution (nats).
A distant target that puts little mass on the verified token is either spread over equally valid tokens
(the `commute` task's operand orders) or wrong; the two are told apart by `top1 valid %` on the `arith`
task: the teacher's most likely token is accepted if it equals the label or, for an operand slot of an
add/mul step, the other operand order's token at that position. CPU is fine (~1-2 min per teacher).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import table, write_json  # noqa: E402

BUCKETS = ((1, 4), (5, 16), (17, 32), (33, 64))


def swapped_response(text: str) -> str | None:
    """The same chain with every add/mul step's operands swapped (None if not parseable)."""
    from tadllm.tasks.arith import ANSWER_MARKER

    body, sep, tail = text.partition(ANSWER_MARKER)
    if not sep:
        return None
    out = []
    for step in filter(None, body.split(";")):
        lhs, eq, value = step.partition("=")
        for sym in "+*":
            if sym in lhs:
                a, b = lhs.split(sym, 1)
                lhs = f"{b}{sym}{a}"
                break
        out.append(f"{lhs}{eq}{value}")
    return "".join(s + ";" for s in out) + sep + tail


def main(argv=None) -> int:
    from tadllm.distill.data import TADCollator
    from tadllm.distill.trainer import model_inputs, response_logits
    from tadllm.models import load_model
    from tadllm.testbed.quickstart import QuickstartConfig, build_trajectories, problems, testbed_task
    from tadllm.trajectories import read_trajectories

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="testbed teacher folder (default: the bundled one)")
    p.add_argument("--n", type=int, default=128, help="training problems to build trajectories on")
    p.add_argument("--delta", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/targets")
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    cfg = QuickstartConfig(out_dir=a.out, device=a.device, train_problems=a.n, batch_size=a.n)
    if a.teacher:
        cfg.teacher = a.teacher
    out = Path(a.out) / Path(cfg.teacher).name
    task, spec, meta = testbed_task(cfg.teacher)
    train, _ = problems(spec, meta, a.n, 1)
    traj = build_trajectories(cfg, task, train, meta, out)
    records = [r for r in read_trajectories(traj, as_list=True) if r.get("correct") is not False]
    model, tokenizer, family = load_model(cfg.teacher, dtype="float32", device=a.device)
    model.eval()
    collator = TADCollator(family.mask_token_id, family.fill_token_id, delta=a.delta)
    L = len(records[0]["tokens"])
    # the alternative-order token at each position, where the other operand order has the same length
    alt = []
    for r in records:
        other = swapped_response(r["text"])
        ids = tokenizer.encode(other, add_special_tokens=False) if other else []
        toks = list(r["tokens"])
        alt.append(ids + toks[len(ids):] if len(ids) <= len(toks) else toks)
    sums: dict[str, dict[str, float]] = {}

    def add(name, mask, p_label, top1_ok, valid_ok, ent):
        s = sums.setdefault(name, {"positions": 0, "p_label": 0.0, "top1": 0.0, "valid": 0.0, "entropy": 0.0})
        s["positions"] += int(mask.sum())
        s["p_label"] += float(p_label[mask].sum())
        s["top1"] += float(top1_ok[mask].sum())
        s["valid"] += float(valid_ok[mask].sum())
        s["entropy"] += float(ent[mask].sum())

    with torch.no_grad():
        last = [max(r["reveal_step"]) for r in records]  # states after the last reveal have nothing masked
        for step in range(max(last)):
            idx = [i for i, n in enumerate(last) if step < n]
            batch = collator([{**records[i], "step": step} for i in idx])
            kw = model_inputs(family, batch["teacher_input_ids"].to(a.device),
                              batch["teacher_attention_mask"].to(a.device))
            logp = response_logits(model(**kw).logits, family, L).float().log_softmax(-1).cpu()
            labels = batch["labels"]
            masked = labels != -100
            safe = labels.clamp_min(0)
            p_label = logp.gather(-1, safe[..., None]).squeeze(-1).exp()
            top = logp.argmax(-1)
            alt_ids = torch.tensor([alt[i] for i in idx])
            top1_ok = top == safe
            valid_ok = top1_ok | (top == alt_ids)
            ent = -(logp.exp() * logp).sum(-1)
            remaining = torch.tensor([records[i]["reveal_step"] for i in idx]) - step
            add("near (r <= delta)", batch["near"].bool(), p_label, top1_ok, valid_ok, ent)
            add("distant (r > delta)", batch["distant"].bool(), p_label, top1_ok, valid_ok, ent)
            for lo, hi in BUCKETS:
                add(f"r in {lo}..{hi}", masked & (remaining >= lo) & (remaining <= hi), p_label, top1_ok, valid_ok,
                    ent)
    rows = []
    for name, s in sums.items():
        n = max(s["positions"], 1)
        rows.append({"positions": name, "count": s["positions"], "p(label)": s["p_label"] / n,
                     "top1=label %": 100 * s["top1"] / n, "top1 valid %": 100 * s["valid"] / n,
                     "entropy": s["entropy"] / n})
    result = {"benchmark": "teacher_targets", "teacher": cfg.teacher, "testbed": meta, "delta": a.delta,
              "trajectories": len(records), "rows": rows}
    name = a.name or f"targets_{Path(cfg.teacher).name}.json"
    path = write_json(a.out, name, result)
    print(table(rows, ["positions", "count", "p(label)", "top1=label %", "top1 valid %", "entropy"],
                f"hinted teacher vs verified labels: {cfg.teacher} (commute {meta.get('commute', 0.0)}), "
                f"{len(records)} trajectories, delta {a.delta}  -> {path}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
