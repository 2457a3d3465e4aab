"""`tad serve` under load: N concurrent clients against the same requests served one at a time.

    python benchmarks/bench_serve.py --out runs/bench                  # LLaDA-8B shape, random weights, one GPU
    python benchmarks/bench_serve.py --model src/tadllm/assets/testbed-teacher --device cuda --out runs/bench
    python benchmarks/bench_serve.py --small --out runs/bench          # CPU smoke run (tiny random LLaDA)

The server runs in a child process (this script with `--serve`), so the clients (threads, each streaming
over a plain HTTP connection) do not compete with the decoding worker for the interpreter; the client side
needs nothing beyond the standard library. Every level sends the same
requests — prompts of mixed lengths — through N clients, each sending its next request when its last one ended
(closed loop); level 1 is serving them one at a time. A few warm-up requests go first (not measured).

Random-weight models have no tokenizer: prompts are token-id lists of the lengths in `--prompt-lengths`, the
decoding is the fixed-count `low_confidence` policy (`steps` = gen_length / 2, TPF 2) without the EOS stop, so
every request costs the same forward passes whatever the weights. A checkpoint with a testbed.json gets
arithmetic problems of its difficulty as text prompts and decodes with `--policy` / `--threshold` (default
confidence 0.9) stopping at EOS.

Per level: throughput (completion tokens / wall seconds of the level), p50 / p95 latency, p50 time to first
token (first streamed text), mean forward passes per request, and against one at a time: `x one` (throughput
ratio), `p95 / lone` (p95 latency over the median latency of a lone request), `p95 / lone p95` (over the
p95 of a lone request: the same mix of prompt lengths on both sides) and `p95 slowdown` (the p95 over requests
of each request's latency over the latency of the same request served alone). The issue's target: x one >= 4
at 16 clients with p95 latency <= 2x a lone request. Writes serve_<name>.json into --out, with every request's
latency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_json  # noqa: E402

SERVED_NAME = "bench"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench", help="folder for the JSON result")
    p.add_argument("--small", action="store_true", help="tiny random LLaDA on the CPU (smoke run)")
    p.add_argument("--model", default=None, help="a checkpoint instead of random weights")
    p.add_argument("--arch", default="8b", choices=["8b", "1.6b"], help="shape of the random-weight model")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--clients", type=int, nargs="+", default=None, help="levels (default 1 4 16 64; --small 1 4)")
    p.add_argument("--requests", type=int, default=None, help="requests per level (default 64; --small 6)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured requests first (default 4; --small 1)")
    p.add_argument("--prompt-lengths", type=int, nargs="+", default=None,
                   help="token-id prompt lengths, cycled (default 32 64 128 256 512; --small 4 8 16)")
    p.add_argument("--gen-length", type=int, default=None, help="default 256 (--small 16; a testbed: its own)")
    p.add_argument("--block-length", type=int, default=None, help="default 32 (--small 8; a testbed: its own)")
    p.add_argument("--policy", default=None, help="default low_confidence (random weights) / confidence")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--use-cache", default=None, choices=["none", "prefix", "dual"],
                   help="default dual on a GPU with a native LLaDA, else none")
    p.add_argument("--cuda-graphs", action="store_true")
    p.add_argument("--max-batch", type=int, default=None, help="default: the largest level")
    p.add_argument("--admit", default="step", choices=["step", "refresh"], help="tad serve's --admit")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of the server (default 1 on the CPU: OpenMP threads spinning on every "
                        "core starve the server's HTTP thread, and latencies jump by seconds)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds for the server to come up")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    fill_defaults(args)
    return args


def fill_defaults(args) -> None:
    small = args.small
    defaults = dict(clients=[1, 4] if small else [1, 4, 16, 64], requests=6 if small else 64,
                    warmup=1 if small else 4, prompt_lengths=[4, 8, 16] if small else [32, 64, 128, 256, 512])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if 1 not in args.clients:
        args.clients = [1] + args.clients  # the one-at-a-time reference
    if args.device is None:
        args.device = "cpu" if small else "cuda"
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "bfloat16"
    if args.max_batch is None:
        args.max_batch = max(args.clients)
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.use_cache is None:
        args.use_cache = "dual" if args.device != "cpu" and args.model is None else "none"


def testbed_meta(args) -> dict | None:
    path = Path(args.model) / "testbed.json" if args.model else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def decode_config(args, meta):
    from tadllm.decoding import DecodeConfig

    gen = args.gen_length or (meta or {}).get("gen_length") or (16 if args.small else 256)
    block = args.block_length or (meta or {}).get("block_length") or (8 if args.small else 32)
    if args.model is None:  # random weights: a fixed number of forwards per request
        return DecodeConfig(gen_length=gen, block_length=block, policy=args.policy or "low_confidence",
                            steps=gen // 2, stop_at_eos=False, use_cache=args.use_cache)
    policy = args.policy or "confidence"
    threshold = args.threshold if policy in ("confidence", "entropy") else None
    return DecodeConfig(gen_length=gen, block_length=block, policy=policy, threshold=threshold, stop_at_eos=True,
                        use_cache=args.use_cache)


# ------------------------------------------------------------------------------------------ the server child


def load_model(args):
    """(model, tokenizer, family) on the device: random weights of --arch / --small, or --model."""
    import torch

    from tadllm.cliargs import accelerate_decoding

    if args.model is not None:
        from tadllm.models import load_model as load

        model, tokenizer, family = load(args.model, dtype=args.dtype, device=args.device)
    else:
        from common import BIG_LLADA, LLADA_8B, SMALL_LLADA, random_llada

        shape = SMALL_LLADA if args.small else (LLADA_8B if args.arch == "8b" else BIG_LLADA)
        model, family = random_llada(shape, args.device, dtype=getattr(torch, args.dtype))
        tokenizer = None
    args.compile = False
    return accelerate_decoding(model, args), tokenizer, family


def serve(args) -> int:
    import uvicorn

    from tadllm.serve.app import create_app
    from tadllm.serve.cli import build_service

    exit_with_parent()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tokenizer, family = load_model(args)
    service = build_service(model, tokenizer, family, decode_config(args, testbed_meta(args)), SERVED_NAME,
                            max_batch=args.max_batch, max_queue=max(args.requests, 1) + args.warmup,
                            admit=args.admit)
    uvicorn.run(create_app(service, shutdown_timeout=5), host="127.0.0.1", port=args.port, log_level="warning",
                timeout_graceful_shutdown=5)
    return 0


def exit_with_parent() -> None:
    """Stop this server when the benchmark that started it is gone (killed, or timed out)."""
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args.forward, "--serve", "--port", str(port)]
    import tadllm

    src = Path(tadllm.__file__).resolve().parents[1]  # the child imports the tadllm this process imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the server did not come up in time")
            time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ the clients


def make_prompts(args, n: int) -> list:
    """`n` prompts of mixed lengths: arithmetic problems for a testbed model, token ids otherwise."""
    rng = random.Random(0)
    meta = testbed_meta(args)
    if meta is not None:
        from tadllm.tasks.arith import ArithSpec, sample_problem

        spec = ArithSpec(min_ops=meta["min_ops"], max_ops=meta["max_ops"], commute=meta.get("commute", 0.0))
        return [sample_problem(rng, spec).prompt for _ in range(n)]
    low = 16  # clear of the special ids at the start of the vocabulary (also the tiny model's eos / pad)
    high = 500 if args.small else 126000  # below the mask id of LLaDA (126336) and of the tiny model (511)
    lengths = args.prompt_lengths
    return [[rng.randrange(low, high) for _ in range(lengths[i % len(lengths)])] for i in range(n)]


def one_request(port: int, prompt) -> dict:
    """One streamed completion over a plain HTTP connection: latency, time to the first text, usage."""
    import http.client

    body = json.dumps({"model": SERVED_NAME, "prompt": prompt, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    start, first, usage = time.perf_counter(), None, None
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:500]!r}")
        for line in resp:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"the server failed a request: {chunk['error']}")
            usage = chunk.get("usage") or usage
            if first is None and any(c.get("text") for c in chunk["choices"]):
                first = time.perf_counter() - start
    finally:
        conn.close()
    return {"latency_s": time.perf_counter() - start, "ttft_s": first, "tokens": usage["completion_tokens"],
            "nfe": usage["nfe"], "prompt_tokens": usage["prompt_tokens"]}


def run_level(port: int, prompts: list, clients: int) -> tuple[list[dict], float]:
    """`clients` threads, each sending the next request of `prompts` when its last one ended."""
    import queue
    import threading

    todo: queue.Queue = queue.Queue()
    for index, prompt in enumerate(prompts):
        todo.put((index, prompt))
    rows: list[dict] = []
    errors: list[BaseException] = []

    def worker():
        while not errors:
            try:
                index, prompt = todo.get_nowait()
            except queue.Empty:
                return
            try:
                rows.append({"index": index, **one_request(port, prompt)})
            except BaseException as err:  # noqa: BLE001 - reported below, after the other threads stop
                errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return rows, time.perf_counter() - start


def quantile(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    pos = q * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarise(clients: int, rows: list[dict], wall: float) -> dict:
    tokens = sum(r["tokens"] for r in rows)
    return {"clients": clients, "requests": len(rows), "wall_s": wall, "tokens": tokens, "tok/s": tokens / wall,
            "p50 s": quantile([r["latency_s"] for r in rows], 0.5),
            "p95 s": quantile([r["latency_s"] for r in rows], 0.95),
            "ttft p50 s": quantile([r["ttft_s"] for r in rows], 0.5),
            "nfe": sum(r["nfe"] or 0 for r in rows) / max(len(rows), 1),
            "per_request": sorted(rows, key=lambda r: r["index"])}


def compare(levels: list[dict]) -> None:
    """Ratios against serving one at a time (level 1)."""
    one = next(level for level in levels if level["clients"] == 1)
    for level in levels:
        level["x one"] = level["tok/s"] / one["tok/s"]
        level["p95 / lone"] = level["p95 s"] / one["p50 s"]
        level["p95 / lone p95"] = level["p95 s"] / one["p95 s"]
        level["p95 slowdown"] = quantile(slowdowns(level["per_request"], one["per_request"]), 0.95)


def slowdowns(rows: list[dict], lone_rows: list[dict]) -> list[float]:
    """Each request's latency over the latency of the same request (same prompt) served alone."""
    lone = {r["index"]: r["latency_s"] for r in lone_rows}
    return [r["latency_s"] / lone[r["index"]] for r in rows]


