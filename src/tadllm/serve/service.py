"""From a validated OpenAI request to a scheduler job: prompt ids, decoding settings and limits, each refused
with a 4xx that says what to change (nothing is truncated or silently ignored)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ..decoding import DecodeConfig
from ..decoding.config import FIXED_COUNT_POLICIES
from .scheduler import Job, Scheduler
from .text import TextCodec

# tadllm decoding options a request may set (the rest of the DecodeConfig is the server's)
REQUEST_DECODING_FIELDS = ("policy", "threshold", "steps", "block_length")


class ServeError(Exception):
    """An error answered to the client: HTTP status, message, the offending parameter."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code


@dataclass
class Service:
    scheduler: Scheduler
    codec: TextCodec
    base: DecodeConfig  # the server's decoding settings; gen_length is the canvas of every request
    model_name: str
    max_positions: int | None = None
    vocab_size: int | None = None
    aliases: tuple = ()  # other accepted model names (e.g. the checkpoint path)
    created: int = field(default_factory=lambda: int(time.time()))

    def check_model(self, name: str) -> None:
        if name not in (self.model_name, *self.aliases):
            raise ServeError(404, f"model {name!r} is not served here; this server serves {self.model_name!r} "
                             f"(GET /v1/models)", "model", "not_found_error", "model_not_found")

    # ------------------------------------------------------------------------------------ prompts

    def completion_ids(self, req) -> list[int]:
        prompt = req.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ServeError(400, f"one prompt per request is supported, got {len(prompt)}", "prompt")
            prompt = prompt[0]
        if isinstance(prompt, str):
            if not prompt:
                raise ServeError(400, "the prompt is empty", "prompt")
            ids = self._encode(prompt, "prompt")
        else:
            ids = list(prompt)
        return self._check_ids(ids, "prompt")

    def chat_ids(self, req) -> list[int]:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        if not any(m["content"].strip() for m in messages):
            raise ServeError(400, "the messages have no content", "messages")
        try:
            text = self.codec.chat_text(messages)
        except ValueError as err:
            raise ServeError(400, str(err), "messages") from None
        return self._check_ids(self._encode(text, "messages"), "messages")

    def _encode(self, text: str, param: str) -> list[int]:
        try:
            return self.codec.encode(text)
        except ValueError as err:
            raise ServeError(400, str(err), param) from None

    def _check_ids(self, ids: list[int], param: str) -> list[int]:
        if not ids:
            raise ServeError(400, "the prompt encodes to no tokens", param)
        bad = [i for i in ids if self.vocab_size is not None and not 0 <= i < self.vocab_size]
        if bad:
            raise ServeError(400, f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})", param)
        if self.codec.family.mask_token_id in ids:
            raise ServeError(400, f"the prompt contains the mask token (id {self.codec.family.mask_token_id})",
                             param)
        gen, limit = self.base.gen_length, self.max_positions
        if limit is not None and len(ids) + gen > limit:
            raise ServeError(400, f"the prompt has {len(ids)} tokens; with the {gen} generated positions that "
                             f"exceeds the model's {limit} positions by {len(ids) + gen - limit}: shorten the "
                             f"prompt (it is never truncated)", param, code="context_length_exceeded")
        return ids

    # ------------------------------------------------------------------------------------ decoding

    def decode_config(self, req) -> DecodeConfig:
        """The server's settings with the request's temperature and tadllm options; fields that do not apply
        to the resulting policy are cleared so that equal decodings share one group."""
        over = {name: getattr(req, name) for name in REQUEST_DECODING_FIELDS if getattr(req, name) is not None}
        if req.temperature is not None:
            over["temperature"] = req.temperature
        data = {**self.base.to_dict(), **over}
        fixed = data["policy"] in FIXED_COUNT_POLICIES
        if fixed and "threshold" in over:
            raise ServeError(400, f"threshold applies to the confidence and entropy policies; this request decodes "
                             f"with {data['policy']!r} (set policy too)", "threshold")
        if not fixed and "steps" in over:
            raise ServeError(400, f"steps applies to the low_confidence and random policies; this request decodes "
                             f"with {data['policy']!r}", "steps")
        data["threshold" if fixed else "steps"] = None
        try:
            return DecodeConfig(**data)
        except ValueError as err:
            raise ServeError(400, f"invalid decoding options: {err}") from None

    def max_tokens(self, requested: int | None) -> int:
        gen = self.base.gen_length
        if requested is not None and requested > gen:
            raise ServeError(400, f"max_tokens {requested} exceeds this server's generation length {gen} "
                             f"(tad serve --gen-length)", "max_tokens")
        return gen if requested is None else requested

    def job(self, req, ids: list[int], sink, max_tokens: int | None) -> Job:
        reject_unsupported(req)
        config = self.decode_config(req)
        if req.seed is not None:
            seed = req.seed % 2**63
        else:  # greedy decoding ignores the seed; sampling without one differs from call to call
            seed = self.base.seed if config.temperature == 0 else random.randrange(2**31)
        return Job(ids, config, self.max_tokens(max_tokens), sink, seed=seed, stops=list(req.stop or []),
                   stream=bool(req.stream))


def reject_unsupported(req) -> None:
    """400 for OpenAI parameters tadllm cannot honour (better than answering something else)."""
    unsupported = [
        ("n", (req.n or 1) != 1, "only n=1 is supported"),
        ("top_p", req.top_p not in (None, 1.0), "top_p sampling is not supported; use temperature"),
        ("presence_penalty", bool(req.presence_penalty), "penalties are not supported"),
        ("frequency_penalty", bool(req.frequency_penalty), "penalties are not supported"),
        ("logit_bias", bool(req.logit_bias), "logit_bias is not supported"),
        ("echo", bool(getattr(req, "echo", False)), "echo is not supported"),
        ("suffix", bool(getattr(req, "suffix", None)), "suffix is not supported"),
        ("best_of", (getattr(req, "best_of", None) or 1) != 1, "only best_of=1 is supported"),
        ("logprobs", bool(getattr(req, "logprobs", None)), "logprobs are not supported"),
        ("top_logprobs", bool(getattr(req, "top_logprobs", None)), "logprobs are not supported"),
        ("tools", bool(getattr(req, "tools", None)), "tools are not supported"),
    ]
    for param, bad, message in unsupported:
        if bad:
            raise ServeError(400, message, param)
