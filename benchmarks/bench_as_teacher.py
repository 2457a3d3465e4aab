"""Host time of one `as_teacher` enter + exit (no forward pass) on CPU: peft's public `disable_adapter()`
path against the direct path (`tadllm.distill.teacher`), on a LLaDA module tree with LoRA on its 7 linear
layers per block (small widths: only the module count matters).

    PYTHONPATH=src python benchmarks/bench_as_teacher.py [--layers 32] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import time

import peft
import torch
from peft import LoraConfig, get_peft_model

from tadllm.distill.teacher import as_teacher, teacher_parts
from tadllm.models.family import LLADA_LORA_TARGETS
from tadllm.models.llada import LLaDAConfig, LLaDAModelLM


def per_call_ms(model, parts, fast: bool, repeats: int) -> float:
    for _ in range(5):  # warm-up
        with as_teacher(model, parts, fast=fast):
            pass
    start = time.perf_counter()
    for _ in range(repeats):
        with as_teacher(model, parts, fast=fast):
            pass
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=args.d_model, n_heads=2, n_layers=args.layers, mlp_hidden_size=2 * args.d_model,
                      vocab_size=64, mask_token_id=63, eos_token_id=1, pad_token_id=1, max_sequence_length=64)
    targets = rf"(?!(?:model\.transformer\.ff_out)$)(?:.*\.)?(?:{'|'.join(LLADA_LORA_TARGETS)})"
    model = get_peft_model(LLaDAModelLM(cfg), LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    model.train()
    parts = teacher_parts(model)
    row = {"peft": peft.__version__, "torch": torch.__version__, "modules": len(parts[0]),
           "lora_layers": len(parts[1]), "repeats": args.repeats,
           "public_ms": round(per_call_ms(model, parts, False, args.repeats), 3),
           "direct_ms": round(per_call_ms(model, parts, True, args.repeats), 3)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
