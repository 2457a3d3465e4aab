"""`DecodeConfig`: every knob of the decoding engine in one validated dataclass.

The policy names and their options' checks come from the policy registry (`policies.POLICIES`), the cache
kinds from `cache.USE_CACHE`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass

from .cache import USE_CACHE
from .policies import POLICIES

FIXED_COUNT_POLICIES = tuple(name for name, p in POLICIES.items() if p.fixed_count)
THRESHOLD_POLICIES = tuple(name for name, p in POLICIES.items() if not p.fixed_count)
MULTI_BLOCK_REVEAL = ("opened", "activated")


def one_of(names) -> str:
    """'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass
class DecodeConfig:
    """How to decode.

    - `policy`: `low_confidence` / `random` reveal a fixed number of tokens per step (LLaDA's `steps`
      schedule, ordered by confidence or at random); `confidence` reveals every masked token whose top-1
      probability is above `threshold` (Fast-dLLM); `entropy` every token whose predictive entropy (nats)
      is below `threshold` (TAD / d3LLM). Every step reveals at least one token.
    - `block_length`: semi-autoregressive blocks (set equal to `gen_length` for a single block).
    - `multi_block`: pipelined decoding (d3LLM, the TAD release): a new block opens once the last opened
      block is `block_add_threshold` decoded (or complete); a block is fully active once its predecessor is
      `decoded_token_threshold` decoded. With `multi_block_reveal="opened"` (the reference's rule, default)
      every opened block reveals the tokens that pass the threshold; a row where none passes reveals its
      best token of the whole opened region, and the first block with masks, if it got no reveal, its best
      token as well (up to two reveals). `multi_block_reveal="activated"` (an earlier tadllm rule) lets
      only fully active blocks reveal, with the single fallback in the first block with masks.
    - `stop_at_eos`: finish a sample once a stop token is revealed and everything before it is revealed.
    - `use_cache`: `none` (exact; the release's setting), or Fast-dLLM style KV caching for native LLaDA
      models (`tadllm.decoding.cache`): `prefix` reuses the keys/values of the positions before the current
      block, `dual` also those after it (the current window). The cache is refreshed by a full forward
      (counted as a step, its logits used) whenever a row's current block changes. An approximation that
      trades a little accuracy for speed; the number of forward passes is unchanged for a given decoding.
    """

    gen_length: int = field(default=256, metadata={"help": "tokens to generate (the canvas after the prompt)"})
    block_length: int = field(default=32, metadata={
        "help": "semi-autoregressive block length (must divide gen_length)"})
    policy: str = field(default="low_confidence", metadata={"help": "which masked tokens a step reveals",
                                                             "choices": tuple(POLICIES)})
    steps: int | None = field(default=None, metadata={
        "help": "fixed-count policies: total steps (default gen-length)"})
    threshold: float | None = field(default=None, metadata={
        "help": "entropy (nats, reveal below) or confidence (reveal above) threshold"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature (0: greedy)"})
    multi_block: bool = field(default=False, metadata={"help": "pipelined multi-block decoding (d3LLM)"})
    block_add_threshold: float = field(default=0.5, metadata={
        "help": "multi-block: open a new block once the last one is this decoded"})
    decoded_token_threshold: float = field(default=0.5, metadata={
        "help": "multi-block: a block is fully active once its predecessor is this decoded"})
    multi_block_reveal: str = field(default="opened", metadata={
        "help": "which opened blocks reveal tokens: every opened block (the reference's rule) or only fully "
                "active ones (an earlier tadllm rule)", "choices": MULTI_BLOCK_REVEAL})
    stop_at_eos: bool = field(default=False, metadata={
        "help": "finish a sample once its stop token is revealed", "no_help": "decode the whole length even after EOS"})
    seed: int = field(default=0, metadata={"help": "random seed of the sampling"})
    use_cache: str = field(default="none", metadata={
        "help": "Fast-dLLM KV cache (native LLaDA only; docs/performance.md)", "choices": tuple(USE_CACHE)})

    def __post_init__(self):
        self.validate()

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    def validate(self) -> None:
        if self.gen_length <= 0 or self.block_length <= 0:
            raise ValueError(f"gen_length ({self.gen_length}) and block_length ({self.block_length}) must be > 0")
        if self.gen_length % self.block_length:
            raise ValueError(f"block_length {self.block_length} must divide gen_length {self.gen_length}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        POLICIES[self.policy].validate(self)
        for name in ("block_add_threshold", "decoded_token_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.multi_block_reveal not in MULTI_BLOCK_REVEAL:
            raise ValueError(f"multi_block_reveal must be one of {', '.join(MULTI_BLOCK_REVEAL)}, "
                             f"got {self.multi_block_reveal!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.use_cache not in USE_CACHE:
            raise ValueError(f"use_cache must be {one_of(USE_CACHE)}, got {self.use_cache!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DecodeConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown decoding option(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


# The command line's view of DecodeConfig (`tad generate / eval / trajectories / serve`, flags made by
# `tadllm.config.ConfigParser`): the same fields, help and choices, not validated (a sweep may complete it).
# The lengths default to None, "unset", so that the model's recorded lengths can fill them
# (`tadllm.cliargs.apply_model_settings`), and stop_at_eos is on (the commands' default; the engine's is off).
ARGUMENT_DEFAULTS = {"gen_length": None, "block_length": None, "stop_at_eos": True}
DecodingArguments = make_dataclass("DecodingArguments", [
    (f.name, f"{f.type} | None" if f.name in ("gen_length", "block_length") else f.type,
     field(default=ARGUMENT_DEFAULTS.get(f.name, f.default), metadata=f.metadata))
    for f in fields(DecodeConfig)])
DecodingArguments.__module__ = __name__
DecodingArguments.__doc__ = "DecodeConfig's fields as command-line options (lengths None = unset); not validated."
