"""Helpers of the `tad serve` tests (tests/serve): prompts, a gate that can hold the decoding worker inside a
forward pass, polling, and the `tad generate` reference answer."""

from __future__ import annotations

import functools
import threading
import time

MODEL = "testbed"
# arithmetic prompts of different lengths (the teacher answers them step by step)
PROMPTS = ["start 74 add 29 mul 6", "start 12 mul 3 sub 7", "start 8 add 41 sub 9 mul 2",
           "start 301 sub 12 add 7 mul 3 add 150"]


class Gate:
    """Wraps the model's forward: while closed, the decoding worker waits inside its next forward pass, so a
    test can line requests up in a known state."""

    def __init__(self):
        self.opened, self.entered = threading.Event(), threading.Event()
        self.opened.set()

    def wrap(self, forward):
        @functools.wraps(forward)
        def gated(*args, **kwargs):
            self.entered.set()
            if not self.opened.wait(timeout=60):
                raise TimeoutError("the test never opened the gate")
            return forward(*args, **kwargs)

        return gated

    def close(self):
        self.entered.clear()
        self.opened.clear()

    def open(self):
        self.opened.set()


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def reference(teacher, config, prompt: str):
    """What `tad generate --raw` answers for `prompt` with `config`: (text, nfe, tokens)."""
    from tadllm.decoding import generate

    model, tokenizer, family = teacher
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    out = generate(model, family, [ids], config)
    n = int(out.num_tokens[0])
    return tokenizer.decode(out.tokens[0, :n], skip_special_tokens=True), int(out.nfe[0]), n
