"""Text on both sides of the model for `tad serve`: prompt encoding, detokenization and stop strings.

Prompts are encoded the way `tad generate` encodes them (`family.format_prompt`, then `encode` without
added special tokens), so a served answer is the answer `tad generate` prints. A checkpoint without tokenizer
files can still be served: prompts are then token-id lists and answers are the ids written as decimal
numbers separated by spaces (what the random-weight benchmark uses).
"""

from __future__ import annotations

import threading

REPLACEMENT = "\ufffd"  # what a byte-level tokenizer decodes from half of a multi-byte character


class TextCodec:
    """The model's tokenizer behind one lock: the HTTP thread encodes while the decoding worker decodes, and a
    fast tokenizer used from two threads at once can fail ("Already borrowed")."""

    def __init__(self, tokenizer, family):
        self.tokenizer, self.family = tokenizer, family
        self.lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer files: send the prompt as a list of token ids "
                             "to /v1/completions")
        with self.lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return " ".join(str(i) for i in ids)
        with self.lock:
            return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def chat_text(self, messages: list[dict]) -> str:
        """The prompt text of a conversation: the tokenizer's chat template when it has one; without one a
        single user message (optionally after a system message) as `family.format_prompt` formats it."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer files, so it cannot serve chat; send token ids to "
                             "/v1/completions")
        if getattr(self.tokenizer, "chat_template", None):
            with self.lock:
                return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        roles = [m["role"] for m in messages]
        if roles not in (["user"], ["system", "user"]):
            raise ValueError(f"this model has no chat template, so a conversation must be one user message, "
                             f"optionally after one system message (got roles {roles}); use /v1/completions "
                             f"for other raw prompts")
        system = messages[0]["content"] if roles[0] == "system" else None
        return self.family.format_prompt(self.tokenizer, messages[-1]["content"], system)


def find_stop(text: str, stops: list[str]) -> int | None:
    """Index of the earliest occurrence of any stop string in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def sendable_length(text: str, stops: list[str]) -> int:
    """How much of `text` (an answer still growing) may be streamed now: not a trailing half character, and
    not a suffix that may turn out to be the start of a stop string once more text is final."""
    end = len(text)
    while end and text[end - 1] == REPLACEMENT:
        end -= 1
    held = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, end), held, -1):
            if text.endswith(stop[:k], 0, end):
                held = k
                break
    return end - held


def tokens_for_chars(decode, ids: list[int], n_chars: int) -> int:
    """The fewest leading tokens of `ids` whose text covers `n_chars` characters (the completion tokens of an
    answer cut by a stop string). Bisection: decoded length grows with the number of tokens."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(ids[:mid])) >= n_chars:
            hi = mid
        else:
            lo = mid + 1
    return lo
