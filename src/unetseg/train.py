"""Training: `fit` runs epochs with evaluation, checkpoints, logs and resume.

A run folder holds ``config.yaml`` (the resolved configuration), ``last.safetensors`` (written
every epoch; what ``resume`` continues from), ``best.safetensors`` (best validation mIoU),
``metrics.jsonl`` and ``metrics.csv`` (one row per epoch) and ``curves.png``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, Subset
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, restore_optimizer, save_checkpoint, unwrap
from .distributed import World
from .files import atomic_write_text, json_ready
from .config import RunConfig
from .data.sources import Datasets, build_datasets
from .evaluation import evaluate, predict_labels, prepare_images
from .losses import compute_loss
from .metrics import ConfusionMatrix, scores_from_matrix
from .model import UNet
from .report import plot_curves
from .runtime import autocast, pick_precision, tune_malloc

__all__ = ["FitResult", "TrainingDiverged", "TrainingInterrupted", "fit", "lr_factor", "median_frequency_weights"]

PREVIOUS_NAME = "previous.safetensors"


class TrainingDiverged(RuntimeError):
    """The loss was not finite for too many steps in a row; the last good checkpoint stays."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT stopped the run after a checkpoint; ``signal`` is the number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal = signal_number


class _StopSignals:
    """While active, SIGTERM (a cluster pre-empting the job) and SIGINT (Ctrl-C) only ask the
    run to stop: it finishes the current step, writes a checkpoint and raises
    `TrainingInterrupted`. A second signal stops at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number

    def interrupted(self, run_dir: Path, where: str) -> TrainingInterrupted:
        name = signal.Signals(self.signal).name
        return TrainingInterrupted(f"stopped by {name} after {where}; the checkpoint is saved. "
                                   f"Continue with: unetseg train --resume {run_dir}",
                                   self.signal)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best_miou: float
    best_epoch: int


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step``: a linear warm-up, then a cosine decay.

    ``"cosine"`` warms up from 0 to the peak and decays to 0. ``"onecycle"`` follows Smith's
    one-cycle policy with ``torch.optim.lr_scheduler.OneCycleLR``'s default end points: it
    starts at peak/25 and ends at peak/25/1e4 (the warm-up here is linear, not cosine).
    """
    start, end = (0.0, 0.0) if schedule == "cosine" else (1 / 25, 1 / 25 / 1e4)
    if step < warmup_steps:
        return start + (1.0 - start) * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def median_frequency_weights(class_pixels: list[int]) -> list[float]:
    """Median-frequency balancing (Eigen and Fergus, 2015): ``median(freq) / freq_c`` with
    ``freq_c`` the class's share of all counted training pixels; 0 for an absent class."""
    pixels = np.asarray(class_pixels, dtype=np.float64)
    freq = pixels / pixels.sum()
    median = np.median(freq[freq > 0])
    return [float(median / f) if f > 0 else 0.0 for f in freq]


# --- fit -------------------------------------------------------------------------------------

