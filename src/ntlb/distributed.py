"""Many processes with torch.distributed, as torchrun starts them: which process this is, the process group
(gloo on CPU, nccl on CUDA), a barrier, and the device a process uses. One process is a world of size 1 and
every helper is then a no-op, so the same code runs alone and under `torchrun --nproc-per-node N`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes (local_rank: its index on this machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_world(device: str | torch.device = "cpu") -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK; joins its process group (once)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def process_device(device: str, world: World) -> str:
    """Under torchrun, "cuda" means this process's own GPU (cuda:LOCAL_RANK)."""
    return f"cuda:{world.local_rank}" if device == "cuda" and world.size > 1 else device


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def sum_over_processes(values: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise sum of `values` over every process (itself when alone)."""
    if world.size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values
