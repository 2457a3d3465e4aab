"""One TAD training step: LoRA student with the adapter-disabled teacher vs a deep-copied frozen teacher,
and the memory of the TAD loss on gathered rows vs a naive full-vocabulary log-softmax.

    python benchmarks/bench_training.py --out runs/bench            # GPU: ~1.65B random LLaDA, bf16
    python benchmarks/bench_training.py --small --out runs/bench    # CPU smoke run (tiny model)
    python benchmarks/bench_training.py --arch 8b --gradient-checkpointing --out runs/bench  # LLaDA-8B shape

A training step is `TADTrainer.training_step` (teacher forward under no_grad, student forward, TAD loss,
backward) plus the AdamW step, on a batch built by `TADCollator` from synthetic trajectories (student prompt
344 tokens + response 256 = 600 positions; the teacher prompt has the same length unless
--teacher-prompt-length). `teacher_mode`:
- `disable_adapter`: the teacher is the student's own base weights with the LoRA adapter disabled;
- `frozen_copy`: `copy.deepcopy` of the base model before LoRA (what full fine-tuning needs), frozen.
Reported: student tokens/s (batch x 600 / step time), peak allocated memory during a step
(torch.cuda.max_memory_allocated) and memory held before the step (weights, optimizer state).

Loss memory: student/teacher logits (batch, 256, vocab) in bf16 with near/distant masks of trajectories
at spread-out steps; `gathered` = `tadllm.distill.loss.tad_loss` (log-softmax in fp32 on the selected rows
only), `naive` = fp32 log-softmax of the whole tensors, then masked means; forward + backward, peak memory
above the logits themselves.
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (BIG_LLADA, LLADA_8B, SMALL_LLADA, device_info, gib, median, pick_device, random_llada,  # noqa: E402
                    sync, table, write_json)

from tadllm.distill.config import TADConfig  # noqa: E402
from tadllm.distill.data import TADCollator, TrajectoryDataset  # noqa: E402
from tadllm.distill.loss import tad_loss  # noqa: E402
from tadllm.distill.partition import near_distant_masks  # noqa: E402
from tadllm.distill.lora import apply_lora  # noqa: E402
from tadllm.distill.trainer import TADTrainer  # noqa: E402


def make_records(n, prompt_len, teacher_prompt_len, length, vocab, mask_id, seed=0):
    g = torch.Generator().manual_seed(seed)

    def ids(k):
        t = torch.randint(2, min(vocab, 120000), (k,), generator=g)
        t[t == mask_id] = 2
        return t.tolist()

    records = []
    for i in range(n):
        records.append(dict(problem_id=f"p{i}", sample_idx=0, prompt_ids=ids(prompt_len),
                            teacher_prompt_ids=ids(teacher_prompt_len), tokens=ids(length),
                            reveal_step=(torch.randperm(length, generator=g) + 1).tolist(), num_steps=length,
                            correct=True))
    return records


def spread_steps(batch: int, length: int) -> list[int]:
    """Steps spread over the trajectory (masked fractions from ~1 to ~0): the average training example."""
    return [int((i + 0.5) * length / batch) for i in range(batch)]


def memory(device):
    if device.type != "cuda":
        return None, None
    return torch.cuda.memory_allocated(device), torch.cuda.max_memory_allocated(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_step(mode: str, args, device, dtype, cfg_kwargs, tmp) -> dict:
    model, family = random_llada(cfg_kwargs, device, dtype)
    model.train()
    config = TADConfig(output_dir=tmp, use_peft=True, teacher_mode=mode, lora_r=args.lora_r,
                       lora_alpha=args.lora_r, lora_dropout=0.05, delta=8, per_device_train_batch_size=args.batch,
                       gradient_checkpointing=args.gradient_checkpointing, report_to="none",
                       use_cpu=device.type == "cpu", save_strategy="no")
    teacher = copy.deepcopy(model) if mode == "frozen_copy" else None  # as build_trainer: before LoRA
    model = apply_lora(model, config, family)
    if args.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    L = args.response_length
    records = make_records(args.batch, args.prompt_length, args.teacher_prompt_length or args.prompt_length, L,
                           cfg_kwargs["vocab_size"], family.mask_token_id)
    dataset = TrajectoryDataset(records, mask_token_id=family.mask_token_id, vocab_size=cfg_kwargs["vocab_size"])
    collator = TADCollator(family.mask_token_id, family.fill_token_id, delta=config.delta, mode="tad")
    trainer = TADTrainer(model=model, args=config, family=family, teacher=teacher, train_dataset=dataset,
                         data_collator=collator)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call training_step directly
    steps = spread_steps(args.batch, L)
    batch = collator([dataset[i * L + s] for i, s in enumerate(steps)])
    batch = {k: v.to(device) for k, v in batch.items()}
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)

    def step():
        loss = trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return loss

    step()  # warm-up; creates the AdamW state
    sync(device)
    held, _ = memory(device)
    reset_peak(device)
    times = []
    for _ in range(args.repeat):
        sync(device)
        t0 = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - t0)
    _, peak = memory(device)
    t = median(times)
    tokens = args.batch * batch["input_ids"].shape[1]
    row = {"teacher_mode": mode, "batch": args.batch, "seq": int(batch["input_ids"].shape[1]),
           "teacher_seq": int(batch["teacher_input_ids"].shape[1]), "step_s": t, "step_all_s": times,
           "tok/s": tokens / t, "held GiB": gib(held), "peak GiB": gib(peak),
           "step GiB": None if peak is None else gib(peak - held), "loss": float(loss.detach()),
           "trainable_params": trainable, "teacher_is_copy": trainer.teacher is not None,
           "near": int(batch["near"].sum()), "distant": int(batch["distant"].sum())}
    del trainer, model, teacher, batch
    free(device)
    return row


def bench_loss(args, device, dtype, vocab) -> list[dict]:
    B, L = args.batch, args.response_length
    g = torch.Generator().manual_seed(0)
    reveal = torch.stack([torch.randperm(L, generator=g) + 1 for _ in range(B)]).to(device)
    step = torch.tensor(spread_steps(B, L), device=device)
    near, distant = near_distant_masks(reveal, step, 8)
    labels = torch.randint(0, vocab, (B, L), generator=g).to(device)
    rows = []
    for name in ("gathered", "naive"):
        free(device)
        torch.manual_seed(0)
        student = torch.randn(B, L, vocab, device=device, dtype=dtype, requires_grad=True)
        teacher = torch.randn(B, L, vocab, device=device, dtype=dtype)
        sync(device)
        base, _ = memory(device)
        reset_peak(device)
        t0 = time.perf_counter()
        if name == "gathered":
            loss, _ = tad_loss(student, teacher, labels, near, distant)
        else:
            log_s = F.log_softmax(student.float(), dim=-1)
            log_t = F.log_softmax(teacher.float(), dim=-1)
            ce = -log_s.gather(-1, labels[..., None]).squeeze(-1)
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)
            loss = (ce * near).sum() / near.sum().clamp_min(1) + (kl * distant).sum() / distant.sum().clamp_min(1)
        loss.backward()
        sync(device)
        elapsed = time.perf_counter() - t0
        _, peak = memory(device)
        rows.append({"loss_impl": name, "batch": B, "positions": L, "vocab": vocab, "near": int(near.sum()),
                     "distant": int(distant.sum()), "time_ms": 1e3 * elapsed, "loss": float(loss.detach()),
                     "logits GiB": gib(2 * student.numel() * student.element_size()),
                     "extra peak GiB": None if peak is None else gib(peak - base)})
        del student, teacher, loss
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--small", action="store_true", help="tiny model on CPU (smoke run)")
    p.add_argument("--device", default=None)
    p.add_argument("--arch", choices=["1.6b", "8b"], default="1.6b",
                   help="random LLaDA of ~1.65B parameters, or of LLaDA-8B's shape (needs ~45 GB for frozen_copy)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--prompt-length", type=int, default=None)
    p.add_argument("--teacher-prompt-length", type=int, default=None)
    p.add_argument("--response-length", type=int, default=None)
    p.add_argument("--lora-r", type=int, default=None)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["disable_adapter", "frozen_copy"],
                   choices=["disable_adapter", "frozen_copy"])
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed-argument notices
    defaults = dict(batch=2, prompt_length=24, response_length=32, lora_r=8) if args.small else \
        dict(batch=4, prompt_length=344, response_length=256, lora_r=128)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = pick_device(args.device, args.small)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    cfg_kwargs = dict(SMALL_LLADA if args.small else {"1.6b": BIG_LLADA, "8b": LLADA_8B}[args.arch])
    steps = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            row = bench_step(mode, args, device, dtype, cfg_kwargs, tmp)
            steps.append(row)
            print(f"{mode}: {row['tok/s']:.0f} tok/s, peak {row['peak GiB']} GiB", flush=True)
    loss_rows = bench_loss(args, device, dtype, cfg_kwargs["vocab_size"])
    d, n, m, v = (cfg_kwargs[k] for k in ("d_model", "n_layers", "mlp_hidden_size", "vocab_size"))
    params = n * (4 * d * d + 3 * d * m + 2 * d) + 2 * v * d + d  # blocks + embedding + head + final norm
    result = {"benchmark": "training", "small": args.small, "device": device_info(device),
              "model": {**cfg_kwargs, "dtype": str(dtype), "parameters": params},
              "lora_r": args.lora_r, "gradient_checkpointing": args.gradient_checkpointing,
              "steps": steps, "loss_memory": loss_rows}
    name = args.name or "training" + ("_small" if args.small else "") + ".json"
    path = write_json(args.out, name, result)
    title = (f"training step: {result['model']['parameters'] / 1e9:.2f}B random LLaDA, {dtype}, LoRA r="
             f"{args.lora_r}, batch {args.batch}, seq {steps[0]['seq']}, "
             f"{result['device'].get('gpu', result['device']['device'])}  -> {path}")
    print(table(steps, ["teacher_mode", "batch", "seq", "step_s", "tok/s", "held GiB", "peak GiB", "step GiB"],
                title))
    print(table(loss_rows, ["loss_impl", "batch", "positions", "vocab", "near", "distant", "time_ms",
                            "logits GiB", "extra peak GiB"], "TAD loss, forward + backward"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
