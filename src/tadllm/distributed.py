"""The one distributed setup of evaluation and trajectory generation: this process's rank, world size and
device (`dist_context`), and the few collectives evaluation needs (`DistContext.gather` / `broadcast` /
`barrier`). Under `accelerate launch` / `torchrun` an `accelerate.PartialState` initialises the group.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

__all__ = ["DistContext", "dist_context"]


@dataclasses.dataclass
class DistContext:
    """Rank / world size of this process. ``world_size == 1``: plain single-process evaluation."""

    rank: int = 0
    world_size: int = 1
    device: Any = None  # the process's device under accelerate (None: caller decides)
    state: Any = None  # accelerate.PartialState when one was created

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return (self.world_size > 1 and torch.distributed.is_available()
                and torch.distributed.is_initialized())

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def dist_context() -> DistContext:
    """The current process's place in a multi-process run.

    - an initialised ``torch.distributed`` group: its rank and world size;
    - ``WORLD_SIZE > 1`` in the environment (``accelerate launch`` / ``torchrun``): an
      ``accelerate.PartialState`` is created (imported lazily), which initialises the group and picks the
      process's device;
    - otherwise a single process (accelerate is not imported).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = None
        if torch.cuda.is_available() and torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        return DistContext(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        try:
            from accelerate import PartialState
        except ImportError as err:  # pragma: no cover - accelerate is a core dependency
            raise ImportError("WORLD_SIZE > 1 but accelerate is not installed: pip install accelerate") from err
        # Without CUDA, accelerate only sets up a (gloo) process group when asked for the CPU explicitly.
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        state = PartialState(cpu=cpu)
        launched = int(os.environ["WORLD_SIZE"])
        if launched != state.num_processes:
            raise RuntimeError(f"launched with WORLD_SIZE={launched} but accelerate sees {state.num_processes} "
                               f"process(es); check the launcher configuration")
        return DistContext(state.process_index, state.num_processes, state.device, state)
    return DistContext()
