"""Helpers shared by the benchmark scripts (imported as `common`: the scripts put their folder on sys.path).

Random-weight LLaDA models of a given size, device / bandwidth detection, timing, JSON output and the
short text table each script prints last.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

# A LLaDA-architecture model of about 1.65B parameters (1.13B in the blocks + 2 x 259M embedding / head with
# LLaDA's vocabulary of 126464); LLaDA-8B itself is d_model 4096, 32 layers, mlp 12288.
BIG_LLADA = dict(d_model=2048, n_layers=22, n_heads=16, n_kv_heads=16, mlp_hidden_size=5632, vocab_size=126464,
                 embedding_size=126464, max_sequence_length=4096, rope_theta=500000.0, mask_token_id=126336,
                 eos_token_id=126081, pad_token_id=126081, init_std=0.02)
# The LLaDA-8B shape itself (random weights; 16 GB in bf16).
LLADA_8B = dict(BIG_LLADA, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288)
# A tiny one for CPU smoke runs (--small).
SMALL_LLADA = dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=512,
                   embedding_size=512, max_sequence_length=1024, rope_theta=10000.0, mask_token_id=511,
                   eos_token_id=1, pad_token_id=1, init_std=0.05)

# Peak HBM bandwidth used for the roofline (bytes/s), by substring of torch.cuda.get_device_name().
PEAK_BANDWIDTH = (("H200", 4.8e12), ("H100", 3.0e12), ("A100", 2.0e12))
# Peak dense bf16 tensor-core throughput (FLOP/s), same lookup (H200 has the H100's compute).
PEAK_FLOPS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12))


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        info["gpu"] = name
        info["peak_bandwidth_Bps"] = next((bw for key, bw in PEAK_BANDWIDTH if key in name), None)
        info["peak_bf16_flops"] = next((f for key, f in PEAK_FLOPS if key in name), None)
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def pick_device(name: str | None, small: bool) -> torch.device:
    if name:
        return torch.device(name)
    if small:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --small for the CPU smoke version (or pass --device cpu)")
    return torch.device("cuda")


def random_llada(config_kwargs: dict, device, dtype=torch.bfloat16, seed: int = 0):
    """(model, family) of a randomly initialised native LLaDA, built directly on `device` in `dtype`."""
    from tadllm.models.family import resolve_family
    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM

    torch.manual_seed(seed)
    config = LLaDAConfig(**config_kwargs)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LLaDAModelLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.to(device=device, dtype=dtype).eval()
    return model, resolve_family(model.config, None, native=True)


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat: int = 1):
    """(result of the last call, list of wall seconds per call), synchronising the device around calls."""
    times, result = [], None
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return result, times


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return None if n == 0 else (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2]))


def write_json(out_dir: str | os.PathLike, name: str, payload: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4:
            return f"{value:.0f}"
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """A plain-text table of `rows` (dicts) over `columns`."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [] if title is None else [title]
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def gib(nbytes) -> float | None:
    return None if nbytes is None else nbytes / 2**30
