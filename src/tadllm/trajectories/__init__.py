"""Teacher trajectories for TAD: generation (resumable, sharded), compact parquet storage, reading."""

from .cli import main_trajectories
from .runner import decode_seed, default_trajectory_decode_config, generate_trajectories
from .storage import (FIELDS, SCHEMA, check_compatible, read_trajectories, shard_files, state_at, summarize,
                      tokenizer_fingerprint)

__all__ = [
    "FIELDS", "SCHEMA", "check_compatible", "decode_seed", "default_trajectory_decode_config",
    "generate_trajectories", "main_trajectories", "read_trajectories", "shard_files", "state_at", "summarize",
    "tokenizer_fingerprint",
]
