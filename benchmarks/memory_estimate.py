"""Per-GPU memory estimate of TAD LoRA training for the 8B/7B recipes (pure arithmetic, no torch needed).

    python benchmarks/memory_estimate.py                 # markdown tables (pasted into docs/scaling.md)
    python benchmarks/memory_estimate.py --seq 800 --micro-batch 8 --lora-r 64

What is counted (bytes per GPU, GiB = 2**30):
- base weights in bf16 (2 B/param), replicated under DDP and ZeRO-2, sharded 1/N under FSDP (where the
  recipe is run with model_dtype=float32, 4 B/param, see configs/accelerate/fsdp.yaml) plus the two
  blocks FSDP holds unsharded at a time (the one computing and the prefetched one);
- LoRA (rank r on every linear layer of the blocks, the family default): the weights (fp32, 4 B), their
  fp32 gradients (4 B) and the fp32 AdamW moments (8 B). DDP adds its gradient buckets (4 B). ZeRO-2 keeps
  bf16 LoRA weights (2 B) replicated and partitions the fp32 master copy, gradients and moments (16 B / N);
  FSDP shards everything (16 B / N);
- activations of one micro-batch of `micro_batch` sequences of `seq` tokens (student prompt + response;
  the teacher's longer prompt only matters for its forward, below). Per token and layer, bf16, with SDPA
  (no seq x seq scores kept):
      attention  10h + 4kv   (norm in/out in fp32 and bf16, q, k, v, attention output)
      MLP         6h + 8m    (norm, gate output, SiLU output, up output, product)
      LoRA       12h + 3m + 14r   (per target: dropout mask and output of its input, rank-r hidden)
  without checkpointing all layers keep this; with gradient checkpointing each layer keeps only its input
  (2h) and one layer's worth is alive during its recompute;
- logits: the student's (B, T, V) bf16 plus its float32 copy for the gathered near/distant rows (at most
  the response length per sequence, 256), and the teacher forward: no-grad, so one layer's working set,
  its bf16 logits and the float32 distant rows it keeps;
- a fixed 2 GiB for the CUDA context, allocator fragmentation and NCCL buffers.
It is an estimate (typically within ~20 % of the allocator's peak); measure with
`torch.cuda.max_memory_allocated()` before relying on a tight fit.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Arch:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    qkv_bias: bool
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def block_params(self) -> int:
        h, kv, m = self.hidden, self.kv_dim, self.mlp
        attn = 2 * h * h + 2 * h * kv + ((h + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * h * m + 2 * h

    def params(self) -> int:
        head = 0 if self.tied else self.hidden * self.vocab
        return self.vocab * self.hidden + self.layers * self.block_params() + self.hidden + head

    def lora_params(self, r: int) -> int:
        """r x (in + out) for every linear layer of every block (q, k, v, o, gate, up, down)."""
        h, kv, m = self.hidden, self.kv_dim, self.mlp
        per_layer = r * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + m) + (m + h))
        return self.layers * per_layer

    def act_bytes_per_token_layer(self, r: int) -> int:
        h, kv, m = self.hidden, self.kv_dim, self.mlp
        return (10 * h + 4 * kv) + (6 * h + 8 * m) + (12 * h + 3 * m + 14 * r)


# LLaDA-8B-Instruct (config.json of the checkpoint) and Dream-v0-Instruct-7B (= Qwen2.5-7B).
LLADA_8B = Arch("LLaDA-8B", hidden=4096, layers=32, heads=32, kv_heads=32, mlp=12288, vocab=126464, qkv_bias=False)
DREAM_7B = Arch("Dream-7B", hidden=3584, layers=28, heads=28, kv_heads=4, mlp=18944, vocab=152064, qkv_bias=True)
RECIPES = {"llada-8b-{quality,speed}": LLADA_8B, "dream-7b-{quality,speed}": DREAM_7B}
STRATEGIES = ("ddp", "zero2", "fsdp")
OVERHEAD = 2 * GIB


def estimate(arch: Arch, strategy: str, gpus: int, checkpointing: bool, seq: int = 600, micro_batch: int = 4,
             lora_r: int = 128, response: int = 256, teacher_seq: int | None = None) -> dict[str, float]:
    """Bytes per GPU, by component."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}")
    P, Pl = arch.params(), arch.lora_params(lora_r)
    if strategy == "fsdp":
        weights = 4 * P / gpus + 2 * 2 * arch.block_params()  # fp32 shards + two gathered bf16 blocks
        lora = 16 * Pl / gpus
    elif strategy == "zero2":
        weights = 2 * P
        lora = 2 * Pl + 16 * Pl / gpus
    else:
        weights = 2 * P
        lora = 20 * Pl
    per_tok_layer = arch.act_bytes_per_token_layer(lora_r)
    tokens = micro_batch * seq
    if checkpointing:
        acts = tokens * (2 * arch.hidden * arch.layers + per_tok_layer)
    else:
        acts = tokens * per_tok_layer * arch.layers
    rows = micro_batch * response
    student_logits = 2 * tokens * arch.vocab + 2 * 4 * rows * arch.vocab  # bf16 logits + fp32 rows (+ grad)
    t_tokens = micro_batch * (teacher_seq or seq + 64)
    teacher = 2 * t_tokens * arch.vocab + 4 * rows * arch.vocab + t_tokens * (10 * arch.hidden + 4 * arch.mlp)
    parts = {"weights": weights, "lora+optimizer": lora, "activations": acts,
             "logits": student_logits, "teacher fwd": teacher, "overhead": OVERHEAD}
    parts["total"] = sum(parts.values())
    return parts


