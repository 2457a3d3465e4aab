"""`tad pretrain`: train the testbed's masked-diffusion teacher from scratch on the arithmetic task.

The objective is LLaDA's SFT objective: for each example draw t ~ U(eps, 1), mask every response token
(the EOS padding included) with probability t, and weight the cross-entropy of the masked tokens by 1/t,
normalised by the response length. A fraction `hint_fraction` of the examples carry the privileged
reference in the prompt (`ref <hint>`), so the teacher learns to use it, the role instruction following
plays for LLaDA. It runs on the Hugging Face Trainer (accelerate, checkpoints, resume), and a callback
decodes held-out problems one token per step every `accuracy_every` steps to log the accuracy curve.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..decoding.loop import left_pad


@dataclass
class PretrainConfig(TrainingArguments):
    """Trainer arguments plus the model size, the task and the objective."""

    d_model: int = field(default=256, metadata={"help": "hidden size of the LLaDA-architecture model"})
    n_layers: int = 6
    n_heads: int = 4
    mlp_hidden_size: int = 512
    min_ops: int = 2
    max_ops: int = 4
    commute: float = field(default=0.0, metadata={"help": "probability of writing an add/mul step's operands "
                                                          "swapped in reference responses (tadllm.tasks.arith)"})
    gen_length: int = 64
    block_length: int = 32
    n_train: int = 200_000
    n_test: int = 500
    data_seed_task: int = 0
    hint_fraction: float = 0.3
    hint: str = "answer"  # answer | full | mixed
    mask_eps: float = 1e-3
    accuracy_every: int = 500
    accuracy_problems: int = 500
    save_dtype: str = field(default="bfloat16", metadata={"help": "dtype of the final checkpoint"})
    time_limit_s: float | None = field(default=None, metadata={"help": "stop and checkpoint after this long"})
    output_dir: str = "runs/testbed-teacher"
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 200
    weight_decay: float = 0.01
    per_device_train_batch_size: int = 256
    max_steps: int = 5000
    logging_steps: int = 50
    save_steps: int = 1000
    save_total_limit: int = 2
    report_to: str = "none"
    remove_unused_columns: bool = False


def model_config(cfg: PretrainConfig, tokenizer):
    from ..models.llada import LLaDAConfig

    max_prompt = 128  # "start ... ref <full response>" is at most ~110 characters for the default spec
    return LLaDAConfig(
        d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.n_heads, n_layers=cfg.n_layers,
        mlp_hidden_size=cfg.mlp_hidden_size, vocab_size=len(tokenizer), embedding_size=len(tokenizer),
        max_sequence_length=max_prompt + 2 * cfg.gen_length, rope_theta=10000.0, init_std=0.02,
        mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )


def task_and_splits(cfg: PretrainConfig):
    from ..tasks.arith import ArithSpec, ArithTask, make_splits

    spec = ArithSpec(min_ops=cfg.min_ops, max_ops=cfg.max_ops, commute=cfg.commute)
    task = ArithTask(spec=spec, hint="answer" if cfg.hint == "mixed" else cfg.hint)
    train, test = make_splits(cfg.n_train, cfg.n_test, seed=cfg.data_seed_task, spec=spec)
    return task, train, test


class PretrainDataset(torch.utils.data.Dataset):
    """Token ids of (plain prompt, hinted prompts, padded response) per problem."""

    def __init__(self, task, examples, tokenizer, gen_length: int, hint: str):
        hints = ("answer", "full") if hint == "mixed" else (hint,)

        def encode(texts):
            return tokenizer(texts, add_special_tokens=False)["input_ids"]

        responses = encode([ex.reference for ex in examples])
        plain = encode([task.user_prompt(ex) for ex in examples])
        hinted = [encode([task.privileged_prompt(ex, hint=h) for ex in examples]) for h in hints]
        too_long = [ex.id for ex, r in zip(examples, responses) if len(r) >= gen_length]
        if too_long:
            raise ValueError(f"{len(too_long)} responses (e.g. {too_long[0]}) have >= gen_length {gen_length} tokens; "
                             f"raise gen_length or lower max_ops")
        eos = tokenizer.eos_token_id
        self.rows = [(plain[i], [h[i] for h in hinted], responses[i] + [eos] * (gen_length - len(responses[i])))
                     for i in range(len(examples))]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        plain, hinted, response = self.rows[i]
        return {"plain": plain, "hinted": hinted, "response": response}


@dataclass
class MaskedDiffusionCollator:
    """Left-pads prompts, picks hinted prompts with probability `hint_fraction`, masks responses at t."""

    pad_id: int
    mask_id: int
    hint_fraction: float
    eps: float = 1e-3

    def __call__(self, batch):
        prompts = []
        for row in batch:
            use_hint = torch.rand(()) < self.hint_fraction
            prompts.append(row["hinted"][int(torch.randint(len(row["hinted"]), ()))] if use_hint else row["plain"])
        B, L = len(batch), len(batch[0]["response"])  # responses are padded to one length
        ids, attn = left_pad([p + row["response"] for p, row in zip(prompts, batch)], self.pad_id)
        width = ids.shape[1] - L
        t = (1 - self.eps) * torch.rand(B, 1) + self.eps
        masked = torch.zeros_like(ids, dtype=torch.bool)
        masked[:, width:] = torch.rand(B, L) < t
        labels = torch.where(masked, ids, -100)
        noisy = torch.where(masked, self.mask_id, ids)
        positions = (attn.cumsum(-1) - 1).clamp_min(0)
        return {"input_ids": noisy, "attention_mask": attn, "position_ids": positions, "labels": labels,
                "t": t.squeeze(1), "response_length": torch.full((B,), L)}


def masked_diffusion_loss(logits, labels, t, response_length):
    """LLaDA SFT loss: sum over masked tokens of CE / t, divided by the response length, batch mean."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    per_sample = (ce / t[:, None]).sum(-1) / response_length.float()
    return per_sample.mean()


class PretrainTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        t, length, labels = inputs.pop("t"), inputs.pop("response_length"), inputs.pop("labels")
        outputs = model(**inputs)
        loss = masked_diffusion_loss(outputs.logits, labels, t, length)
        return (loss, outputs) if return_outputs else loss


def decode_accuracy(model, tokenizer, task, examples, gen_length, block_length, hinted=False,
                    batch_size=512) -> float:
    """Accuracy (%) of greedy one-token-per-step decoding: the TPF=1 reference point."""
    from ..decoding import DecodeConfig, generate
    from ..models.family import resolve_family

    family = resolve_family(model.config, tokenizer, native=True)
    texts = [task.privileged_prompt(ex) if hinted else task.user_prompt(ex) for ex in examples]
    prompts = [tokenizer.encode(s, add_special_tokens=False) for s in texts]
    cfg = DecodeConfig(gen_length=gen_length, block_length=block_length, policy="low_confidence")
    was_training = model.training
    model.eval()
    out = generate(model, family, prompts, cfg, batch_size=batch_size)
    model.train(was_training)
    answers = tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
    return 100.0 * sum(task.score_batch(answers, examples)) / len(examples)


class TimeLimit(TrainerCallback):
    """Stop (and save a checkpoint) after `seconds` of training, so a run fits a fixed time slot and the
    next invocation resumes from it."""

    def __init__(self, seconds: float | None):
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        if self.seconds and time.monotonic() - self.start > self.seconds:
            control.should_training_stop = True
            control.should_save = True


class AccuracyCurve(TrainerCallback):
    """Every `every` steps: TPF=1 accuracy with and without the hint, appended to accuracy_curve.jsonl."""

    def __init__(self, tokenizer, task, examples, cfg: PretrainConfig):
        self.tokenizer, self.task, self.examples, self.cfg = tokenizer, task, examples, cfg

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.cfg.accuracy_every and state.global_step != state.max_steps:
            return
        if not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        for hinted in (False, True):
            row["acc_hint" if hinted else "acc"] = decode_accuracy(
                model, self.tokenizer, self.task, self.examples, self.cfg.gen_length, self.cfg.block_length, hinted)
        with open(Path(args.output_dir) / "accuracy_curve.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[accuracy] step {row['step']}: {row['acc']:.1f}% (with hint {row['acc_hint']:.1f}%)", flush=True)


def pretrain(cfg: PretrainConfig):
    """Build (or resume) the model, train, and save a standard checkpoint with its tokenizer."""
    from ..models.llada import LLaDAModelLM
    from .tokenizer import build_char_tokenizer, save_char_tokenizer

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = build_char_tokenizer()
    task, train, test = task_and_splits(cfg)
    model = LLaDAModelLM(model_config(cfg, tokenizer))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[pretrain] model: {n_params / 1e6:.2f}M parameters; {len(train)} train / {len(test)} test problems")
    dataset = PretrainDataset(task, train, tokenizer, cfg.gen_length, cfg.hint)
    collator = MaskedDiffusionCollator(tokenizer.pad_token_id, tokenizer.mask_token_id, cfg.hint_fraction,
                                       cfg.mask_eps)
    eval_set = test[: cfg.accuracy_problems]
    trainer = PretrainTrainer(model=model, args=cfg, train_dataset=dataset, data_collator=collator,
                              callbacks=[AccuracyCurve(tokenizer, task, eval_set, cfg), TimeLimit(cfg.time_limit_s)])
    last = _last_checkpoint(cfg.output_dir)
    trainer.train(resume_from_checkpoint=last)
    final = Path(cfg.output_dir) / "final"
    from ..models.loading import parse_dtype

    trainer.accelerator.unwrap_model(trainer.model).to(parse_dtype(cfg.save_dtype)).save_pretrained(str(final))
    save_char_tokenizer(tokenizer, str(final))
    (final / "testbed.json").write_text(json.dumps({
        "task": "arith", "min_ops": cfg.min_ops, "max_ops": cfg.max_ops, "commute": cfg.commute,
        "gen_length": cfg.gen_length, "block_length": cfg.block_length, "hint": cfg.hint,
        "data_seed": cfg.data_seed_task,
        "n_train": cfg.n_train, "n_test": cfg.n_test, "steps": trainer.state.global_step,
        "parameters": n_params}, indent=2))
    return final


def _last_checkpoint(output_dir: str):
    from transformers.trainer_utils import get_last_checkpoint

    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


def continue_pretraining(cfg: PretrainConfig, init_from: str, task, examples, out_dir) -> Path:
    """Continue the masked-diffusion objective from a checkpoint on `examples` (the control baseline)."""
    from ..models import load_model
    from .tokenizer import save_char_tokenizer

    model, tokenizer, _ = load_model(init_from, dtype="float32", device="cpu")
    model.train()
    dataset = PretrainDataset(task, examples, tokenizer, cfg.gen_length, cfg.hint)
    collator = MaskedDiffusionCollator(tokenizer.pad_token_id, tokenizer.mask_token_id, cfg.hint_fraction,
                                       cfg.mask_eps)
    trainer = PretrainTrainer(model=model, args=cfg, train_dataset=dataset, data_collator=collator)
    trainer.train()
    out = Path(out_dir)
    trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(out))
    save_char_tokenizer(tokenizer, str(out))
    from .settings import copy_settings

    copy_settings(init_from, out)
    return out
