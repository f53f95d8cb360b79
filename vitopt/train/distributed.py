"""DDP set-up from torchrun's environment: gloo on CPU, nccl on GPU; rank 0 does all I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world() -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE...); a plain run is rank 0 of 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def group_joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], world: World) -> list[float]:
    """Sum a few scalars over ranks (metrics, the stop flag)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_object(obj, world: World):
    """Rank 0's ``obj`` on every rank (a measurement only rank 0 takes, a decision all must share)."""
    if not world.distributed:
        return obj
    holder = [obj if world.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
