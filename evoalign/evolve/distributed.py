"""Sharding seeds over the processes of `accelerate launch` (or torchrun, or MPI), and gathering between them.

Without a launcher (no WORLD_SIZE, or MPI equivalent, above 1) everything is one process and `gather` returns
`[obj]`. Under a launcher, accelerate's `PartialState` sets up the process group (gloo on CPU-only machines) and
each process's own GPU; `share` gives each process its contiguous part of the seeds
(`split_between_processes`), `gather` collects every process's object (`gather_object`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's rank and the number of processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous part of `items` (all of them in a single process)."""
        if self.world == 1:
            return list(items)
        from accelerate import PartialState

        with PartialState().split_between_processes(list(items)) as mine:
            return list(mine)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def barrier(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def init_distributed() -> Dist:
    """The current process's place in a launched job (a single process when not launched)."""
    if max(int(os.environ.get(name) or 1) for name in _WORLD_SIZE_VARIABLES) <= 1:
        return Dist()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU-only processes need gloo, not nccl
    if state.device.type == "cuda":
        torch.cuda.set_device(state.device)
    return Dist(rank=state.process_index, world=state.num_processes)
