"""DDP on the CPU (gloo, 2 processes): the same steps as one process with the global batch,
validation that counts every image once, one writer, and a run that torchrun stops with SIGTERM
resumes to the uninterrupted weights.

`unetseg train --nproc 2` hands the processes to torchrun; the other 2-process runs here start
the same two ranks from `torch.multiprocessing.spawn` with torchrun's environment (`ranks.py`),
which leaves out the launcher's own start-up, about half of a torchrun launch."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as tmp
from safetensors.torch import load_file

import ranks
from unetseg.cli import main
from unetseg.distributed import EpochOrder, World, epoch_parts, shard
from unetseg.losses import cross_entropy_loss
from unetseg.model import UNet

# CE and GroupNorm: a CE mean over equal-sized images and per-image normalisation decompose
# exactly over ranks (a batch Dice or BatchNorm statistics per rank would not; see the README).
FLAGS = ["--data", "synthetic", "--size", "32", "--train-samples", "32", "--val-samples", "7",
         "--base", "4", "--batch-size", "8", "--loss", "ce", "--norm", "group",
         "--precision", "fp32", "--no-channels-last", "--quiet"]


def train_ranks(*argv: str, join: bool = True):
    """``unetseg train ...`` as two DDP ranks started by spawn; without ``join``, the spawn
    context to join later."""
    return tmp.spawn(ranks.train_rank, args=(free_port(), ["train", *argv]), nprocs=2,
                     join=join)


def model_weights(path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_gradient_equals_the_single_process_gradient_of_the_global_batch(tmp_path):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=generator)
    masks = torch.randint(0, 3, (8, 32, 32), generator=generator)
    out = tmp_path / "grads.pt"
    tmp.spawn(ranks.gradient_rank, args=(free_port(), images, masks, str(out)), nprocs=2,
              join=True)
    averaged = torch.load(out)
    torch.manual_seed(0)
    model = UNet(3, 3, base=4, norm="group")
    cross_entropy_loss(model(images), masks).backward()
    for name, parameter in model.named_parameters():
        scale = parameter.grad.abs().max().item() + 1e-12
        assert (averaged[name] - parameter.grad).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one_with_the_global_batch(tmp_path, capfd):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one_step = ["--epochs", "1", "--train-samples", "8"]
    assert main(["train", *FLAGS, "--out", str(single), *one_step]) == 0     # in this process
    capfd.readouterr()
    train_ranks(*FLAGS, "--out", str(ddp), *one_step)
    one, two = model_weights(single / "last.safetensors"), model_weights(ddp / "last.safetensors")
    difference = torch.cat([(one[k] - two[k]).abs().flatten() for k in one])
    # After one AdamW step. Adam divides each gradient element by its own RMS, so an element
    # whose gradient is near Adam's eps (1e-8) turns float rounding in the sum over ranks into
    # a visible step: one or two of the 123,403 weights move by up to a few 1e-5. Over more
    # steps such differences spread (the exact test of the batch semantics is the gradient
    # test above).
    assert (difference > 1e-5).sum().item() <= 3
    assert difference.max().item() < 1e-4
    # Validation over 7 images on 2 ranks (4 + 3, no padding): the same counts exactly.
    assert history(ddp)[0]["val_iou"] == history(single)[0]["val_iou"]
    # Only rank 0 wrote: one config, one last and one best checkpoint, one log line per epoch.
    assert sorted(p.name for p in ddp.iterdir()) == ["best.safetensors", "config.yaml",
                                                     "curves.png", "last.safetensors",
                                                     "metrics.csv", "metrics.jsonl"]
    assert capfd.readouterr().out.count("epoch 1/1") == 1


@pytest.mark.slow
def test_a_ddp_run_stopped_by_sigterm_resumes_to_the_uninterrupted_weights(tmp_path):
    """`unetseg train --nproc 2` under torchrun, stopped by SIGTERM in its second epoch:
    torchrun passes the signal to every rank, they stop at one step, checkpoint and say how to
    resume; resumed, the run ends with the weights of the same run never stopped."""
    whole, run = tmp_path / "whole", tmp_path / "run"
    # 2 ranks of 4 images: 6 steps an epoch; the signal comes in epoch 2 of 3.
    extra = ["--epochs", "3", "--train-samples", "48", "--checkpoint-every", "3"]
    command = [sys.executable, "-m", "unetseg", "train", *FLAGS, "--out", str(run), *extra,
               "--nproc", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    reference = train_ranks(*FLAGS, "--out", str(whole), *extra, join=False)   # meanwhile
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before the signal"
    process.send_signal(signal.SIGTERM)                   # torchrun passes it to every rank
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "stopped by SIGTERM" in err and f"--resume {run}" in err
    while not reference.join():
        pass
    train_ranks("--resume", str(run))
    one, two = model_weights(whole / "last.safetensors"), model_weights(run / "last.safetensors")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-6
    assert len(history(run)) == 3


@pytest.mark.parametrize("length,ranks", [(7, 2), (2, 3), (10, 4), (0, 2)])
def test_validation_shards_cover_every_image_exactly_once_without_padding(length, ranks):
    shards = [list(shard(length, World(rank, ranks))) for rank in range(ranks)]
    assert sorted(i for s in shards for i in s) == list(range(length))


def test_rank_batches_together_are_the_single_process_batch():
    single = list(EpochOrder(37, seed=5, per_rank=8, world=World()))
    ranks = [list(EpochOrder(37, seed=5, per_rank=4, world=World(r, 2))) for r in range(2)]
    for batch in range(37 // 8):
        together = ranks[0][4 * batch:4 * batch + 4] + ranks[1][4 * batch:4 * batch + 4]
        assert together == single[8 * batch:8 * batch + 8]
    skipped = list(EpochOrder(37, seed=5, per_rank=4, world=World(1, 2), start=2))
    assert skipped == ranks[1][8:]


@pytest.mark.parametrize("world", [World(), World(1, 2)])
def test_epoch_parts_split_one_pass_into_consecutive_runs_of_its_order(world):
    """--epoch-steps: a 37-image pass in global batches of 8 (4 whole batches and 5 images)
    split into three epochs of 1, 1 and 2 whole batches of its order, the last also holding
    the 5 left over, which a loader drops as it does in a whole pass (under DDP the sampler
    drops them). A resumed part skips the batches it had taken."""
    per_rank = 8 // world.size
    whole = list(EpochOrder(37, seed=5, per_rank=per_rank, world=world))
    parts = [list(EpochOrder(37, seed=5, per_rank=per_rank, world=world, part=(j, 3)))
             for j in range(3)]
    assert sum(parts, []) == whole
    expected = [8, 8, 16 + 5] if world.size == 1 else [4, 4, 8]
    assert [len(part) for part in parts] == expected
    resumed = list(EpochOrder(37, seed=5, per_rank=per_rank, world=world, start=1,
                              part=(2, 3)))
    assert resumed == parts[2][per_rank:]


@pytest.mark.parametrize("batches,steps,parts", [(5, 0, 1), (5, 5, 1), (5, 8, 1), (5, 2, 3),
                                                 (100, 30, 4)])
def test_epoch_parts_are_the_fewest_that_keep_each_epoch_within_the_steps(batches, steps,
                                                                           parts):
    assert epoch_parts(batches, steps) == parts
