"""Helpers of the trajectory tests: a tiny random LLaDA checkpoint with a char tokenizer, a fake task.

Also imported by the subprocess that the kill -9 test starts (hence a plain module, not a conftest).
"""

from __future__ import annotations

from pathlib import Path

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz \n+-*/=;#.,:()?!_"


def char_tokenizer(save_dir=None):
    """The testbed's char tokenizer when it exists, else an equivalent one built here."""
    try:
        from tadllm.testbed.tokenizer import build_char_tokenizer
    except ImportError:
        build_char_tokenizer = None
    if build_char_tokenizer is not None:
        return build_char_tokenizer(save_dir)
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|eos|>", "<|bos|>", "<|unk|>", "<|mdm_mask|>"]
    vocab = {t: i for i, t in enumerate(specials + list(ALPHABET))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|eos|>",
                                 bos_token="<|bos|>", unk_token="<|unk|>", mask_token="<|mdm_mask|>",
                                 padding_side="left", clean_up_tokenization_spaces=False)
    if save_dir is not None:
        hf.save_pretrained(save_dir)
    return hf


def make_checkpoint(path, max_sequence_length: int = 512, seed: int = 0) -> Path:
    """A tiny random LLaDA (d_model 32, 2 layers) + char tokenizer saved in `path`."""
    import torch

    from tadllm.models.llada import LLaDAConfig, LLaDAModelLM

    path = Path(path)
    tok = char_tokenizer(path)
    cfg = LLaDAConfig(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=len(tok),
                      mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, max_sequence_length=max_sequence_length, init_std=0.3)
    torch.manual_seed(seed)
    LLaDAModelLM(cfg).save_pretrained(path)
    return path


from tadllm.tasks import Example  # noqa: E402  (the real record type, not a copy)


class FakeTask:
    """Correct iff the response contains the example's answer character."""

    name = "fake"
    kind = "synthetic"

    def load(self, source=None, split="test", limit=None):
        return make_examples(limit or 12)

    def user_prompt(self, ex):
        return f"q {ex.question}"

    def privileged_prompt(self, ex, template=None):
        return (template or "q {question} ref {reference}").format(question=ex.question, reference=ex.reference)

    def extract_answer(self, text):
        return text[:1] or None

    def is_correct(self, text, ex):
        return ex.answer in text

    def score_batch(self, texts, examples):
        assert len(texts) == len(examples)
        return [self.is_correct(t, ex) for t, ex in zip(texts, examples)]


def make_examples(n: int) -> list[Example]:
    # prompts of different lengths, so that batches get left padding
    return [Example(id=f"p{i:03d}", question="x" * (1 + i % 5) + str(i), reference=f"{i}+{i}={2 * i}",
                    answer="qcoh7v"[i % 6]) for i in range(n)]
