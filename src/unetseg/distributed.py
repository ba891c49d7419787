"""The only module that knows about ranks: set-up from torchrun's environment, sharding,
and the few collectives training needs.

Under ``torchrun --nproc_per_node=N -m unetseg train ...`` every process reads RANK,
LOCAL_RANK and WORLD_SIZE from its environment; gloo is used on the CPU and NCCL on GPUs. A
plain ``unetseg train`` is a world of one, and every function here is then a cheap no-op.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["World", "setup", "shutdown", "shard", "EpochOrder", "epoch_parts", "all_sum",
           "all_sum_if_initialised", "any_rank", "launched_by_torchrun", "is_main_process",
           "MainProcessOnly"]


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


def launched_by_torchrun() -> bool:
    """Whether this process is one of a torchrun launch (torchrun sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """Whether this process is rank 0, read from torchrun's environment (a process not
    launched by torchrun is): it holds before any process group is joined."""
    return os.environ.get("RANK", "0") == "0"


class MainProcessOnly(logging.Filter):
    """A logging filter that passes records on rank 0 only: one log for the whole job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return is_main_process()


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
    """Leave the process group once every rank got here (release DDP wrappers first)."""
    if world.distributed and dist.is_initialized():
        gc.collect()                   # objects that still hold the group (a dropped reducer)
        dist.barrier()
        dist.destroy_process_group()


def shard(length: int, world: World) -> range:
    """This rank's share of ``length`` items, every item exactly once over all ranks and no
    padding (DistributedSampler pads with duplicates, which would count some validation
    images twice). Shards may differ in length by one, or be empty."""
    return range(world.rank, length, world.size)


class EpochOrder(Sampler):
    """The epoch's shuffled order (a function of ``seed`` alone) from global batch ``start``
    on, and this rank's share of each global batch.

    A run resumed in the middle of an epoch sees exactly the batches it had not trained on.
    Under DDP each global batch of ``per_rank * world.size`` samples is split into consecutive
    slices, one per rank, so N processes together take the same optimiser steps as one process
    with the whole batch (incomplete global batches are dropped).

    ``part = (j, k)`` makes the epoch the j-th of k consecutive runs of the shuffled order's
    whole batches, as equal as whole batches allow (``--epoch-steps``: a pass over a large
    training set split into shorter epochs); the last part also holds the short batch that
    ends the order, dropped as it is in a whole pass.
    """

    def __init__(self, length: int, seed: int, per_rank: int, world: World,
                 start: int = 0, part: tuple[int, int] = (0, 1)) -> None:
        self.length, self.seed, self.per_rank, self.world = length, seed, per_rank, world
        self.start, self.part = start, part

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.length, generator=generator).tolist()
        size = self.per_rank * self.world.size
        whole, (j, k) = len(order) // size, self.part
        end = (j + 1) * whole // k * size if j < k - 1 else len(order)
        order = order[j * whole // k * size:end]
        if not self.world.distributed:
            return order[self.start * self.per_rank:]
        mine = []
        for batch in range(self.start, len(order) // size):
            offset = batch * size + self.world.rank * self.per_rank
            mine.extend(order[offset:offset + self.per_rank])
        return mine

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def epoch_parts(pass_batches: int, epoch_steps: int) -> int:
    """Into how many epochs ``--epoch-steps`` splits a pass of ``pass_batches`` whole
    batches: the fewest that take at most ``epoch_steps`` each (1 when it is 0, or the pass
    is no longer)."""
    return max(1, math.ceil(pass_batches / epoch_steps)) if epoch_steps else 1


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (in place; the tensor itself in a world of one)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_sum_if_initialised(tensor: torch.Tensor) -> torch.Tensor:
    """`all_sum` for code that is handed no `World` (evaluation): a sum over ranks when a
    process group is up, else the tensor itself."""
    if dist.is_available() and dist.is_initialized():
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
