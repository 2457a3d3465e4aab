"""Measure the peak GPU memory of TAD LoRA training steps at full 8B/7B size, with random weights (no
checkpoint download), to check `benchmarks/memory_estimate.py` (docs/scaling.md).

    python benchmarks/memory_measure.py --arch llada-8b --checkpointing on --micro-batch 4 --seq 600

One process, one GPU (the DDP case: every GPU holds this much). Each step does what `TADTrainer` does: the
teacher forward with the LoRA adapter disabled (no grad), the student forward, the TAD loss, backward,
gradient clipping and an AdamW step over the LoRA parameters, under bf16 autocast. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
import types

import torch

GIB = 2**30


def build(arch: str):
    if arch == "llada-8b":
        from tadllm.models.llada import LLaDAConfig, LLaDAModelLM

        # LLaDA-8B-Instruct's config.json dimensions; the special ids are the config's own defaults
        cfg, cls = LLaDAConfig(d_model=4096, n_heads=32, n_kv_heads=32, n_layers=32, mlp_hidden_size=12288,
                               vocab_size=126464, embedding_size=126464, rope_theta=500000.0), LLaDAModelLM
    elif arch == "dream-7b":
        from tadllm.models.dream import DreamConfig, DreamModel

        cfg, cls = DreamConfig(), DreamModel  # Dream-7B (= Qwen2.5-7B) dimensions
        # random weights: any ids will do (the real ones come from the checkpoint's config.json)
        cfg.mask_token_id = cfg.vocab_size - 1
        cfg.eos_token_id = cfg.pad_token_id = cfg.vocab_size - 2
    else:
        raise ValueError(arch)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = cls(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["llada-8b", "dream-7b"], default="llada-8b")
    p.add_argument("--checkpointing", choices=["on", "off"], default="on")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=600, help="student tokens: prompt + response")
    p.add_argument("--response", type=int, default=256)
    p.add_argument("--teacher-extra", type=int, default=64, help="extra teacher prompt tokens (the reference)")
    p.add_argument("--lora-r", type=int, default=128)
    p.add_argument("--delta", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)

    from tadllm.distill.data import TADCollator
    from tadllm.distill.loss import tad_loss_rows
    from tadllm.distill.lora import apply_lora
    from tadllm.distill.trainer import model_inputs, response_logits
    from tadllm.models.family import resolve_family

    torch.manual_seed(0)
    t0 = time.time()
    model = build(args.arch)
    family = resolve_family(model.config, None, native=True)
    weights = torch.cuda.memory_allocated()
    ckpt = args.checkpointing == "on"
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora_cfg = types.SimpleNamespace(gradient_checkpointing=ckpt, lora_r=args.lora_r, lora_alpha=args.lora_r,
                                     lora_dropout=0.05, lora_target_modules=None)
    model = apply_lora(model, lora_cfg, family)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    lora_params = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=2e-5, weight_decay=0.01)
    collator = TADCollator(family.mask_token_id, family.fill_token_id, delta=args.delta)
    g = torch.Generator().manual_seed(0)
    V, L, P = model.config.vocab_size, args.response, args.seq - args.response
    hi = min(V, family.mask_token_id) - 3

    def example():
        return {"prompt_ids": torch.randint(0, hi, (P,), generator=g).tolist(),
                "teacher_prompt_ids": torch.randint(0, hi, (P + args.teacher_extra,), generator=g).tolist(),
                "tokens": torch.randint(0, hi, (L,), generator=g).tolist(),
                "reveal_step": (torch.randperm(L, generator=g) + 1).tolist(),
                "step": int(torch.randint(0, L // 2, (1,), generator=g))}

    torch.cuda.synchronize()
    setup_s = time.time() - t0
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        batch = {k: v.cuda() for k, v in collator([example() for _ in range(args.micro_batch)]).items()}
        torch.cuda.synchronize()
        start = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model.eval()
            with torch.no_grad(), model.disable_adapter():
                t_out = model(**model_inputs(family, batch["teacher_input_ids"], batch["teacher_attention_mask"]))
                teacher = response_logits(t_out.logits, family, L)[batch["distant"]]
                del t_out
            model.train()
            out = model(**model_inputs(family, batch["input_ids"], batch["attention_mask"]))
            student = response_logits(out.logits, family, L)
            loss, _ = tad_loss_rows(student[batch["near"]], batch["labels"][batch["near"]],
                                    student[batch["distant"]], teacher)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        del out, student, teacher, loss
        torch.cuda.synchronize()
        times.append(time.time() - start)
    print(json.dumps({
        "arch": args.arch, "checkpointing": args.checkpointing, "micro_batch": args.micro_batch, "seq": args.seq,
        "lora_r": args.lora_r, "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "lora_params_m": round(lora_params / 1e6, 1), "weights_gib": round(weights / GIB, 2),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2),
        "step_s": [round(t, 3) for t in times], "setup_s": round(setup_s, 1),
        "device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
