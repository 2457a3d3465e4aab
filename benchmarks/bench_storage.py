"""Bytes per trajectory: tadllm's parquet records (tokens + reveal_step) vs per-step snapshot JSON.

    python benchmarks/bench_storage.py --out runs/bench
    python benchmarks/bench_storage.py --small --out runs/bench     # fewer records

Two trajectory sets:
- `testbed`: real trajectories of the bundled testbed teacher on `arith` (gen 64, block 32, one token per
  step), written by `tadllm.trajectories.generate_trajectories` (the real writer, keep=all);
- `llada-scale`: synthetic records shaped like LLaDA math trajectories (student prompt 344 tokens, teacher
  prompt 400, response 256 tokens from a 126464 vocabulary, 256 steps in semi-AR blocks of 32, the runner's
  meta string), written with `tadllm.trajectories.storage.write_shard`. Random token ids compress worse than
  real text, so these sizes are an upper bound for both formats.
Formats: our parquet shard (zstd) / N; our records as JSON lines (uncompressed, for reference); per-step
snapshot JSON (the same fields plus the state after every step, as a list of token ids with the mask id);
the same snapshot JSON gzip-compressed (level 6). Every snapshot is checked against `state_at`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import REPO, table, write_json  # noqa: E402

from tadllm.trajectories import storage  # noqa: E402

TEACHER = REPO / "src" / "tadllm" / "assets" / "testbed-teacher"
SNAPSHOT_FIELDS = ("problem_id", "sample_idx", "prompt_ids", "teacher_prompt_ids", "text", "answer", "correct",
                   "meta")


def snapshot_json(record: dict, mask_id: int) -> str:
    states = [storage.state_at(record, s, mask_id) for s in range(1, int(record["num_steps"]) + 1)]
    return json.dumps({**{k: record[k] for k in SNAPSHOT_FIELDS}, "states": states}, separators=(",", ":"))


def measure(name: str, records: list[dict], mask_id: int, tmp: Path) -> dict:
    n = len(records)
    shard = tmp / f"{name}.parquet"
    parquet_bytes = storage.write_shard(shard, records)
    back = storage.read_trajectories(shard, as_list=True)
    assert [r["tokens"] for r in back] == [r["tokens"] for r in records]
    ours_jsonl = "".join(json.dumps({k: r[k] for k in storage.FIELDS}, separators=(",", ":")) + "\n"
                         for r in records).encode()
    snaps = [snapshot_json(r, mask_id) for r in records]
    for r, s in zip(records[:2], snaps[:2]):  # snapshots are exactly what the records replay
        states = json.loads(s)["states"]
        assert all(states[i] == storage.state_at(r, i + 1, mask_id) for i in range(len(states)))
    snap_bytes = "".join(s + "\n" for s in snaps).encode()
    snap_gz = gzip.compress(snap_bytes, compresslevel=6)
    L = len(records[0]["tokens"])
    S = max(int(r["num_steps"]) for r in records)
    rows = []
    for fmt_name, size in (("parquet (ours, zstd)", parquet_bytes), ("records JSONL (ours, raw)", len(ours_jsonl)),
                           ("snapshots JSON", len(snap_bytes)), ("snapshots JSON gzip", len(snap_gz))):
        rows.append({"set": name, "format": fmt_name, "trajectories": n, "L": L, "steps": S,
                     "bytes/traj": size / n, "x parquet": size / parquet_bytes})
    return rows


def testbed_records(n: int, tmp: Path) -> tuple[list[dict], int]:
    from tadllm.decoding import DecodeConfig
    from tadllm.models import load_model
    from tadllm.tasks.arith import ArithSpec, ArithTask
    from tadllm.trajectories import generate_trajectories

    model, tokenizer, family = load_model(TEACHER, dtype="float32")  # cuda when available
    task = ArithTask(spec=ArithSpec(min_ops=2, max_ops=4), hint="answer", n_test=n)
    examples = task.load(split="test", limit=n)
    cfg = DecodeConfig(gen_length=64, block_length=32, policy="low_confidence", steps=64, temperature=0.7)
    out = tmp / "testbed-traj"
    generate_trajectories(model, tokenizer, family, task, examples, cfg, out_dir=out, batch_size=n, keep="all",
                          progress=False, model_name="testbed-teacher")
    return storage.read_trajectories(out, as_list=True), family.mask_token_id


def llada_scale_records(n: int, seed: int = 0) -> tuple[list[dict], int]:
    vocab, mask_id, L, bl = 126464, 126336, 256, 32
    g = torch.Generator().manual_seed(seed)
    meta = json.dumps({"format_version": storage.FORMAT_VERSION, "task": "gsm8k",
                       "model": "GSAI-ML/LLaDA-8B-Instruct", "family": "llada",
                       "tokenizer": "GSAI-ML/LLaDA-8B-Instruct", "tokenizer_hash": "0123456789abcdef",
                       "mask_token_id": mask_id, "stop_token_ids": [126081, 126348], "vocab_size": vocab,
                       "decode_config": {"gen_length": L, "block_length": bl, "policy": "low_confidence",
                                         "steps": L, "temperature": 0.7, "seed": 1234567},
                       "rank": 0, "chunk": 0, "seed": 0}, sort_keys=True)

    def ids(k):
        t = torch.randint(0, 126000, (k,), generator=g)
        return t.tolist()

    records = []
    for i in range(n):
        reveal = torch.cat([torch.randperm(bl, generator=g) + 1 + b * bl for b in range(L // bl)])
        records.append({"problem_id": f"gsm8k/{i}", "sample_idx": 0, "prompt_ids": ids(344),
                        "teacher_prompt_ids": ids(400), "tokens": ids(L), "reveal_step": reveal.tolist(),
                        "num_steps": L, "text": "x" * 700, "answer": "42", "correct": True, "meta": meta})
    return records, mask_id


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--small", action="store_true")
    p.add_argument("--n", type=int, default=None, help="trajectories per set")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    n = args.n or (16 if args.small else 128)
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recs, mask_id = testbed_records(n, tmp)
        rows += measure("testbed", recs, mask_id, tmp)
        recs, mask_id = llada_scale_records(n)
        rows += measure("llada-scale", recs, mask_id, tmp)
    result = {"benchmark": "storage", "small": args.small, "elapsed_s": time.perf_counter() - t0, "results": rows}
    name = args.name or "storage" + ("_small" if args.small else "") + ".json"
    path = write_json(args.out, name, result)
    print(table(rows, ["set", "format", "trajectories", "L", "steps", "bytes/traj", "x parquet"],
                f"storage: bytes per trajectory  -> {path}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
