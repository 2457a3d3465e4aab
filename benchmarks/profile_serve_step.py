"""Where a serving step's time goes: a `DecodeState` as `tad serve` runs it (rows of mixed prompt lengths that
joined at different steps, dual cache, eager forwards) against the same state with one row.

    python benchmarks/profile_serve_step.py --out runs/profile            # LLaDA-8B shape, one GPU
    python benchmarks/profile_serve_step.py --small --device cpu --out runs/profile   # smoke run

For each batch size it reports the wall time of a step (median over the measured steps), the forward calls
per step split into refresh and cached calls, the wall time spent inside forward calls (each call timed with a
device sync around it, in a separate pass, so the step times are not disturbed), and the top device
operations of a torch.profiler trace. `--variants packed split`: a step whose rows both refresh and run their
cached window as one packed pass (`forward_packed`, what `tad serve` runs) or as two forwards, side by side, in
`--rounds` rounds of alternating order (packed, split; split, packed; ...) so that a drift of the device's speed
during the run falls on both; the step time is the median over every round's steps, each round's median kept.
Writes profile_serve_step.json into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LLADA_8B, SMALL_LLADA, random_llada, sync, write_json  # noqa: E402


class Timed(torch.nn.Module):
    """The model, counting its calls by kind and (when `timing`) their synced wall time."""

    def __init__(self, model):
        super().__init__()
        self.model, self.timing = model, False
        self.calls = {"refresh": 0, "cached": 0, "full": 0, "packed": 0}
        self.seconds = dict.fromkeys(self.calls, 0.0)

    @property
    def config(self):
        return self.model.config

    def get_base_model(self):
        return self.model

    def forward(self, input_ids, **kwargs):
        kind = "refresh" if kwargs.get("use_cache") else ("cached" if kwargs.get("kv_cache") else "full")
        return self._call(kind, self.model, input_ids, **kwargs)

    def forward_packed(self, window_ids, *args, **kwargs):
        return self._call("packed", self.model.forward_packed, window_ids, *args, **kwargs)

    def _call(self, kind, fn, ids, *args, **kwargs):
        self.calls[kind] += 1
        if not self.timing:
            return fn(ids, *args, **kwargs)
        sync(ids.device)
        t0 = time.perf_counter()
        out = fn(ids, *args, **kwargs)
        sync(ids.device)
        self.seconds[kind] += time.perf_counter() - t0
        return out


def staggered_state(model, family, config, batch: int, prompt_lengths: list[int], every: int, vocab: int,
                    seed: int = 0):
    """A DecodeState with `batch` rows, one joining every `every` steps (as clients arrive), prompt lengths cycled."""
    from tadllm.decoding import DecodeState

    g = torch.Generator().manual_seed(seed)
    state = DecodeState(model, family, config)
    for i in range(batch):
        n = prompt_lengths[i % len(prompt_lengths)]
        state.add([torch.randint(0, min(vocab, 1000), (n,), generator=g).tolist()])
        for _ in range(every if i < batch - 1 else 0):
            state.step()
    return state


def measure(state, timed: Timed, steps: int, device) -> dict:
    """Median step time over `steps` steps, then the calls and synced forward time of as many steps again."""
    times = []
    before = dict(timed.calls)
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        state.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    calls = {k: timed.calls[k] - before[k] for k in before}
    timed.seconds = dict.fromkeys(timed.seconds, 0.0)
    timed.timing = True
    t0 = time.perf_counter()
    for _ in range(steps):
        state.step()
    sync(device)
    wall = time.perf_counter() - t0
    timed.timing = False
    inside = sum(timed.seconds.values())
    return {"step_ms": 1000 * statistics.median(times), "step_times_ms": [1000 * t for t in times],
            "calls_per_step": {k: v / steps for k, v in calls.items()},
            "synced_step_ms": 1000 * wall / steps, "forward_ms_per_step": 1000 * inside / steps,
            "forward_ms_by_kind": {k: 1000 * v / steps for k, v in timed.seconds.items()}}


def trace(state, steps: int) -> list[dict]:
    """The top device (or CPU) operations of `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            state.step()
        sync(state.device)
    key = "device_time_total" if torch.cuda.is_available() else "cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:15]
    return [{"op": e.key, "ms_per_step": getattr(e, key, 0) / 1000 / steps, "calls_per_step": e.count / steps}
            for e in rows]


def measure_variant(model, family, config, batch, lengths, every, steps, variant, traced) -> dict:
    """One round of one variant: a fresh staggered state (the same rows every time), measured (and traced)."""
    timed = Timed(model)
    if variant == "split":
        timed.forward_packed = None  # the cache then runs a mixed step as two forwards
    state = staggered_state(timed, family, config, batch, lengths, every, family.mask_token_id)
    row = measure(state, timed, steps, state.device)
    if traced:
        row["top_ops"] = trace(state, min(steps, 8))
    return row


def summary(rounds: list[dict]) -> dict:
    """A variant over its rounds: every round's step times and their median, each round's median, the first
    round's rest (calls, synced forwards, trace)."""
    times = [t for row in rounds for t in row["step_times_ms"]]
    return {**rounds[0], "step_ms": statistics.median(times), "step_times_ms": times,
            "step_ms_by_round": [r["step_ms"] for r in rounds]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/profile")
    p.add_argument("--small", action="store_true", help="tiny random LLaDA (smoke run)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--prompt-lengths", type=int, nargs="+", default=None)
    p.add_argument("--every", type=int, default=3, help="steps between two rows joining")
    p.add_argument("--steps", type=int, default=None, help="measured steps (default 24; --small 4)")
    p.add_argument("--variants", nargs="+", default=["packed", "split"], choices=["packed", "split"],
                   help="mixed refresh / cached steps as one packed pass or as two forwards")
    p.add_argument("--rounds", type=int, default=2, help="rounds per batch size, the variants' order alternating")
    args = p.parse_args(argv)
    from tadllm.decoding import DecodeConfig

    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    model, family = random_llada(SMALL_LLADA if args.small else LLADA_8B, args.device, dtype=dtype)
    gen, block = (64, 8) if args.small else (256, 32)
    lengths = args.prompt_lengths or ([4, 8, 16] if args.small else [32, 64, 128, 256, 512])
    steps = args.steps or (4 if args.small else 24)
    config = DecodeConfig(gen_length=gen, block_length=block, policy="low_confidence", steps=gen // 2,
                          stop_at_eos=False, use_cache="dual")
    results = {}
    with torch.no_grad():
        for batch in args.batch_sizes:
            rounds: dict[str, list[dict]] = {v: [] for v in args.variants}
            for r in range(args.rounds):
                for variant in args.variants if r % 2 == 0 else args.variants[::-1]:
                    row = measure_variant(model, family, config, batch, lengths, args.every, steps, variant,
                                          traced=r == 0)
                    rounds[variant].append(row)
                    print(f"batch {batch} {variant} (round {r + 1}): step {row['step_ms']:.1f} ms, synced "
                          f"{row['synced_step_ms']:.1f} ms, inside forwards {row['forward_ms_per_step']:.1f} ms "
                          f"({row['forward_ms_by_kind']}), calls per step {row['calls_per_step']}")
                    for op in row.get("top_ops", [])[:10]:
                        print(f"    {op['ms_per_step']:8.2f} ms  x{op['calls_per_step']:6.1f}  {op['op'][:90]}")
            results[str(batch)] = {v: summary(rows) for v, rows in rounds.items()}
            print(f"batch {batch}: median step " + ", ".join(f"{v} {results[str(batch)][v]['step_ms']:.1f} ms"
                                                             for v in args.variants))
    write_json(args.out, "profile_serve_step.json", {"device": str(args.device), "gen_length": gen,
                                                     "block_length": block, "prompt_lengths": lengths,
                                                     "every": args.every, "rounds": args.rounds,
                                                     "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
