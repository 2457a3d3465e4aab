"""`DecodeConfig`: every knob of the decoding engine in one validated dataclass.

The policy names and their options' checks come from the policy registry (`policies.POLICIES`), the cache
kinds from `cache.USE_CACHE`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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

    gen_length: int = 256
    block_length: int = 32
    policy: str = "low_confidence"
    steps: int | None = None
    threshold: float | None = None
    temperature: float = 0.0
    multi_block: bool = False
    block_add_threshold: float = 0.5
    decoded_token_threshold: float = 0.5
    multi_block_reveal: str = "opened"  # opened (reference) | activated
    stop_at_eos: bool = False
    seed: int = 0
    use_cache: str = "none"  # none | prefix | dual (native LLaDA only)

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
