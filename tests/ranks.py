"""What each process of the 2-process tests runs (`torch.multiprocessing.spawn` targets).

Kept out of the test files: a spawned process imports the module its function lives in, and a
test file's own imports (torchmetrics, hypothesis) cost each process seconds. Here a process
imports torch and the unetseg modules it runs, nothing else.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def join(rank: int, port: int) -> None:
    """Join a 2-rank gloo group on this machine, one thread per rank."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))


def leave() -> None:
    """Both ranks reach the barrier before either tears gloo down: a rank that destroys the
    group while the other still uses it can abort the process."""
    dist.barrier()
    dist.destroy_process_group()


def metrics_rank(rank: int, port: int, shards, num_classes: int, ignore_index,
                 out_path: str) -> None:
    """One gloo rank: fold its own shard into both meters, all_reduce, rank 0 saves the result."""
    from unetseg.metrics import BoundaryF1, ConfusionMatrix

    join(rank, port)
    try:
        matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index)
        boundary = BoundaryF1(num_classes, tolerance=1.5, ignore_index=ignore_index)
        for pred, target in shards[rank]:
            matrix.update(pred, target)
            boundary.update(pred, target)
        matrix.all_reduce()
        boundary.all_reduce()
        if rank == 0:
            torch.save({"matrix": matrix.matrix, "bf1": boundary.compute(),
                        "count": boundary.count}, out_path)
    finally:
        leave()


def gradient_rank(rank: int, port: int, images, masks, out: str) -> None:
    """One DDP rank's backward pass over its half of the batch; rank 0 saves the gradients."""
    from torch.nn.parallel import DistributedDataParallel

    from unetseg.losses import cross_entropy_loss
    from unetseg.model import UNet

    join(rank, port)
    try:
        torch.manual_seed(0)
        model = DistributedDataParallel(UNet(3, 3, base=4, norm="group"))
        half = slice(4 * rank, 4 * rank + 4)                  # this rank's part of the batch
        cross_entropy_loss(model(images[half]), masks[half]).backward()
        if rank == 0:
            torch.save({n: p.grad for n, p in model.module.named_parameters()}, out)
    finally:
        leave()


def train_rank(rank: int, port: int, argv: list[str]) -> None:
    """What each of torchrun's workers runs (``-m unetseg ...``): the environment torchrun
    sets, and its one thread per worker unless OMP_NUM_THREADS says otherwise."""
    from unetseg.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    assert main(argv) == 0
