"""Training: `fit` runs epochs of optimiser steps, validates after each and keeps checkpoints.

Read top to bottom: `fit`, then `Trainer`, whose set-up builds the data, model, loss and
optimiser, and whose methods follow one epoch: `run` -> `_epoch` -> `_train_batches` ->
`_step`, then validation and `_record`. What the run folder holds, and how a run is resumed
from it, is `unetseg.rundir`'s business; the optimiser and schedule are `unetseg.optim`'s.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import distributed
from .architectures import build_model
from .budget import check_training_fits
from .checkpoint import restore_optimizer, unwrap
from .config import RunConfig, check_resume_changes
from .data.sources import Datasets, build_datasets
from .evaluation import evaluate, validation_loader
from .fastpath import Accelerated
from .losses import class_weights, make_loss
from .metrics import ConfusionMatrix, labels_from_logits, scores_from_matrix
from .optim import follow_schedule, make_optimizer
from .plan import TrainingPlan
from .precision import PrecisionChoice, decide_precision
from .progress import format_duration, in_terminal, progress
from .rundir import EpochTally, RunDir, RunState, epoch_row
from .runtime import Runtime
from .signals import StopSignals, TrainingInterrupted

__all__ = ["FitResult", "TrainingDiverged", "TrainingInterrupted", "Trainer", "fit"]

# A first epoch of many batches gets a resume checkpoint after this many, so a run killed
# early (out of memory, pre-empted) loses minutes, not the whole epoch.
FIRST_CHECKPOINT_BATCHES = 100
# The step's loss and non-finite counts stay on the device and are read back every this many
# batches (and at the end of an epoch): reading a value waits for the device to finish, which
# on a GPU stalls it between every two steps of a small U-Net (nanoGPT's pattern).
READ_EVERY = 10


class TrainingDiverged(RuntimeError):
    """The loss was not finite for too many steps in a row; the last good checkpoint stays."""


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict]
    best_miou: float
    best_epoch: int


def fit(config: RunConfig, resume: bool = False, overwrite: bool = False) -> FitResult:
    """Train a U-Net as ``config`` says; with ``resume``, continue the run in ``config.train.out``
    from its ``last.safetensors`` (model, optimiser, schedule, scaler, RNG, epoch, history).
    A new run refuses an ``out`` folder that holds files unless ``overwrite``.

    Changes no process-wide setting: the CLI tunes the allocator (`runtime.tune_malloc`).
    """
    return Trainer(config, resume, overwrite).run()


class Trainer:
    """One training run: the objects it trains with, and its bookkeeping between epochs."""

    def __init__(self, config: RunConfig, resume: bool, overwrite: bool = False) -> None:
        self.world, device = distributed.setup(config.train.device)
        self.run_dir = RunDir(config.train.out, self.world.is_main)
        starts_over = self.run_dir.check(resume, overwrite)
        if resume:                             # what may change, before any data is read
            check_resume_changes(RunConfig.from_yaml(self.run_dir.path / "config.yaml"),
                                 config, str(self.run_dir.path / "config.yaml"))
        cfg = config.train
        self.data = build_datasets(config.data)
        if self.data.skipped:
            self.say(_skipped_pairs(self.data.skipped))
        for notice in self.data.notices:       # what the data check found, before any epoch
            self.say(notice)
        self.run_dir.refuse_inside(_data_folders(self.data))
        if starts_over:
            self.run_dir.clear()
        self.config = config = _with_data_shapes(config, self.data)
        self.class_weights = class_weights(cfg.class_weights, self.data.spec.num_classes,
                                           self.data.class_pixels)
        self.loss_fn = make_loss(cfg.loss, self.data.spec.ignore_index, cfg.dice_weight,
                                 self.class_weights).to(device)
        warning = check_training_fits(config, self.world.size, Runtime(device))
        if warning:                            # refused (ValueError) if it cannot fit at all
            self.say(warning)
        self.precision = self._choose_precision(device, resume)
        self.runtime = Runtime(device, self.precision.precision, cfg.channels_last)
        torch.manual_seed(cfg.seed)            # the same initial weights on every rank
        self.model = self._model(pretrained=not resume)
        self.steps_per_epoch = len(self._loaders(0)[0])
        self.plan = TrainingPlan.from_config(cfg, self.steps_per_epoch)
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, self.plan)
        self.scaler = torch.amp.GradScaler(device.type,
                                           enabled=self.runtime.precision == "fp16")
        self.tally = self._new_tally()
        self.state = self._restore() if resume else RunState()
        self.plan.estimate(self.steps_taken, self.state.seconds)     # a resumed timed run
        follow_schedule(self.scheduler)
        # A resumed run may run longer now; what the data check found and the precision chosen
        # are recorded beside the settings.
        self.run_dir.write_config(config.to_yaml({"data_check": self.data.summary,
                                                  "runtime": self.precision.to_dict()}))
        self.epoch = self.state.epoch
        self.epoch_start = time.perf_counter()
        self.unlogged_seconds = 0.0            # epochs trained since the last metrics row
        self.pending = StepCounts(device)
        self.skipped = 0                                  # non-finite steps so far
        self.read_every = min(READ_EVERY, cfg.max_nonfinite)
        self.stop = StopSignals(announce=self.world.is_main)

    # --- set-up ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.world.is_main:                 # one log from rank 0
            print(message, flush=True)

    def _choose_precision(self, device: torch.device, resume: bool) -> PrecisionChoice:
        """`unetseg.precision.decide_precision` at the run's shapes, agreed over ranks (fp32
        if any rank says so)."""
        config = self.config
        choice = decide_precision(config.train.precision, device, config.model,
                                  config.data.batch_size // self.world.size, config.data.size,
                                  recorded=self.run_dir.record("runtime") if resume else None)
        if distributed.any_rank(choice.precision == "fp32", self.world, device):
            choice = PrecisionChoice("fp32", choice.seconds, choice.reason)
        self.say(choice.describe())
        return choice

    @property
    def progress_bars(self) -> bool:
        """Live bars in a terminal only: a log gets the one line per epoch instead."""
        return self.config.train.progress and self.world.is_main and in_terminal()

    def _model(self, pretrained: bool) -> nn.Module:
        """The model (`unetseg.architectures`) on its fast path (`unetseg.fastpath`: device,
        layout, precision), wrapped for DDP when there are several processes. ``pretrained``:
        an smp encoder starts from its configured weights (a resumed run loads its own)."""
        model = build_model(self.config.model, pretrained)
        if self.world.distributed and self.config.train.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        fast = Accelerated(model, self.runtime, self.config.train.compile, self.precision)
        if not self.world.distributed:
            return fast
        device = self.runtime.device
        return nn.parallel.DistributedDataParallel(
            fast, device_ids=[device.index] if device.type == "cuda" else None)

    def _new_tally(self) -> EpochTally:
        spec = self.data.spec
        return EpochTally(ConfusionMatrix(spec.num_classes, spec.ignore_index,
                                          self.runtime.device))

    def _restore(self) -> RunState:
        checkpoint = self.run_dir.load_resume()
        unwrap(self.model).load_state_dict(checkpoint.section("model"))
        restore_optimizer(checkpoint, self.optimizer)
        state = RunState.from_json(checkpoint.metadata["training"])
        self.scheduler.load_state_dict(state.scheduler)
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)
        torch.set_rng_state(checkpoint.tensors["rng.torch"])
        if state.in_epoch:
            self.tally = EpochTally(self.tally.matrix, **state.in_epoch)
            self.tally.matrix.matrix = checkpoint.tensors["train.matrix"].to(self.runtime.device)
        self.say(f"resuming {self.run_dir.path} at epoch {state.epoch + 1}, batch "
                 f"{self.tally.batches + 1}")
        return state

    def _loaders(self, epoch: int, skip_batches: int = 0) -> tuple[DataLoader, DataLoader]:
        """The epoch's loaders: training without its first ``skip_batches`` batches, and this
        rank's shard of the validation set (every image exactly once over the ranks)."""
        cfg, data, world = self.config.data, self.data, self.world
        if cfg.batch_size % world.size:
            raise ValueError(f"--batch-size {cfg.batch_size} is the global batch and must "
                             f"divide among {world.size} processes")
        per_rank = cfg.batch_size // world.size
        data.train.set_epoch(epoch)
        pin = self.runtime.device.type == "cuda"
        seed = self.config.train.seed * 100_003 + epoch
        # Their own generators: a DataLoader otherwise draws its worker seed from the global
        # RNG, which would shift every later dropout mask after a mid-epoch resume.
        train = DataLoader(data.train, batch_size=per_rank, num_workers=cfg.workers,
                           sampler=distributed.EpochOrder(len(data.train), seed, per_rank,
                                                          world, skip_batches),
                           pin_memory=pin, generator=torch.Generator().manual_seed(seed),
                           drop_last=len(data.train) > cfg.batch_size)
        val_set = (Subset(data.val, list(distributed.shard(len(data.val), world)))
                   if world.distributed else data.val)
        val = validation_loader(val_set, cfg.batch_size, cfg.workers, pin)
        return train, val

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> FitResult:
        cfg = self.config.train
        if cfg.tensorboard:
            self.run_dir.open_tensorboard()
        if self.plan.finished(self.steps_taken):
            self.say(f"nothing to train: the run has taken the {self.steps_taken} steps it "
                     f"plans; a larger --epochs, --max-steps or --time-budget continues it")
        try:
            with self.stop:
                while not self.plan.finished(self.steps_taken):
                    self._epoch()
                    self.epoch += 1
                    if cfg.patience and self.state.bad_epochs >= cfg.patience:
                        self.say(f"early stop: no better validation mIoU in {cfg.patience} "
                                 f"validations")
                        break
                    # Every rank must make the same decision, or one would wait for the
                    # others in the next epoch's first collective forever.
                    if self._stopping() and not self.plan.finished(self.steps_taken):
                        raise self.stop.interrupted(self.run_dir.path, f"epoch {self.epoch}")
        finally:
            self.run_dir.close()
        if self.data.skipped:
            self.say(_skipped_pairs(self.data.skipped))
        # DDP's reducer keeps the process group alive; dropped only at interpreter exit, gloo's
        # worker threads can then be torn down mid-finalisation and abort the process. Release
        # the wrapper first, so the group is destroyed here, while everything is alive.
        self.model = unwrap(self.model)
        distributed.shutdown(self.world)
        state = self.state
        return FitResult(self.run_dir.path, state.history, state.best_miou, state.best_epoch)

    @property
    def steps_taken(self) -> int:
        """Optimiser steps so far (skipped non-finite ones included): the schedule's count,
        which resume restores."""
        return self.scheduler.last_epoch

    def _epoch(self) -> None:
        """Train the (rest of the) epoch; every ``--val-every`` epochs and after the last,
        validate, checkpoint and log."""
        self.epoch_start = time.perf_counter()
        train_loader, val_loader = self._loaders(self.epoch, self.tally.batches)
        self._train_batches(train_loader)
        self._replan()                         # also for epochs shorter than a read interval
        train_loss, train_miou = self._training_scores()
        self.tally = self._new_tally()
        last = self.plan.finished(self.steps_taken)
        heading = f"epoch {self.epoch + 1}/{self.plan.epochs}  train loss {train_loss:.4f}"
        if not last and (self.epoch + 1) % self.config.train.val_every:
            seconds = self._end_epoch_clock()
            self.state.epoch = self.epoch + 1
            self.say(f"{heading}  ({self._time_note(seconds)})")
            return
        # The plain module: DDP's forward would sync buffers, and ranks' shards may differ in
        # length. evaluate() sums the counts over ranks once, after its loop.
        val = evaluate(unwrap(self.model), val_loader, self.data.spec.num_classes,
                       self.loss_fn, self.runtime, self.data.spec.ignore_index,
                       progress=self.progress_bars)
        seconds = self._end_epoch_clock()
        row = epoch_row(self.epoch, self.steps_taken, train_loss, train_miou, val,
                        self.optimizer.param_groups[0]["lr"], self.unlogged_seconds)
        self.unlogged_seconds = 0.0
        improved = self._record(row, val.scores.miou)
        skipped = f"  ({self.skipped} non-finite steps skipped so far)" if self.skipped else ""
        self.say(f"{heading}  val loss {val.loss:.4f}  val mIoU {val.scores.miou:.4f}  "
                 f"pixel acc {val.scores.pixel_accuracy:.4f}  ({self._time_note(seconds)})"
                 + ("  *best*" if improved else "") + skipped)

    def _end_epoch_clock(self) -> float:
        """Add the epoch's wall time to the run's (the time budget's clock); returns it."""
        seconds = time.perf_counter() - self.epoch_start
        self.state.seconds += seconds
        self.unlogged_seconds += seconds
        return seconds

    def _time_note(self, seconds: float) -> str:
        """``8 s, about 3 min left`` for an epoch line: at the pace so far, to the plan's end."""
        left = self.plan.seconds_left(self.steps_taken, self.state.seconds)
        return f"{seconds:.0f} s" + (f", about {format_duration(left)} left" if left else "")

    def _replan(self) -> None:
        """Re-plan a timed run from its pace; every rank takes the mean of their clocks, so
        all stop at the same step."""
        if not self.plan.timed:
            return
        seconds = torch.tensor([self.state.seconds + time.perf_counter() - self.epoch_start],
                               dtype=torch.float64, device=self.runtime.device)
        seconds = distributed.all_sum(seconds, self.world).item() / self.world.size
        self.plan.estimate(self.steps_taken, seconds)
        follow_schedule(self.scheduler)

    def _train_batches(self, loader: DataLoader) -> None:
        """The rest of the epoch's batches; after each, maybe checkpoint or stop."""
        self.model.train()
        tally = self.tally
        bar = progress(loader, f"epoch {self.epoch + 1}/{self.plan.epochs}",
                       self.progress_bars, total=tally.batches + len(loader), lines=False,
                       leave=False, initial=tally.batches)
        for images, masks in bar:
            tally.batches += 1
            self._step(images, masks.to(self.runtime.device, non_blocking=True))
            if tally.batches % self.read_every == 0:
                self._read_counts()
                self._replan()
                if tally.steps and hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{tally.loss_sum / tally.steps:.4f}",
                                    miou=f"{tally.matrix.compute().miou:.3f}")
            self._after_batch()
            if self.plan.finished(self.steps_taken):     # --max-steps or the time budget
                break
        self._read_counts()

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        """One optimiser step. A step whose gradients are not finite is skipped on the device
        (the fused AdamW's ``found_inf``, or the fp16 GradScaler's), and counted there: nothing
        here waits for the device."""
        logits = self.model(images)            # on the device, in its layout and precision
        loss = self.loss_fn(logits, masks)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)   # a no-op unless fp16
        # After DDP's all-reduce the gradients are the same on every rank, and so is this flag:
        # every rank skips the same steps without a collective of its own.
        finite = torch.isfinite(_gradient_norm(self.model, self.config.train.grad_clip))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)   # skips a non-finite step itself
        elif self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
        elif finite.item():                    # an unfused optimiser must be told on the host
            self.optimizer.step()
        self.scaler.update()
        self.scheduler.step()                  # on time, even when the update was skipped
        self.pending.add(loss.detach(), finite)
        # The masks were checked when the data was built, and argmax lies in range.
        self.tally.matrix.update(labels_from_logits(logits.detach()), masks, check=False)

    def _read_counts(self) -> None:
        """Move the device's step counts into the tally (one read); stop a diverged run."""
        loss_sum, steps, skipped, in_a_row = self.pending.read()
        self.tally.loss_sum += loss_sum
        self.tally.steps += steps
        self.skipped += skipped
        cfg = self.config.train
        if in_a_row >= cfg.max_nonfinite:
            raise TrainingDiverged(
                f"the loss was not finite for {in_a_row} steps in a row (epoch "
                f"{self.epoch + 1}); stopped. The last good checkpoint is in {cfg.out}; "
                f"try a lower --lr or --precision fp32")

    def _training_scores(self) -> tuple[float, float]:
        """The epoch's training loss and mIoU over all ranks' batches."""
        tally, world, device = self.tally, self.world, self.runtime.device
        sums = distributed.all_sum(torch.tensor([tally.loss_sum, tally.steps],
                                                dtype=torch.float64, device=device), world)
        matrix = distributed.all_sum(tally.matrix.matrix.clone(), world)
        return (sums[0] / sums[1].clamp_min(1)).item(), scores_from_matrix(matrix).miou

    def _record(self, row: dict, miou: float) -> bool:
        """Update the run's state after an epoch and write best, the logs and the resume
        checkpoint; returns whether the epoch is the best so far."""
        state = self.state
        state.history.append(row)
        improved = miou > state.best_miou
        if improved:
            state.best_miou, state.best_epoch, state.bad_epochs = miou, self.epoch + 1, 0
        else:
            state.bad_epochs += 1
        state.epoch, state.in_epoch = self.epoch + 1, None
        self._save_schedule()
        # The resume checkpoint goes last: it is the commit point. Killed before it, the epoch
        # is redone and best and the logs are rewritten; killed after, both are done.
        if improved:
            self.run_dir.save_best(self.model, self._metadata())
        self.run_dir.write_logs(state.history, self.data.spec.class_names)
        self.run_dir.log_tensorboard(row, self.data.spec.class_names)
        self.run_dir.save_resume(self.model, self._metadata(), self.optimizer,
                                 {"rng.torch": torch.get_rng_state()})
        return improved

    # --- within an epoch ------------------------------------------------------------------

    def _after_batch(self) -> None:
        """Checkpoint every ``checkpoint_every`` batches, early in a long first epoch, and
        after a signal (then stop)."""
        batches = self.tally.batches
        unfinished = batches < self.steps_per_epoch
        every = self.config.train.checkpoint_every
        # Across processes, agreeing takes a collective: only every few batches.
        stopping = ((not self.world.distributed or batches % self.read_every == 0)
                    and self._stopping())
        early = (self.epoch == 0 and batches == FIRST_CHECKPOINT_BATCHES
                 and self.steps_per_epoch >= 2 * FIRST_CHECKPOINT_BATCHES)
        if unfinished and (stopping or early or (every and batches % every == 0)):
            self._read_counts()
            self.state.in_epoch = self.tally.to_json()
            self._save_schedule()
            self.run_dir.save_resume(self.model, self._metadata(), self.optimizer,
                                     {"rng.torch": torch.get_rng_state(),
                                      "train.matrix": self.tally.matrix.matrix})
        if stopping and unfinished:
            raise self.stop.interrupted(self.run_dir.path,
                                        f"epoch {self.epoch + 1}, batch {batches}")

    def _stopping(self) -> bool:
        """Whether a signal asked the run to stop, agreed over all ranks: torchrun signals
        every rank, but each may see it at a different step."""
        stopping = distributed.any_rank(self.stop.signal is not None, self.world,
                                        self.runtime.device)
        if stopping and self.stop.signal is None:
            self.stop.signal = signal.SIGTERM
        return stopping

    def _save_schedule(self) -> None:
        self.state.scheduler = self.scheduler.state_dict()
        self.state.scaler = self.scaler.state_dict() if self.scaler.is_enabled() else None

    def _metadata(self) -> dict:
        """What a checkpoint records beside the weights: enough to predict, score and resume."""
        data, cfg = self.data, self.config.train
        return {"class_names": list(data.spec.class_names),
                "colours": [list(c) for c in data.spec.colours],
                "ignore_index": data.spec.ignore_index,
                "normalisation": {"mean": list(data.mean), "std": list(data.std)},
                "binary": cfg.loss == "bce_dice",
                "class_weights": (None if self.class_weights is None
                                  else self.class_weights.tolist()),
                "precision": self.runtime.precision,
                "channels_last": cfg.channels_last,
                "run_config": self.config.to_dict(),
                "data_check": self.data.summary,
                "training": self.state.to_json()}