class _EpochOrder(Sampler):
    """The epoch's shuffled order (a function of seed and epoch) from global batch ``start``
    on, and this rank's share of each global batch.

    A run resumed in the middle of an epoch sees exactly the batches it had not trained on.
    Under DDP each global batch of ``per_rank * world.size`` samples is split into consecutive
    slices, one per rank, so N processes together take the same optimiser steps as one process
    with the whole batch (incomplete global batches are dropped).
    """

    def __init__(self, length: int, seed: int, per_rank: int, world: World,
                 start: int = 0) -> None:
        self.length, self.seed, self.per_rank, self.world = length, seed, per_rank, world
        self.start = start

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.length, generator=generator).tolist()
        if not self.world.distributed:
            return order[self.start * self.per_rank:]
        size = self.per_rank * self.world.size
        mine = []
        for batch in range(self.start, len(order) // size):
            first = batch * size + self.world.rank * self.per_rank
            mine.extend(order[first:first + self.per_rank])
        return mine

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def _loaders(data: Datasets, config: RunConfig, epoch: int, device: torch.device,
             world: World, skip_batches: int = 0):
    """The epoch's loaders: training without its first ``skip_batches`` batches, and this
    rank's shard of the validation set (every image exactly once over the ranks)."""
    cfg = config.data
    if cfg.batch_size % world.size:
        raise ValueError(f"--batch-size {cfg.batch_size} is the global batch and must divide "
                         f"among {world.size} processes")
    per_rank = cfg.batch_size // world.size
    data.train.set_epoch(epoch)
    pin = device.type == "cuda"
    order = _EpochOrder(len(data.train), config.train.seed * 100_003 + epoch, per_rank, world,
                        skip_batches)
    # Their own generators: a DataLoader otherwise draws its worker seed from the global RNG,
    # which would shift every later dropout mask after a mid-epoch resume.
    loader_rng = torch.Generator().manual_seed(config.train.seed * 100_003 + epoch)
    train = DataLoader(data.train, batch_size=per_rank, sampler=order,
                       num_workers=cfg.workers, pin_memory=pin, generator=loader_rng,
                       drop_last=len(data.train) > cfg.batch_size)
    val_set = data.val if not world.distributed else \
        Subset(data.val, list(distributed.shard(len(data.val), world)))
    # Validation images of different sizes cannot share a batch.
    sizes = getattr(data.val, "sizes", {None})
    val = DataLoader(val_set, batch_size=cfg.batch_size if len(sizes) == 1 else 1,
                     num_workers=cfg.workers, pin_memory=pin,
                     generator=torch.Generator().manual_seed(epoch))
    return train, val


def _class_weights(config: RunConfig, data: Datasets) -> torch.Tensor | None:
    spec = config.train.class_weights
    if not spec:
        return None
    if config.train.loss not in ("ce", "ce_dice"):
        raise ValueError(f"--class-weights weigh the cross-entropy; --loss {config.train.loss} "
                         f"has none (use ce or ce_dice)")
    if spec == "median":
        if data.class_pixels is None:
            raise ValueError("median-frequency class weights need a dataset with counted "
                             "class pixels (a folder dataset)")
        weights = median_frequency_weights(data.class_pixels)
    else:
        weights = [float(w) for w in spec.split(",")]
        if len(weights) != data.spec.num_classes:
            raise ValueError(f"{len(weights)} class weights given for "
                             f"{data.spec.num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


def _metadata(config: RunConfig, data: Datasets, precision: str, state: dict) -> dict:
    return {
        "class_names": list(data.spec.class_names),
        "colours": [list(c) for c in data.spec.colours],
        "ignore_index": data.spec.ignore_index,
        "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "binary": config.train.loss == "bce_dice",
        "precision": precision,
        "channels_last": config.train.channels_last,
        "run_config": config.to_dict(),
        "training": state,
    }


def _write_logs(run_dir: Path, history: list[dict], class_names) -> None:
    atomic_write_text(run_dir / "metrics.jsonl",
                      "".join(json.dumps(json_ready(row)) + "\n" for row in history))
    columns = ["epoch", "train_loss", "train_miou", "val_loss", "val_miou", "val_mdice",
               "val_pixel_accuracy", "val_mean_bf1", "lr", "seconds"]
    lines = [",".join(columns + [f"iou_{name}" for name in class_names])]
    for row in history:
        lines.append(",".join([str(row[c]) for c in columns] + [str(v) for v in row["val_iou"]]))
    atomic_write_text(run_dir / "metrics.csv", "\n".join(lines) + "\n")
    plot_curves(history, class_names, run_dir / "curves.png")


def _open_tensorboard(run_dir: Path):
    """A SummaryWriter logging into ``run_dir/tensorboard``, or None (with a message saying
    why) when the tensorboard package is not installed: it is an optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("--tensorboard: the tensorboard package is not installed (pip install "
              "tensorboard); logging to metrics.jsonl/csv and curves.png only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _log_tensorboard(writer, row: dict, class_names) -> None:
    epoch = row["epoch"]
    for key in ("train_loss", "val_loss", "train_miou", "val_miou", "val_mdice",
                "val_pixel_accuracy", "val_mean_bf1", "lr"):
        writer.add_scalar(key.replace("_", "/", 1), row[key], epoch)
    for name, iou in zip(class_names, row["val_iou"]):
        writer.add_scalar(f"val_iou/{name}", iou, epoch)
    writer.flush()


@dataclass
class _EpochProgress:
    """How far the current epoch got: kept in mid-epoch checkpoints so that a resumed epoch
    reports the same training loss and mIoU as one never interrupted."""

    matrix: ConfusionMatrix
    loss_sum: float = 0.0
    steps: int = 0          # optimiser steps taken
    batches: int = 0        # batches consumed, skipped non-finite ones included

    def to_json(self) -> dict:
        return {"loss_sum": self.loss_sum, "steps": self.steps, "batches": self.batches}


def _train_one_epoch(model, loader, optimizer, scheduler, scaler, ctx,
                     progress: _EpochProgress) -> tuple[float, float]:
    """The rest of the epoch; returns (mean loss, running mIoU of the training batches).
    After every batch, ``ctx["after_batch"](progress)`` may checkpoint or stop the run."""
    cfg, device = ctx["config"].train, ctx["device"]
    model.train()
    matrix = progress.matrix
    bar = tqdm(loader, desc=f"epoch {ctx['epoch'] + 1}/{cfg.epochs}", leave=False,
               disable=not cfg.progress, initial=progress.batches,
               total=progress.batches + len(loader))
    for images, masks in bar:
        progress.batches += 1
        masks = masks.to(device, non_blocking=True)
        with autocast(device, ctx["precision"]):
            logits = model(prepare_images(images, device, cfg.channels_last))
        loss = compute_loss(cfg.loss, logits.float(), masks, ctx["ignore_index"],
                            cfg.dice_weight, ctx["class_weights"])
        optimizer.zero_grad(set_to_none=True)
        if distributed.any_rank(not torch.isfinite(loss).item(), ctx["world"], device):
            # Skip the step (no update from a NaN/Inf gradient), but keep the schedule on time.
            ctx["skipped"] += 1
            ctx["bad_in_a_row"] += 1
            scheduler.step()
            if ctx["bad_in_a_row"] >= cfg.max_nonfinite:
                raise TrainingDiverged(
                    f"the loss was not finite for {ctx['bad_in_a_row']} steps in a row (epoch "
                    f"{ctx['epoch'] + 1}); stopped. The last good checkpoint is in "
                    f"{cfg.out}; try a lower --lr or --precision fp32")
            ctx["after_batch"](progress)
            continue
        ctx["bad_in_a_row"] = 0
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        progress.loss_sum += loss.item()
        progress.steps += 1
        matrix.update(predict_labels(logits.detach()), masks)
        if progress.steps % 10 == 0:
            bar.set_postfix(loss=f"{progress.loss_sum / progress.steps:.4f}",
                            miou=f"{matrix.compute().miou:.3f}")
        ctx["after_batch"](progress)
    return progress.loss_sum / max(progress.steps, 1), matrix.compute().miou


def _check_run_dir(run_dir: Path, resume: bool) -> Path:
    """The run's ``last.safetensors``; refuses to overwrite a run or to resume a missing one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file; expected a folder for the run")
    last_path = run_dir / "last.safetensors"
    previous = run_dir / PREVIOUS_NAME
    if not resume and (last_path.exists() or previous.exists()):
        raise ValueError(f"{run_dir} already holds a run ({last_path.name}); pass --resume to "
                         f"continue it or choose another --out")
    if resume and not (last_path.exists() or previous.exists()):
        raise ValueError(f"cannot resume: {last_path} does not exist")
    return last_path


def _build_model(config: RunConfig, data: Datasets, device: torch.device) -> UNet:
    """The configured U-Net: one output channel for bce_dice, one per class otherwise."""
    cfg, num_classes = config.train, data.spec.num_classes
    if cfg.loss == "bce_dice" and num_classes != 2:
        raise ValueError(f"bce_dice is for binary tasks (2 classes); this dataset has "
                         f"{num_classes}: {', '.join(data.spec.class_names)}")
    out_channels = 1 if cfg.loss == "bce_dice" else num_classes
    m = config.model
    model = UNet(data.in_channels, out_channels, m.base, m.depth, m.upsample, m.norm,
                 m.dropout).to(device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def _readable_checkpoint(last_path: Path):
    """The run's last checkpoint, or the one before it when the last is missing or unreadable
    (a kill between the two renames of `_save_last`, a truncated copy, a corrupt disk)."""
    previous = last_path.with_name(PREVIOUS_NAME)
    try:
        return load_checkpoint(last_path)
    except (FileNotFoundError, ValueError) as error:
        if not previous.exists():
            raise
        print(f"{last_path} is unusable ({error}); resuming from {previous.name}")
        checkpoint = load_checkpoint(previous)
        if last_path.exists():        # keep it for inspection, out of the rotation
            os.replace(last_path, last_path.with_name(last_path.name + ".corrupt"))
        return checkpoint


def _save_last(last_path: Path, model, metadata: dict, optimizer,
               progress: _EpochProgress | None = None) -> None:
    """Write the resume checkpoint, keeping the one before it as ``previous.safetensors``:
    whatever happens during the write, one good checkpoint stays on disk."""
    staged = last_path.with_name(".staged-" + last_path.name)
    extra = {"rng.torch": torch.get_rng_state()}
    if progress is not None:
        extra["train.matrix"] = progress.matrix.matrix
    save_checkpoint(staged, model, metadata, optimizer, extra)
    if last_path.exists():
        os.replace(last_path, last_path.with_name(PREVIOUS_NAME))
    os.replace(staged, last_path)


def _restore(last_path: Path, model, optimizer, scheduler, scaler):
    """Load a run's last checkpoint into the training objects; returns its training state and
    the checkpoint."""
    checkpoint = _readable_checkpoint(last_path)
    unwrap(model).load_state_dict(checkpoint.section("model"))
    restore_optimizer(checkpoint, optimizer)
    state = checkpoint.metadata["training"]
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(checkpoint.tensors["rng.torch"])
    return state, checkpoint


def _epoch_row(epoch: int, train_loss: float, train_miou: float, val, lr: float,
               seconds: float) -> dict:
    """One line of metrics.jsonl."""
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_miou": train_miou,
            "val_loss": val.loss, "val_miou": val.scores.miou, "val_mdice": val.scores.mdice,
            "val_pixel_accuracy": val.scores.pixel_accuracy,
            "val_mean_bf1": val.mean_boundary_f1,
            "val_iou": val.scores.iou.tolist(), "val_bf1": val.boundary_f1.tolist(),
            "lr": lr, "seconds": round(seconds, 2)}


def _skipped_note(ctx: dict) -> str:
    return f"  ({ctx['skipped']} non-finite steps skipped so far)" if ctx["skipped"] else ""


def fit(config: RunConfig, resume: bool = False) -> FitResult:
    """Train a U-Net as ``config`` says; with ``resume``, continue the run in ``config.train.out``
    from its ``last.safetensors`` (model, optimiser, schedule, scaler, RNG, epoch, history)."""
    tune_malloc()
    return _Run(config, resume).train()


class _Run:
    """One training run: the objects it trains with, and its bookkeeping between epochs."""

    def __init__(self, config: RunConfig, resume: bool) -> None:
        self.run_dir = Path(config.train.out)
        self.last_path = _check_run_dir(self.run_dir, resume)
        self.world, self.device = distributed.setup(config.train.device)
        if not self.world.is_main:            # one progress bar and one log, from rank 0
            config = replace(config, train=replace(config.train, progress=False))
        self.config, cfg = config, config.train
        torch.manual_seed(cfg.seed)            # the same initial weights on every rank
        self.precision = pick_precision(cfg.precision, self.device)
        self.data = build_datasets(config.data)
        if self.data.skipped:
            self.say(_skipped_pairs(self.data.skipped))
        self.model = self._model()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.steps_per_epoch = len(_loaders(self.data, config, 0, self.device, self.world)[0])
        total = cfg.epochs * self.steps_per_epoch
        warmup = min(total - 1, max(1, round(cfg.warmup_epochs * self.steps_per_epoch)))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup, cfg.schedule))
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.precision == "fp16")
        class_weights = _class_weights(config, self.data)     # checked before any write
        self.progress = self._new_progress()
        self.state = self._restore() if resume else self._start()
        self.ctx = {"config": config, "device": self.device, "precision": self.precision,
                    "num_classes": self.data.spec.num_classes,
                    "ignore_index": self.data.spec.ignore_index,
                    "class_weights": (None if class_weights is None
                                      else class_weights.to(self.device)),
                    "skipped": 0, "bad_in_a_row": 0, "world": self.world,
                    "after_batch": self._after_batch}
        self.stop = _StopSignals()

    # --- set-up ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.world.is_main:
            print(message, flush=True)

    def _model(self) -> nn.Module:
        model = _build_model(self.config, self.data, self.device)
        if not self.world.distributed:
            return model
        if self.config.train.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _new_progress(self) -> _EpochProgress:
        spec = self.data.spec
        return _EpochProgress(ConfusionMatrix(spec.num_classes, spec.ignore_index, self.device))

    def _start(self) -> dict:
        if self.world.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", self.config.to_yaml())
        return {"epoch": 0, "best_miou": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": []}

    def _restore(self) -> dict:
        state, checkpoint = _restore(self.last_path, self.model, self.optimizer,
                                     self.scheduler, self.scaler)
        if state.get("in_epoch"):
            self.progress = _EpochProgress(self.progress.matrix, **state["in_epoch"])
            self.progress.matrix.matrix = checkpoint.tensors["train.matrix"].to(self.device)
        self.say(f"resuming {self.run_dir} at epoch {state['epoch'] + 1}, batch "
                 f"{self.progress.batches + 1}")
        if self.world.is_main:                # it may run longer now: record what it runs
            atomic_write_text(self.run_dir / "config.yaml", self.config.to_yaml())
        return state

    # --- the loop -------------------------------------------------------------------------

    def train(self) -> FitResult:
        cfg = self.config.train
        writer = (_open_tensorboard(self.run_dir) if cfg.tensorboard and self.world.is_main
                  else None)
        with self.stop:
            for epoch in range(self.state["epoch"], cfg.epochs):
                row = self._epoch(epoch)
                if writer is not None:
                    _log_tensorboard(writer, row, self.data.spec.class_names)
                if cfg.patience and self.state["bad_epochs"] >= cfg.patience:
                    self.say(f"early stop: no better validation mIoU for {cfg.patience} epochs")
                    break
                # Every rank must make the same decision, or one would wait for the others
                # in the next epoch's first collective forever.
                if self._stopping() and epoch + 1 < cfg.epochs:
                    raise self.stop.interrupted(self.run_dir, f"epoch {epoch + 1}")
        if writer is not None:
            writer.close()
        if self.data.skipped:
            self.say(_skipped_pairs(self.data.skipped))
        distributed.shutdown(self.world)
        state = self.state
        return FitResult(self.run_dir, state["history"], state["best_miou"], state["best_epoch"])

    def _epoch(self, epoch: int) -> dict:
        """Train the (rest of the) epoch, validate, checkpoint and log; returns its row."""
        cfg, data, start = self.config.train, self.data, time.perf_counter()
        self.ctx["epoch"] = epoch
        train_loader, val_loader = _loaders(data, self.config, epoch, self.device, self.world,
                                            self.progress.batches)
        train_loss, train_miou = _train_one_epoch(self.model, train_loader, self.optimizer,
                                                  self.scheduler, self.scaler, self.ctx,
                                                  self.progress)
        if self.world.distributed:
            train_loss, train_miou = _summed_over_ranks(self.progress, self.world, self.device)
        self.progress = self._new_progress()
        # The plain module: DDP's forward would sync buffers, and ranks' shards may differ in
        # length. evaluate() sums the counts over ranks once, after its loop.
        val = evaluate(unwrap(self.model), val_loader, data.spec.num_classes,
                       data.spec.ignore_index, self.device, self.precision, cfg.loss,
                       cfg.channels_last, cfg.progress)
        row = _epoch_row(epoch, train_loss, train_miou, val,
                         self.optimizer.param_groups[0]["lr"], time.perf_counter() - start)
        improved = self._record(epoch, row, val.scores.miou)
        self.say(f"epoch {epoch + 1}/{cfg.epochs}  train loss {train_loss:.4f}  "
                 f"val loss {val.loss:.4f}  val mIoU {val.scores.miou:.4f}  "
                 f"pixel acc {val.scores.pixel_accuracy:.4f}  ({row['seconds']:.0f} s)"
                 + ("  *best*" if improved else "") + _skipped_note(self.ctx))
        return row

    def _record(self, epoch: int, row: dict, miou: float) -> bool:
        """Update the run's state after an epoch and (rank 0) write checkpoints and logs;
        returns whether the epoch is the best so far."""
        state = self.state
        state["history"].append(row)
        improved = miou > state["best_miou"]
        if improved:
            state.update(best_miou=miou, best_epoch=epoch + 1, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state.update(epoch=epoch + 1, in_epoch=None, scheduler=self.scheduler.state_dict(),
                     scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None)
        if self.world.is_main:
            # The resume checkpoint goes last: it is the commit point. Killed before it, the
            # epoch is redone and best and the logs are rewritten; killed after, both are done.
            metadata = _metadata(self.config, self.data, self.precision, state)
            if improved:
                save_checkpoint(self.run_dir / "best.safetensors", self.model, metadata)
            _write_logs(self.run_dir, state["history"], self.data.spec.class_names)
            _save_last(self.last_path, self.model, metadata, self.optimizer)
        return improved

    # --- within an epoch ------------------------------------------------------------------

    def _after_batch(self, progress: _EpochProgress) -> None:
        """Checkpoint every ``checkpoint_every`` batches, and stop after a signal."""
        unfinished = progress.batches < self.steps_per_epoch
        every = self.config.train.checkpoint_every
        stopping = self._stopping()
        if unfinished and (stopping or (every and progress.batches % every == 0)):
            self._checkpoint_mid_epoch(progress)
        if stopping and unfinished:
            raise self.stop.interrupted(self.run_dir, f"epoch {self.ctx['epoch'] + 1}, batch "
                                                      f"{progress.batches}")

    def _stopping(self) -> bool:
        """Whether a signal asked the run to stop, agreed over all ranks: torchrun signals
        every rank, but each may see it at a different step."""
        stopping = distributed.any_rank(self.stop.signal is not None, self.world, self.device)
        if stopping and self.stop.signal is None:
            self.stop.signal = signal.SIGTERM
        return stopping

    def _checkpoint_mid_epoch(self, progress: _EpochProgress) -> None:
        self.state.update(in_epoch=progress.to_json(), scheduler=self.scheduler.state_dict(),
                          scaler=(self.scaler.state_dict() if self.scaler.is_enabled()
                                  else None))
        if self.world.is_main:
            _save_last(self.last_path, self.model,
                       _metadata(self.config, self.data, self.precision, self.state),
                       self.optimizer, progress)


def _skipped_pairs(skipped: list[tuple[str, str]]) -> str:
    lines = [f"--skip-bad: left out {len(skipped)} bad pair(s):"]
    lines += [f"  {path}: {why}" for path, why in skipped]
    return "\n".join(lines)


def _summed_over_ranks(progress: _EpochProgress, world: World,
                       device: torch.device) -> tuple[float, float]:
    """The epoch's training loss and mIoU over all ranks' batches."""
    sums = distributed.all_sum(torch.tensor([progress.loss_sum, progress.steps],
                                            dtype=torch.float64, device=device), world)
    matrix = distributed.all_sum(progress.matrix.matrix.clone(), world)
    return (sums[0] / sums[1].clamp_min(1)).item(), scores_from_matrix(matrix).miou
