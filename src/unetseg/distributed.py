"""The only module that knows about ranks: set-up from torchrun's environment, sharding,
and the few collectives training needs.

Under ``torchrun --nproc_per_node=N -m unetseg train ...`` every process reads RANK,
LOCAL_RANK and WORLD_SIZE from its environment; gloo is used on the CPU and NCCL on GPUs. A
plain ``unetseg train`` is a world of one, and every function here is then a cheap no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "setup", "shutdown", "shard", "all_sum", "any_rank"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and reports; the others only compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device_name: str | None = None) -> tuple[World, torch.device]:
    """Join the process group torchrun set up (if any); returns the world and this process's
    device (cuda:LOCAL_RANK on GPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        from .runtime import pick_device

        return World(), pick_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_name is None or device_name.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    return World(rank, size, local_rank), device


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(length: int, world: World) -> range:
    """This rank's share of ``length`` items, every item exactly once over all ranks and no
    padding (DistributedSampler pads with duplicates, which would count some validation
    images twice). Shards may differ in length by one, or be empty."""
    return range(world.rank, length, world.size)


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (in place; the tensor itself in a world of one)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank: every rank must take the same branch around a
    collective (skip a step, stop the run), or the others would wait for it forever."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
