"""Char-level tokenizer of the testbed model, saved in Hugging Face format.

Every character of :data:`CHAR_ALPHABET` is one token; there is no normalisation and no pre-tokenisation
other than splitting into single characters, and the decoder joins tokens with nothing in between, so
``decode(encode(s)) == s`` for any string over the alphabet (spaces and newlines included). Characters
outside the alphabet (upper case, non-ASCII, ...) become ``<|unk|>``. No special token is added by
``encode`` and there is no chat template.

Special tokens (ids 0-3): ``<|eos|>`` (also the padding token, as in LLaDA), ``<|bos|>``, ``<|unk|>``,
``<|mdm_mask|>`` (the diffusion mask). Padding is on the left.

The saved directory reloads with ``transformers.AutoTokenizer.from_pretrained(save_dir)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside build_char_tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "PAD_TOKEN",
    "BOS_TOKEN",
    "UNK_TOKEN",
    "MASK_TOKEN",
    "SPECIAL_TOKENS",
    "CHAR_ALPHABET",
    "char_vocab",
    "build_char_tokenizer",
    "save_char_tokenizer",
]

EOS_TOKEN = "<|eos|>"
PAD_TOKEN = EOS_TOKEN  # padding is EOS, like LLaDA
BOS_TOKEN = "<|bos|>"
UNK_TOKEN = "<|unk|>"
MASK_TOKEN = "<|mdm_mask|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS_TOKEN, BOS_TOKEN, UNK_TOKEN, MASK_TOKEN)

# digits, lower-case letters, space, newline, the arithmetic symbols and a little punctuation
CHAR_ALPHABET: str = "0123456789abcdefghijklmnopqrstuvwxyz \n+-*/=;#.,:()?!_"


def char_vocab() -> dict[str, int]:
    """token -> id: the special tokens (ids 0..3, in :data:`SPECIAL_TOKENS` order), then the alphabet."""
    tokens = list(SPECIAL_TOKENS) + list(CHAR_ALPHABET)
    assert len(set(tokens)) == len(tokens), "duplicate token in the char vocabulary"
    return {t: i for i, t in enumerate(tokens)}


def build_char_tokenizer(save_dir: str | os.PathLike | None = None) -> "PreTrainedTokenizerFast":
    """Build the char-level tokenizer; when ``save_dir`` is given also ``save_pretrained`` it there."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=char_vocab(), unk_token=UNK_TOKEN))
    # one piece per character (\s\S: newline included); no normaliser, no post-processor
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # join with nothing in between
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # matched whole in the input text, never split

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        unk_token=UNK_TOKEN,
        mask_token=MASK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,  # would turn "a , b" into "a, b"
    )
    if save_dir is not None:
        save_char_tokenizer(hf, save_dir)
    return hf


def save_char_tokenizer(tokenizer, save_dir: str | os.PathLike) -> Path:
    """``save_pretrained`` plus a portable ``tokenizer_class``: transformers 5 writes its own class name
    ("TokenizersBackend"), which transformers 4.x cannot load; "PreTrainedTokenizerFast" loads the same
    tokenizer.json in both. Prefer this over ``tokenizer.save_pretrained`` when saving a checkpoint."""
    save_dir = Path(save_dir)
    tokenizer.save_pretrained(str(save_dir))
    cfg_path = save_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return save_dir