def table(arch: Arch, gpus_list=(1, 2, 4, 8), **kw) -> str:
    lines = ["| strategy | grad. ckpt | " + " | ".join(f"{g} GPU{'s' if g > 1 else ''}" for g in gpus_list) + " |",
             "|---|---|" + "---|" * len(gpus_list)]
    for strategy in STRATEGIES:
        for ckpt in (True, False):
            cells = []
            for g in gpus_list:
                if strategy != "ddp" and g == 1:
                    cells.append("–")
                    continue
                cells.append(f"{estimate(arch, strategy, g, ckpt, **kw)['total'] / GIB:.0f}")
            lines.append(f"| {strategy} | {'on' if ckpt else 'off'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def breakdown(arch: Arch, strategy: str = "zero2", gpus: int = 8, checkpointing: bool = True, **kw) -> str:
    parts = estimate(arch, strategy, gpus, checkpointing, **kw)
    return ", ".join(f"{k} {v / GIB:.1f}" for k, v in parts.items())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq", type=int, default=600, help="tokens per sequence (student prompt + response)")
    p.add_argument("--micro-batch", type=int, default=4, help="per_device_train_batch_size")
    p.add_argument("--lora-r", type=int, default=128)
    p.add_argument("--response", type=int, default=256, help="response (gen) length")
    args = p.parse_args(argv)
    kw = dict(seq=args.seq, micro_batch=args.micro_batch, lora_r=args.lora_r, response=args.response)
    print(f"Estimated peak GiB per GPU: seq {args.seq}, micro-batch {args.micro_batch}, LoRA r={args.lora_r} "
          f"on every linear layer of the blocks, bf16 (FSDP: fp32 shards + bf16 compute).\n")
    for recipe, arch in RECIPES.items():
        lora_m = arch.lora_params(args.lora_r) / 1e6
        print(f"### {recipe} ({arch.name}: {arch.params() / 1e9:.2f}B params, LoRA {lora_m:.0f}M)\n")
        print(table(arch, **kw))
        print(f"\nbreakdown, zero2 on 8 GPUs with checkpointing (GiB): {breakdown(arch, **kw)}")
        print(f"breakdown, ddp on 1 GPU without checkpointing (GiB): "
              f"{breakdown(arch, 'ddp', 1, False, **kw)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