def bench(args) -> dict:
    prompts, warmup = make_prompts(args, args.requests), make_prompts(args, args.warmup)
    port = free_port()
    proc = start_server(args, port)
    levels = []
    try:
        run_level(port, warmup, max(args.warmup, 1))
        for clients in sorted(set(args.clients)):
            rows, wall = run_level(port, prompts, clients)
            levels.append(summarise(clients, rows, wall))
            print(f"[bench_serve] {clients} clients: {levels[-1]['tok/s']:.1f} tok/s", flush=True)
    finally:
        stop_server(proc)
    compare(levels)
    return {"levels": levels}


def name_of(args) -> str:
    name = "small" if args.small else (Path(args.model).name if args.model else f"random_{args.arch}")
    return name + ("" if args.admit == "step" else f"_admit-{args.admit}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    args.forward = list(sys.argv[1:] if argv is None else argv)  # the child gets the same options
    result = bench(args)
    meta = testbed_meta(args)
    config = decode_config(args, meta)
    settings = {"model": args.model or ("small" if args.small else args.arch), "device": args.device,
                "dtype": args.dtype, "decoding": config.to_dict(), "cuda_graphs": args.cuda_graphs,
                "max_batch": args.max_batch, "admit": args.admit, "requests": args.requests,
                "prompts": "arith problems" if meta else f"token ids of lengths {args.prompt_lengths}"}
    columns = ["clients", "requests", "tok/s", "x one", "p50 s", "p95 s", "p95 / lone", "p95 / lone p95", "p95 slowdown",
               "ttft p50 s", "nfe"]
    print(table(result["levels"], columns, title=f"tad serve, {name_of(args)} ({settings['prompts']}, gen "
                f"{config.gen_length}, {config.policy}, cache {config.use_cache}, device {args.device})"))
    path = write_json(args.out, f"serve_{name_of(args)}.json", {"settings": settings, **result})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
