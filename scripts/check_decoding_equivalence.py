"""Record, then compare, what `tadllm.decoding.generate` outputs over a grid of configurations.

A refactor of the decoding loop must not change tokens, reveal steps or forward counts. Run once on the old
code with `--record FILE`, once on the new code with `--compare FILE`: the comparison prints how many
configurations are identical and lists the others.

Grid: policies (fixed count / threshold) x schedule (semi-AR, multi-block with `opened` / `activated`
reveal) x cache (none / prefix / dual) x temperature (0 / 0.7) x stop_at_eos x batch size (1 / 4, six
prompts of different lengths), on the shared LLaDA fixture (../shared/fixtures/llada-tiny) and on a
1-layer LLaDA (exact KV cache). CPU, one thread: a few minutes.

    PYTHONPATH=src python scripts/check_decoding_equivalence.py --record /tmp/decode_before.json
    PYTHONPATH=src python scripts/check_decoding_equivalence.py --compare /tmp/decode_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from tadllm.decoding import DecodeConfig, generate

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("TADLLM_SHARED", REPO.parent / "shared")) / "fixtures" / "llada-tiny"
PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27, 28], [40], [41, 42],
           [50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60]]


def fixture_model():
    from tadllm.models import load_model

    model, _, family = load_model(FIXTURE, dtype="float32", device="cpu")
    return model, family, PROMPTS, {"confidence": 0.05, "entropy": 5.0}


def one_layer_model():
    """The 1-layer LLaDA of tests/decoding/test_cache.py (its layer-0 keys/values make the cache exact)."""
    from tadllm.models.family import resolve_family
    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM

    torch.manual_seed(0)
    config = LLaDAConfig(d_model=32, n_heads=4, n_kv_heads=4, n_layers=1, mlp_hidden_size=64, vocab_size=64,
                         embedding_size=64, max_sequence_length=256, mask_token_id=63, eos_token_id=1,
                         pad_token_id=1, init_std=0.5)
    model = LLaDAModelLM(config).eval()
    prompts = [[p % 60 + 2 for p in prompt] for prompt in PROMPTS]
    return model, resolve_family(model.config, native=True), prompts, {"confidence": 0.3, "entropy": 1.5}


def schedules(thresholds: dict) -> dict[str, DecodeConfig]:
    base = dict(gen_length=32, block_length=8)
    out = {
        "low_confidence": DecodeConfig(**base),
        "low_confidence_16": DecodeConfig(**base, steps=16),
        "random_16": DecodeConfig(**base, policy="random", steps=16),
        "single_block_entropy": DecodeConfig(gen_length=32, block_length=32, policy="entropy",
                                             threshold=thresholds["entropy"]),
    }
    for policy in ("confidence", "entropy"):
        t = thresholds[policy]
        out[policy] = DecodeConfig(**base, policy=policy, threshold=t)
        for reveal in ("opened", "activated"):
            out[f"{policy}_multi_{reveal}"] = DecodeConfig(**base, policy=policy, threshold=t, multi_block=True,
                                                           block_add_threshold=0.25, decoded_token_threshold=0.5,
                                                           multi_block_reveal=reveal)
    return out


def grid():
    """(name, model, family, prompts, config, batch_size) of every configuration."""
    for model_name, load in (("fixture", fixture_model), ("one_layer", one_layer_model)):
        if model_name == "fixture" and not (FIXTURE / "config.json").exists():
            sys.exit(f"fixture missing at {FIXTURE}")
        model, family, prompts, thresholds = load()
        for sched, cfg in schedules(thresholds).items():
            for cache in ("none", "prefix", "dual"):
                for temperature in (0.0, 0.7):
                    for stop in (False, True):
                        for batch in (1, 4):
                            c = replace(cfg, use_cache=cache, temperature=temperature, stop_at_eos=stop, seed=3)
                            name = f"{model_name}/{sched}/cache={cache}/T={temperature}/eos={stop}/batch={batch}"
                            yield name, model, family, prompts, c, batch


def run_grid() -> dict:
    results = {}
    for name, model, family, prompts, cfg, batch in grid():
        out = generate(model, family, prompts, cfg, batch_size=batch)
        results[name] = {"tokens": out.tokens.tolist(), "reveal_step": out.reveal_step.tolist(),
                         "nfe": out.nfe.tolist(), "num_tokens": out.num_tokens.tolist()}
    return results


def sampled(name: str) -> bool:
    """Configurations that draw random numbers (temperature > 0 or the random policy)."""
    return "T=0.7" in name or "/random" in name


def compare(before: dict, after: dict) -> int:
    same = [n for n in before if after.get(n) == before[n]]
    differ = [n for n in before if n not in same]
    print(f"{len(same)} of {len(before)} configurations identical (tokens, reveal steps, NFE, num_tokens)")
    for group, names in (("greedy", [n for n in before if not sampled(n)]),
                         ("sampled", [n for n in before if sampled(n)])):
        for batch in ("batch=1", "batch=4"):
            sel = [n for n in names if n.endswith(batch)]
            print(f"  {group:8s} {batch}: {sum(n in same for n in sel)} / {len(sel)} identical")
    # Rows draw random numbers from their own generators (seeded by their sorted position), so a sampled
    # configuration at batch 4 now gives every prompt what it got alone: compare with the batch-1 record.
    alone = [n for n in differ if sampled(n) and n.endswith("batch=4")]
    as_alone = [n for n in alone if after[n] == before[n.replace("batch=4", "batch=1")]]
    if alone:
        print(f"  of the {len(alone)} sampled batch=4 configurations that differ, {len(as_alone)} equal the "
              f"recorded batch=1 outputs (each row as it decoded alone)")
    for n in differ:
        print("  differs:", n, "(= batch 1 record)" if n in as_alone else "")
    return len(differ) - len(as_alone)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the outputs of this checkout to FILE")
    mode.add_argument("--compare", type=Path, help="compare this checkout's outputs with FILE")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a configuration differs (other than a sampled batch-4 one that equals "
                             "its batch-1 record)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # many tiny forwards: one thread is fastest, and deterministic
    start = time.perf_counter()
    results = run_grid()
    print(f"{len(results)} configurations decoded in {time.perf_counter() - start:.0f}s")
    if args.record:
        args.record.write_text(json.dumps(results))
        print(f"recorded to {args.record}")
        return 0
    n_diff = compare(json.loads(args.compare.read_text()), results)
    return 1 if args.strict and n_diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