class StepCounts:
    """The training steps' sums, kept on the device between reads: the loss over the steps
    taken, the steps taken, the steps skipped, and how many were skipped in a row."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)
        self.in_a_row = torch.zeros(1, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, finite: torch.Tensor) -> None:
        counted = finite & torch.isfinite(loss)
        self.sums += torch.stack([torch.where(counted, loss, 0.0).double(), finite.double(),
                                  (~finite).double()])
        self.in_a_row = (self.in_a_row + 1) * (~finite)

    def read(self) -> tuple[float, int, int, int]:
        """``(loss sum, steps, skipped)`` since the last read, and the current run of skips."""
        loss_sum, steps, skipped, in_a_row = torch.cat([self.sums, self.in_a_row]).tolist()
        self.sums.zero_()
        return loss_sum, int(steps), int(skipped), int(in_a_row)


def _gradient_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """The gradients' total norm, clipped to ``max_norm`` when that is above 0."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters()
                                          if p.grad is not None])


def _with_data_shapes(config: RunConfig, data: Datasets) -> RunConfig:
    """The config with the model's input channels and outputs set from the data: one output
    for bce_dice (a binary task), one per class otherwise."""
    num_classes, loss = data.spec.num_classes, config.train.loss
    if loss == "bce_dice" and num_classes != 2:
        raise ValueError(f"--loss bce_dice is for binary tasks (2 classes); this dataset has "
                         f"{num_classes}: {', '.join(data.spec.class_names)}")
    outputs = 1 if loss == "bce_dice" else num_classes
    return replace(config, model=replace(config.model, in_channels=data.in_channels,
                                         num_classes=outputs))


def _data_folders(data: Datasets) -> set[Path]:
    """The folders the image and mask files come from (none for built-in data)."""
    pairs = [*getattr(data.train, "pairs", []), *getattr(data.val, "pairs", [])]
    return {path.parent for pair in pairs for path in pair}


def _skipped_pairs(skipped: list[tuple[str, str]]) -> str:
    lines = [f"--skip-bad: left out {len(skipped)} bad pair(s):"]
    # The reason usually names the file already; don't say it twice.
    lines += [f"  {why}" if why.startswith(path) else f"  {path}: {why}" for path, why in skipped]
    return "\n".join(lines)
