"""Decoding throughput: no cache vs prefix vs dual KV cache, at equal tokens per forward (TPF).

    python benchmarks/bench_decoding.py --out runs/bench            # GPU: ~1.65B random LLaDA, bf16
    python benchmarks/bench_decoding.py --small --out runs/bench    # CPU smoke run (tiny model)

The model is a LLaDA-architecture model with random weights (d_model 2048, 22 layers, 16 heads, MLP 5632,
vocabulary 126464, ~1.65B parameters; `--arch 8b`: LLaDA-8B's shape, d_model 4096, 32 layers, MLP 12288). Every configuration decodes `gen_length` positions with the
fixed-count `low_confidence` policy (`steps = gen_length / 2`), so every mode spends exactly the same number
of forward passes (TPF = gen_length / steps) and only the cost of a forward differs. With random weights the
*tokens* of the cached runs differ from the uncached ones (the cache is an approximation; `match` reports the
fraction of equal tokens); only speed is measured here.

For each batch size and mode:
- `tok/s`: generated positions per second (batch x gen_length / wall time, median of `--repeat` runs);
- `x none`: tok/s relative to no cache at the same batch size;
- `fwd ms`: model-forward time per step inside the loop (measured in a separate run that synchronises the
  device before and after each forward, so it is the forward alone on the loop's exact inputs), split into
  refresh (full) and cached forwards in the JSON; a cached step whose rows are at different blocks runs a
  refresh call and a cached call (`calls per step` in the JSON);
- `loop ms`: the rest of a step (policy, bookkeeping, host syncs) = wall per step - forward per step;
- `roof%` (batch 1): weight bytes per forward / forward time / peak HBM bandwidth (3.0e12 B/s for H100,
  4.8e12 for H200, from torch.cuda.get_device_name), i.e. the fraction of the memory-bandwidth roofline;
- `roofline x` (cached modes, on a known GPU): the ratio to no cache that the same steps would give if every
  forward ran exactly at the roofline (max of weight-read time and matmul time at peak bf16 FLOP/s), an
  estimate of how far a cache can go at this batch and prompt length (`roofline_speedup`).
`--schedule multi_block` decodes with the entropy policy (`--threshold`, default 0.5) and multi-block pipelining
instead (`--reveal opened`: the reference's rule; `activated`: the earlier tadllm rule — also what an older
checkout's loop does when this script runs against its src/, for a before/after of the same rule): its TPF
depends on the logits, so compare its `step ms` (the cost of one step) across checkouts and modes.
`--prompt-length` takes several lengths (one row per length; ratios are within a length).
`--compile` wraps the model in torch.compile (dynamic=False) first; the compile time is reported
separately (prefix cache changes shapes at every block, so it recompiles; use it with --modes none dual).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import (BIG_LLADA, LLADA_8B, SMALL_LLADA, device_info, median, num_params, pick_device,  # noqa: E402
                    random_llada, sync, table, write_json)

from tadllm.decoding import DecodeConfig, generate  # noqa: E402
from tadllm.decoding.graphs import CUDAGraphModel  # noqa: E402


class TimedModel(nn.Module):
    """Synchronises the device around each forward and records its time and kind (refresh / cached / full).
    Unwraps like a peft model (the cache-support check names the model inside in its errors)."""

    def __init__(self, model, device):
        super().__init__()
        self.inner = model
        self.device_ = device
        self.records: list[tuple[str, float, int, int]] = []
        if hasattr(model, "kv_buffer"):  # CUDA-graph wrapper: the cache keeps its keys/values in its buffers
            self.kv_buffer = model.kv_buffer

    @property
    def config(self):
        return self.inner.config

    def get_base_model(self):
        return getattr(self.inner, "_orig_mod", self.inner)

    def forward(self, input_ids, logits_range=None, **kwargs):
        # `logits_range` is in the signature so that the loop slices the head exactly as for the bare model
        if logits_range is not None:
            kwargs["logits_range"] = logits_range
        sync(self.device_)
        t0 = time.perf_counter()
        out = self.inner(input_ids, **kwargs)
        sync(self.device_)
        kind = "refresh" if kwargs.get("use_cache") else ("cached" if kwargs.get("kv_cache") else "full")
        self.records.append((kind, time.perf_counter() - t0, input_ids.shape[0], input_ids.shape[1]))
        return out


def weight_bytes(model) -> int:
    """Bytes of parameters one forward reads: every weight except the input embedding table (a lookup reads
    only the rows of the input tokens)."""
    wte = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not wte)


def forward_time_bound(weight_bytes: int, layer_params: int, head_params: int, n_layers: int, d_model: int,
                       batch: int, queries: int, keys: int, head_queries: int, bandwidth: float,
                       flops: float) -> float:
    """Seconds a forward needs at least: reading every weight once, or its matmuls at peak throughput (2 FLOPs
    per parameter and position for the layers and for the output head, which runs on `head_queries` positions
    only, plus attention's 4 * d_model per query-key pair and layer)."""
    matmul = 2.0 * batch * (layer_params * queries + head_params * head_queries)
    matmul += 4.0 * n_layers * d_model * batch * queries * keys
    return max(weight_bytes / bandwidth, matmul / flops)


def roofline_speedup(mode: str, weight_bytes: int, layer_params: int, head_params: int, n_layers: int,
                     d_model: int, batch: int, prompt: int, gen: int, block: int, steps: int, bandwidth: float,
                     flops: float) -> float:
    """Tokens/s of `mode` over no cache if every forward ran at its roofline. Per block: one full (refresh)
    forward and steps-per-block - 1 cached ones over the block (dual) or the block start to the end (prefix);
    the head runs on one block in every forward (as the loop does)."""
    T = prompt + gen
    spb = steps // (gen // block)

    def bound(queries):
        return forward_time_bound(weight_bytes, layer_params, head_params, n_layers, d_model, batch, queries, T,
                                  block, bandwidth, flops)

    none = steps * bound(T)
    cached = sum(bound(T) + (spb - 1) * bound(block if mode == "dual" else gen - b * block)
                 for b in range(gen // block))
    return none / cached


def make_prompts(batch: int, length: int, vocab: int, mask_id: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, min(vocab, 120000), (batch, length), generator=g)
    ids[ids == mask_id] = 2
    return ids.tolist()


def decode_config(args, mode: str, steps: int) -> DecodeConfig:
    """The configuration of a row: fixed-count semi-AR decoding (equal TPF in every mode), or multi-block entropy
    decoding. `multi_block_reveal` is passed only when this checkout's DecodeConfig has it (an older checkout's
    multi-block loop is the `activated` rule)."""
    L, bl = args.gen_length, args.block_length
    if args.schedule == "semi_ar":
        return DecodeConfig(gen_length=L, block_length=bl, policy="low_confidence", steps=steps, temperature=0.0,
                            stop_at_eos=False, use_cache=mode)
    extra = {}
    if "multi_block_reveal" in {f.name for f in dataclasses.fields(DecodeConfig)}:
        extra["multi_block_reveal"] = args.reveal
    elif args.reveal != "activated":
        raise SystemExit("this checkout's multi-block loop has only the `activated` rule: use --reveal activated")
    return DecodeConfig(gen_length=L, block_length=bl, policy="entropy", threshold=args.threshold, temperature=0.0,
                        multi_block=True, block_add_threshold=0.5, decoded_token_threshold=0.5, stop_at_eos=False,
                        use_cache=mode, **extra)


def schedule_label(args) -> str:
    return "semi_ar" if args.schedule == "semi_ar" else f"multi_block:{args.reveal}@{args.threshold:g}"


def run(args, save=None) -> dict:
    """All configurations; `save(partial_result)` is called after each one (a time limit keeps what ran)."""
    device = pick_device(args.device, args.small)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    cfg_kwargs = dict(SMALL_LLADA if args.small else {"1.6b": BIG_LLADA, "8b": LLADA_8B}[args.arch])
    t0 = time.perf_counter()
    model, family = random_llada(cfg_kwargs, device, dtype)
    build_s = time.perf_counter() - t0
    base = model
    info = device_info(device)
    wbytes = weight_bytes(base)
    compile_s = None
    results = []
    baselines = {}  # (batch, prompt, variant) -> (tok/s, tokens) of no cache
    wte, head = base.get_input_embeddings().weight, base.get_output_embeddings()
    head_params = wte.numel() if head is None else head.weight.numel()  # tied: the head is the embedding
    layer_params = num_params(base) - wte.numel() - (0 if head is None else head_params)

    def snapshot():
        return {
            "benchmark": "decoding", "small": args.small, "arch": None if args.small else args.arch, "compile": args.compile,
            "compile_mode": args.compile_mode if args.compile else None, "compile_warmup_s": compile_s,
            "model": {**cfg_kwargs, "parameters": num_params(base), "dtype": str(dtype), "fused_blocks": fused,
                      "weight_bytes_per_forward": wbytes, "build_s": build_s},
            "device": info, "results": results,
        }

    fused = 0 if args.unfused else base.fuse_projections()  # as `tad generate/eval` do on a GPU
    if args.compile:
        model = torch.compile(model, dynamic=False, mode=args.compile_mode)
    L, bl = args.gen_length, args.block_length
    steps = args.steps or L // 2
    eager_model, compiled = model, None
    configs = [(b, p, v, m) for b in args.batch_sizes for p in args.prompt_length for v in args.variants
               for m in args.modes]
    for batch, prompt_len, variant, mode in configs:
        if variant in ("graphs", "compile+graphs"):  # fresh graphs for every configuration
            if variant == "compile+graphs" and compiled is None:  # one shape-generic compile for the run
                compiled = torch.compile(eager_model, dynamic=True)
            inner = eager_model if variant == "graphs" else compiled
            if not isinstance(model, CUDAGraphModel) or model.inner is not inner:
                model = CUDAGraphModel(inner, capture_after=1)  # everything captured in the warm-up call
            model.reset()
        elif model is not eager_model:
            model.reset()  # free the graphs' memory
            model = eager_model
        prompts = make_prompts(batch, prompt_len, cfg_kwargs["vocab_size"], family.mask_token_id, batch)
        cfg = decode_config(args, mode, steps)
        # warm-up (allocator, kernels; compile on the first call)
        sync(device)
        w0 = time.perf_counter()
        generate(model, family, prompts, cfg)
        sync(device)
        warm_s = time.perf_counter() - w0
        if args.compile and compile_s is None:
            compile_s = warm_s
        walls, out = [], None
        for _ in range(args.repeat):
            sync(device)
            t = time.perf_counter()
            out = generate(model, family, prompts, cfg)
            sync(device)
            walls.append(time.perf_counter() - t)
        wall = median(walls)
        nfe = int(out.nfe.max())
        timed_model = TimedModel(model, device)
        generate(timed_model, family, prompts, cfg)
        recs = timed_model.records
        fwd_total = sum(r[1] for r in recs)
        by_kind = {}
        for kind in ("full", "refresh", "cached"):
            ts = [r[1] for r in recs if r[0] == kind]
            if ts:
                widths = sorted({r[3] for r in recs if r[0] == kind})
                by_kind[kind] = {"count": len(ts), "mean_ms": 1e3 * sum(ts) / len(ts),
                                 "query_lengths": widths}
        # per step, not per call: rows at different blocks can split a cached step into a refresh call and a
        # cached call
        fwd_ms = 1e3 * fwd_total / nfe
        step_ms = 1e3 * wall / nfe
        tps = batch * L / wall
        ref = baselines.get((batch, prompt_len, variant))
        if mode == "none":
            baselines[(batch, prompt_len, variant)] = ref = (tps, out.tokens)
        eager_none = baselines.get((batch, prompt_len, "eager"))
        row = {
            "batch": batch, "variant": variant, "mode": mode, "schedule": schedule_label(args), "gen_length": L, "block_length": bl, "steps": steps,
            "prompt_length": prompt_len, "nfe": nfe, "tpf": L / nfe,
            "wall_s": wall, "wall_all_s": walls, "warmup_s": warm_s, "tok/s": tps,
            "x none": None if ref is None else tps / ref[0],
            "x eager none": None if eager_none is None else tps / eager_none[0],
            "step ms": step_ms, "fwd ms": fwd_ms, "loop ms": step_ms - fwd_ms,
            "fwd share": fwd_ms / step_ms, "forwards": by_kind, "calls per step": len(recs) / nfe,
            "match": None if ref is None else float((out.tokens == ref[1]).float().mean()),
            "graphs": model.num_graphs if variant != "eager" else None,
        }
        if mode != "none" and info.get("peak_bandwidth_Bps") and info.get("peak_bf16_flops"):
            row["roofline x"] = roofline_speedup(mode, wbytes, layer_params, head_params, cfg_kwargs["n_layers"],
                                                 cfg_kwargs["d_model"], batch, prompt_len, L, bl, steps,
                                                 info["peak_bandwidth_Bps"], info["peak_bf16_flops"])
        if batch == 1 and info.get("peak_bandwidth_Bps"):
            row["roof%"] = 100.0 * wbytes / (fwd_ms / 1e3) / info["peak_bandwidth_Bps"]
            for kind, k in by_kind.items():
                k["roofline_fraction"] = wbytes / (k["mean_ms"] / 1e3) / info["peak_bandwidth_Bps"]
        results.append(row)
        if save is not None:
            save(snapshot())
        print(f"batch {batch:3d} prompt {prompt_len:5d} {variant:14s} {mode:6s} {row['schedule']}: {tps:9.1f} tok/s  "
              f"TPF {L / nfe:.2f}  "
              f"step {step_ms:7.2f} ms "
              f"(forward {fwd_ms:7.2f} ms, loop {step_ms - fwd_ms:6.2f} ms)  warm-up {warm_s:.1f}s", flush=True)
    return snapshot()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench", help="folder for the JSON result")
    p.add_argument("--small", action="store_true", help="tiny model on CPU (smoke run)")
    p.add_argument("--device", default=None)
    p.add_argument("--arch", choices=["1.6b", "8b"], default="1.6b",
                   help="random LLaDA of ~1.65B parameters, or of LLaDA-8B's shape (8.0B, 16 GB in bf16)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    p.add_argument("--modes", nargs="+", default=["none", "prefix", "dual"], choices=["none", "prefix", "dual"])
    p.add_argument("--gen-length", type=int, default=None)
    p.add_argument("--block-length", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="decoding steps (default gen_length / 2: TPF 2)")
    p.add_argument("--prompt-length", type=int, nargs="+", default=None,
                   help="prompt length(s) in tokens; several lengths give one row each (default 64; --small 16)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per configuration (median)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (dynamic=False)")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode: default | reduce-overhead | max-autotune-no-cudagraphs")
    p.add_argument("--variants", nargs="+", default=["eager"], choices=["eager", "graphs", "compile+graphs"],
                   help="eager forwards, CUDA-graph replays (tadllm.decoding.graphs) and/or graphs of "
                   "torch.compile(dynamic=True), side by side (the compile time is in the warm-up column)")
    p.add_argument("--unfused", action="store_true",
                   help="keep separate q/k/v and ff/up matmuls (default: fused, LLaDAModelLM.fuse_projections)")
    p.add_argument("--schedule", choices=["semi_ar", "multi_block"], default="semi_ar",
                   help="semi_ar: low_confidence with a fixed count (equal TPF in every mode); multi_block: entropy "
                   "threshold with multi-block pipelining")
    p.add_argument("--threshold", type=float, default=0.5, help="entropy threshold of --schedule multi_block")
    p.add_argument("--reveal", choices=["opened", "activated"], default="opened",
                   help="multi-block reveal rule (opened: the reference's; activated: the earlier tadllm rule)")
    p.add_argument("--name", default=None, help="JSON file name (default decoding[_compile][_small].json)")
    args = p.parse_args(argv)
    small_defaults = dict(batch_sizes=[1, 4], gen_length=32, block_length=8, prompt_length=[16])
    big_defaults = dict(batch_sizes=[1, 16], gen_length=256, block_length=32, prompt_length=[64])
    for key, value in (small_defaults if args.small else big_defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.compile and set(args.variants) != {"eager"}:
        p.error("--compile applies to the eager variant; use --variants compile+graphs for graphs of it")
    if "eager" in args.variants:  # the "x eager none" column needs the eager baseline first
        args.variants = ["eager"] + [v for v in args.variants if v != "eager"]
    if "none" in args.modes:  # the ratio column needs the baseline first
        args.modes = ["none"] + [m for m in args.modes if m != "none"]
    name = args.name or "decoding" + ("_compile" if args.compile else "") + ("_small" if args.small else "") + ".json"
    result = run(args, save=lambda partial: write_json(args.out, name, partial))
    path = write_json(args.out, name, result)
    cols = ["batch", "prompt", "variant", "mode", "schedule", "tpf", "tok/s", "x none", "x eager none", "step ms", "fwd ms", "loop ms",
            "match"]
    for col in ("roof%", "roofline x"):
        if any(col in r for r in result["results"]):
            cols.append(col)
    for r in result["results"]:
        r.setdefault("prompt", r["prompt_length"])
    model = result["model"]
    title = (f"decoding: {model['parameters'] / 1e9:.2f}B-param random LLaDA, {model['dtype']}, "
             f"{result['device'].get('gpu', result['device']['device'])}, gen {args.gen_length}, "
             f"block {args.block_length}, "
             + (f"steps {args.steps or args.gen_length // 2}" if args.schedule == "semi_ar" else schedule_label(args))
             + (f", torch.compile ({args.compile_mode}; first call {result['compile_warmup_s']:.1f}s)"
                if args.compile else "") + f"  -> {path}")
    print(table(result["results"], cols, title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
