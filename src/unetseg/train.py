"""Training: `fit` runs optimiser steps epoch after epoch, validates and keeps checkpoints.

Read `fit` top to bottom: it sets the run up in the order its side effects must happen (the
folder is checked, the data read and checked, the folder cleared, the parts built, a resumed
run restored, config.yaml written), then runs one loop. Each batch is one `train_step`; every
`READ_EVERY` batches the device's counts are read once; at the end of an epoch the run is
validated, logged and checkpointed. How far the run is lives in one record,
`unetseg.rundir.Progress` (steps, epochs, the batch within the epoch, seconds, skipped steps),
which every resume checkpoint saves. The health monitor (`unetseg.health`) reads what the loop
already has, the step counts at each read and the history after each validation, and says what
went wrong while the run goes on.

`training_parts` and `train_step` are the pieces the benchmarks and the studies train with,
so a figure measured there is the step ``unetseg train`` takes. What the run folder holds is
`unetseg.rundir`'s business; how long a run trains, `unetseg.run_length`'s; the optimiser and its
schedule, `unetseg.optim`'s; which precision, `unetseg.precision`'s.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import distributed
from .architectures import build_model
from .calibration import fit_sample, sample_logits
from .checkpoint import add_metadata, load_model, restore_optimizer, unwrap
from .config import (
    RunConfig,
    TrainConfig,
    check_resume_changes,
    one_class_message,
    with_absolute_paths,
)
from .data.build import Datasets, build_datasets
from .evaluation import evaluate, validation_loader
from .health import (
    COLLAPSE_VALIDATIONS,
    DataFacts,
    HealthEvent,
    collapse_streak,
    nonfinite_event,
    validation_events,
)
from .interrupts import StopSignals, TrainingInterrupted
from .losses import class_weights, make_loss
from .memory import check_training_fits
from .metrics import ConfusionMatrix, labels_from_logits, scores_from_matrix
from .optim import follow_schedule, make_optimizer
from .precision import PrecisionChoice, decide_precision
from .progress import format_duration, in_terminal, progress
from .run_length import RunLength
from .rundir import (
    CONFIG_FILE,
    EpochTally,
    Progress,
    RunDir,
    RunState,
    epoch_row,
    load_run_config,
)
from .runtime import Accelerated, Runtime

__all__ = ["FitResult", "TrainingDiverged", "TrainingInterrupted", "TrainingParts", "fit",
           "training_parts", "train_step", "with_data_shapes"]

log = logging.getLogger(__name__)

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


def fit(config: RunConfig, resume: bool = False, overwrite: bool = False,
        plan: dict | None = None) -> FitResult:
    """Train a U-Net as ``config`` says; with ``resume``, continue the run in ``config.train.out``
    from its ``last.safetensors`` (model, optimiser, schedule, scaler, RNG, progress, history),
    refusing settings a resumed run may not change (`unetseg.config.check_resume_changes`).
    A new run refuses an ``out`` folder that holds files unless ``overwrite``. ``plan`` is the
    record of the plan the settings came from (`unetseg.planner.Plan.record`), kept in
    config.yaml and every checkpoint; a resumed run keeps its own and never plans again.

    Logs through `logging` (the ``unetseg`` logger; the CLI prints it, rank 0 only) and
    changes no process-wide setting: the CLI tunes the allocator (`allocator.tune_malloc`).
    """
    # --- set-up, in the order its side effects must happen ---------------------------------
    world, device = distributed.setup(config.train.device)
    run_dir = RunDir(config.train.out, world.is_main)
    run_dir.lock()                             # one run at a time; `close` below lets it go
    try:
        # Paths recorded absolute: the run resumes, and is scored, from any directory.
        config = replace(config, data=with_absolute_paths(config.data))
        starts_over = run_dir.check(resume, overwrite)
        if resume:                             # what may change, before any data is read
            check_resume_changes(load_run_config(run_dir.path), config,
                                 str(run_dir.path / CONFIG_FILE))
        data = build_datasets(config.data)
        if resume:
            _check_data_unchanged(run_dir.record("data_check"), data, config.train.data_changed)
        for notice in [*_skipped_pairs(data.skipped), *data.notices]:
            log.info(notice)                   # what the data check found, before any step
        run_dir.refuse_inside(_data_folders(data))
        if starts_over:
            run_dir.clear()
        config = with_data_shapes(config, data)
        cfg, spec = config.train, data.spec
        parts = training_parts(config, data, world, device,
                               run_dir.record("runtime") if resume else None)
        state = _restore(run_dir, parts, spec) if resume else RunState()
        done = state.progress                  # the one record of how far the run is
        length = parts.length
        length.estimate(done.step, done.seconds)    # a resumed timed run re-plans by its pace
        follow_schedule(parts.scheduler)
        # A resumed run may run longer now; the data check's findings and the precision chosen
        # are recorded beside the settings.
        if resume:
            plan = run_dir.record("plan")
        run_dir.write_config(_records(config, data, parts, plan))
        if cfg.tensorboard:
            run_dir.open_tensorboard()
        if length.finished(done.step):
            log.info(f"nothing to train: the run has taken the {done.step} steps it plans; a "
                     f"larger --epochs, --max-steps or --time-budget continues it")

        # --- the loop --------------------------------------------------------------------
        tally = state.tally or EpochTally(ConfusionMatrix(spec.num_classes, spec.ignore_index,
                                                          device))
        counts = StepCounts(device)
        watch = StepWatch(parts, state, lambda: run_dir.write_config(
            _records(config, data, parts, plan)), cfg)
        facts = DataFacts.of(spec.class_names, spec.ignore_index, data.summary, cfg.lr,
                             cfg.class_weights, config.data.focus_classes)
        clock = Clock(done)
        read_every = min(READ_EVERY, cfg.max_nonfinite)
        show_bars = cfg.progress and world.is_main and in_terminal()
        stop = StopSignals(announce=world.is_main)
        with stop:
            while not length.finished(done.step):
                title = f"epoch {done.epoch + 1}/{length.epochs}"
                batches = _train_loader(config, data, world, parts.runtime, done)
                epoch_batches = done.batch + len(batches)
                bar = progress(batches, title, show_bars, total=epoch_batches,
                               lines=False, leave=False, initial=done.batch)
                parts.model.train()
                for images, masks in bar:
                    masks = masks.to(device, non_blocking=True)
                    step = train_step(parts.model, parts.loss_fn, parts.optimizer, images,
                                      masks, cfg.grad_clip, parts.scaler)
                    parts.scheduler.step()     # on time, even when the update was skipped
                    counts.add(step.loss, step.finite)
                    # The masks were checked when the data was built; labels lie in range.
                    tally.matrix.update(labels_from_logits(step.logits), masks, check=False)
                    done.step, done.batch = done.step + 1, done.batch + 1
                    if done.batch % read_every == 0:
                        _read(counts, tally, done, watch)
                        _replan(length, parts.scheduler, clock, world, device)
                        if tally.steps and hasattr(bar, "set_postfix"):
                            bar.set_postfix(loss=f"{tally.loss_sum / tally.steps:.4f}",
                                            miou=f"{tally.matrix.compute().miou:.3f}")
                    # Agreeing on a signal across processes takes a collective: only every
                    # few batches. A signal at an epoch's last batch waits for its checkpoint.
                    stopping = ((not world.distributed or done.batch % read_every == 0)
                                and _stopping(stop, world, device))
                    unfinished = done.batch < epoch_batches
                    if unfinished and (stopping or _checkpoint_due(done, length, cfg)):
                        _read(counts, tally, done, watch)
                        clock.tick()
                        state.tally = tally
                        run_dir.save_resume(parts.model,
                                            _metadata(config, data, parts, state, plan),
                                            parts.optimizer, _resume_tensors(tally))
                    if stopping and unfinished:
                        raise stop.interrupted(run_dir.path, f"{title}, batch {done.batch}")
                    if length.finished(done.step):     # --max-steps or the time budget
                        break
                _read(counts, tally, done, watch)
                _replan(length, parts.scheduler, clock, world, device)
                train_loss, train_miou = _training_scores(tally, world, device)
                tally = EpochTally(ConfusionMatrix(spec.num_classes, spec.ignore_index, device))
                state.tally, done.epoch, done.batch = None, done.epoch + 1, 0
                heading = f"{title}  train loss {train_loss:.4f}"
                if not length.finished(done.step) and done.epoch % cfg.val_every:
                    log.info(f"{heading}  ({_time_note(clock.lap(), length, done)})")
                    continue
                # The plain module: DDP's forward would sync buffers, and ranks' shards may
                # differ in length. evaluate() sums the counts over ranks once, after its loop.
                val = evaluate(unwrap(parts.model), _val_loader(config, data, world, device),
                               spec.num_classes, parts.loss_fn, parts.runtime,
                               spec.ignore_index, progress=show_bars)
                seconds = clock.lap()
                row = epoch_row(done.epoch - 1, done.step, train_loss, train_miou, val,
                                parts.optimizer.param_groups[0]["lr"], clock.since_logged())
                findings = _judge(row, state, facts)
                improved = state.record(row, val.scores.miou, done.epoch)
                # The resume checkpoint goes last: it is the commit point. Killed before it,
                # the epoch is redone and best and the logs are rewritten.
                if improved:
                    run_dir.save_best(parts.model, _metadata(config, data, parts, state, plan))
                run_dir.write_logs(state.history, spec.class_names)
                run_dir.log_tensorboard(row, spec.class_names)
                run_dir.save_resume(parts.model, _metadata(config, data, parts, state, plan),
                                    parts.optimizer, _resume_tensors(None))
                skipped = (f"  ({done.skipped} non-finite steps skipped so far)"
                           if done.skipped else "")
                log.info(f"{heading}  val loss {val.loss:.4f}  val mIoU {val.scores.miou:.4f}  "
                         f"pixel acc {val.scores.pixel_accuracy:.4f}  "
                         f"({_time_note(seconds, length, done)})"
                         + ("  *best*" if improved else "") + skipped)
                for event in findings:
                    log.warning(event.line())
                if cfg.patience and state.bad_epochs >= cfg.patience:
                    log.info(f"early stop: no better validation mIoU in {cfg.patience} "
                             f"validations")
                    break
                if cfg.patience and _collapsed_for(state.history) >= cfg.patience:
                    log.info(f"early stop: a collapse lasted {cfg.patience} validation(s) "
                             f"after it was reported (see the health lines above)")
                    break
                # Every rank must make the same decision, or one would wait for the others in
                # the next epoch's first collective forever.
                if _stopping(stop, world, device) and not length.finished(done.step):
                    raise stop.interrupted(run_dir.path, f"epoch {done.epoch}")
        run_dir.finish_logs()
        if world.is_main and run_dir.best.exists():
            _calibrate(run_dir, config, data, parts.runtime)
    finally:
        run_dir.close()
    for line in _skipped_pairs(data.skipped):
        log.info(line)
    # DDP's reducer keeps the process group alive; dropped only at interpreter exit, gloo's
    # worker threads can then be torn down mid-finalisation and abort the process. Release the
    # wrapper first, so the group is destroyed here, while everything is alive.
    parts.model = unwrap(parts.model)
    distributed.shutdown(world)
    return FitResult(run_dir.path, state.history, state.best_miou, state.best_epoch)


def _calibrate(run_dir: RunDir, config: RunConfig, data: Datasets, runtime: Runtime) -> None:
    """Fit the temperature of best.safetensors on the whole validation split, as the run
    scored it, and record it in that checkpoint (`unetseg.calibration`); rank 0 only."""
    model = Accelerated(load_model(run_dir.best)[0], runtime).eval()
    loader = validation_loader(data.val, config.data.batch_size, config.data.workers,
                               runtime.device.type == "cuda")
    fitted = fit_sample(sample_logits(model, loader, data.spec.ignore_index),
                        data.spec.num_classes)
    add_metadata(run_dir.best, run_dir.best, {"calibration": fitted.to_dict()})
    log.info(fitted.describe())


# --- the parts a run trains with, and one step --------------------------------------------

@dataclass
class TrainingParts:
    """What a run trains with: the model on its fast path (wrapped for DDP under several
    processes), the loss, AdamW and its schedule over ``length``, the fp16 gradient scaler (off
    otherwise), and how the model runs (device, precision and why, layout)."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    runtime: Runtime
    precision: PrecisionChoice
    length: RunLength
    class_weights: torch.Tensor | None

    def fall_back_to_fp32(self, reason: str) -> None:
        """Run the rest of the training in fp32 (no autocast, no gradient scaler): what the
        health monitor does after non-finite steps in bf16 or fp16."""
        self.runtime = replace(self.runtime, precision="fp32")
        accelerated = (self.model.module
                       if isinstance(self.model, nn.parallel.DistributedDataParallel)
                       else self.model)
        accelerated.runtime = self.runtime
        self.precision = PrecisionChoice("fp32", self.precision.seconds, reason, fell_back=True)
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=False)


def training_parts(config: RunConfig, data: Datasets, world: distributed.World | None = None,
                   device: torch.device | None = None,
                   recorded_runtime: dict | None = None) -> TrainingParts:
    """The parts ``unetseg train`` trains ``config`` (whose model section has the data's
    channels and classes) on ``data`` with: the precision decided at the run's own shapes
    (kept from ``recorded_runtime``, config.yaml's record, when a run resumes), agreed over
    ranks (fp32 if any rank says so), and the initial weights drawn from ``config.train.seed``
    (an smp encoder starts from its configured weights unless the run resumes). By default
    a single process on the CPU."""
    world, device = world or distributed.World(), device or torch.device("cpu")
    cfg, spec = config.train, data.spec
    weights = class_weights(cfg.class_weights, spec.num_classes, data.class_pixels)
    loss_fn = make_loss(cfg.loss, spec.ignore_index, cfg.dice_weight, weights).to(device)
    warning = check_training_fits(config, world.size, Runtime(device))
    if warning:                                # refused (ValueError) if it cannot fit at all
        log.warning(warning)
    choice = decide_precision(cfg.precision, device, config.model,
                              config.data.batch_size // world.size, config.data.size,
                              recorded=recorded_runtime)
    if distributed.any_rank(choice.precision == "fp32", world, device):
        choice = PrecisionChoice("fp32", choice.seconds, choice.reason)
    log.info(choice.describe())
    runtime = Runtime(device, choice.precision, cfg.channels_last)
    torch.manual_seed(cfg.seed)                # the same initial weights on every rank
    model = build_model(config.model, pretrained=recorded_runtime is None)
    if world.distributed and cfg.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = Accelerated(model, runtime, cfg.compile, choice)
    if world.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = len(_train_loader(config, data, world, runtime, Progress()))
    length = RunLength.from_config(cfg, steps_per_epoch)
    optimizer, scheduler = make_optimizer(model, cfg, length)
    scaler = torch.amp.GradScaler(device.type, enabled=choice.precision == "fp16")
    return TrainingParts(model, loss_fn, optimizer, scheduler, scaler, runtime, choice, length,
                         weights)


class Step(NamedTuple):
    """What one `train_step` leaves on the device: the loss, whether the gradients were
    finite (the step was applied), and the logits (for the epoch's training scores)."""

    loss: torch.Tensor
    finite: torch.Tensor
    logits: torch.Tensor


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, masks: torch.Tensor, grad_clip: float = 0.0,
               scaler: torch.amp.GradScaler | None = None) -> Step:
    """One optimiser step: forward, loss, backward, gradients clipped to ``grad_clip`` (0: not
    clipped), update. A step whose gradients are not finite is skipped on the device (the
    fused AdamW's ``found_inf``, or the fp16 ``scaler``'s); an unfused optimiser must be told
    on the host. Nothing else waits for the device."""
    logits = model(images)                 # on the device, in its layout and precision
    loss = loss_fn(logits, masks)
    optimizer.zero_grad(set_to_none=True)
    scaled = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaled else loss).backward()
    if scaled:
        scaler.unscale_(optimizer)
    # After DDP's all-reduce the gradients are the same on every rank, and so is this flag:
    # every rank skips the same steps without a collective of its own.
    finite = torch.isfinite(_gradient_norm(model, grad_clip))
    if scaled:
        scaler.step(optimizer)             # skips a non-finite step itself
        scaler.update()
    elif optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()
        optimizer.step()
    elif finite.item():
        optimizer.step()
    return Step(loss.detach(), finite, logits.detach())


def _gradient_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """The gradients' total norm, clipped to ``max_norm`` when that is above 0."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters()
                                          if p.grad is not None])


# --- what the loop reads and writes ---------------------------------------------------------

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


class StepWatch:
    """The health monitor's eye on the step counts: a streak of non-finite steps is reported
    and carried into the next metrics row; under bf16 or fp16 the run falls back to fp32 and
    ``write_records`` rewrites config.yaml's record of the precision, so a resume keeps it."""

    def __init__(self, parts: TrainingParts, state: RunState,
                 write_records: Callable[[], None], cfg: TrainConfig) -> None:
        self.parts, self.state, self.write_records, self.cfg = parts, state, write_records, cfg

    def saw(self, skipped: int, steps: int, in_a_row: int, done: Progress) -> bool:
        """Judge one read of the counts; returns whether the run fell back to fp32."""
        precision = self.parts.runtime.precision
        event = nonfinite_event(skipped, steps, in_a_row, done.epoch + 1, done.step, precision,
                                self.cfg.lr, at_least=self.cfg.max_nonfinite)
        if event is None:
            return False
        log.warning(event.line())
        self.state.pending_health.append(event.to_dict())
        if event.action != "fp32":
            return False
        self.parts.fall_back_to_fp32(f"fell back from {precision} at step {done.step} after "
                                     f"{skipped} non-finite steps")
        self.write_records()
        return True


def _read(counts: StepCounts, tally: EpochTally, done: Progress, watch: StepWatch) -> None:
    """Move the device's step counts into the epoch's tally and the run's progress (one
    read) and show them to the health monitor; stop a run whose loss was not finite for
    ``--max-nonfinite`` steps in a row (in fp32, or after falling back to it)."""
    loss_sum, steps, skipped, in_a_row = counts.read()
    tally.loss_sum += loss_sum
    tally.steps += steps
    done.skipped += skipped
    cfg = watch.cfg
    if watch.saw(skipped, steps + skipped, in_a_row, done):
        counts.in_a_row.zero_()                # the streak starts over in fp32
        in_a_row = 0
    if in_a_row >= cfg.max_nonfinite:
        raise TrainingDiverged(
            f"the loss was not finite for {in_a_row} steps in a row (epoch {done.epoch + 1}); "
            f"stopped. The last good checkpoint is in {cfg.out}; try a lower --lr or "
            f"--precision fp32")


class Clock:
    """Wall time, folded into ``progress.seconds`` (the time budget's clock) at every
    ``tick``; ``lap`` gives an epoch's seconds, ``since_logged`` those since the last row."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last = self.lap_start = time.perf_counter()
        self.logged = progress.seconds

    def tick(self) -> float:
        now = time.perf_counter()
        self.progress.seconds += now - self.last
        self.last = now
        return self.progress.seconds

    def lap(self) -> float:
        self.tick()
        seconds, self.lap_start = self.last - self.lap_start, self.last
        return seconds

    def since_logged(self) -> float:
        seconds, self.logged = self.tick() - self.logged, self.progress.seconds
        return seconds


def _replan(length: RunLength, scheduler, clock: Clock, world: distributed.World,
            device: torch.device) -> None:
    """Re-length a timed run from its pace; every rank takes the mean of their clocks, so all
    stop at the same step."""
    if not length.timed:
        return
    seconds = torch.tensor([clock.tick()], dtype=torch.float64, device=device)
    seconds = distributed.all_sum(seconds, world).item() / world.size
    length.estimate(clock.progress.step, seconds)
    follow_schedule(scheduler)


def _checkpoint_due(done: Progress, length: RunLength, cfg) -> bool:
    """A mid-epoch resume checkpoint every ``--checkpoint-every`` batches, and once early in
    a long first epoch."""
    early = (done.epoch == 0 and done.batch == FIRST_CHECKPOINT_BATCHES
             and length.steps_per_epoch >= 2 * FIRST_CHECKPOINT_BATCHES)
    return early or bool(cfg.checkpoint_every and done.batch % cfg.checkpoint_every == 0)


def _stopping(stop: StopSignals, world: distributed.World, device: torch.device) -> bool:
    """Whether a signal asked the run to stop, agreed over all ranks: torchrun signals every
    rank, but each may see it at a different step."""
    stopping = distributed.any_rank(stop.requested, world, device)
    if stopping and not stop.requested:
        stop.signal = signal.SIGTERM
    return stopping


def _training_scores(tally: EpochTally, world: distributed.World,
                     device: torch.device) -> tuple[float, float]:
    """The epoch's training loss and mIoU over all ranks' batches."""
    sums = distributed.all_sum(torch.tensor([tally.loss_sum, tally.steps], dtype=torch.float64,
                                            device=device), world)
    matrix = distributed.all_sum(tally.matrix.matrix.clone(), world)
    return (sums[0] / sums[1].clamp_min(1)).item(), scores_from_matrix(matrix).miou


def _collapsed_for(history: list[dict]) -> int:
    """Validations since a lasting collapse was reported (1 at the report; 0 without one)."""
    return max(0, collapse_streak(history) - COLLAPSE_VALIDATIONS + 1)


def _judge(row: dict, state: RunState, facts: DataFacts) -> list[HealthEvent]:
    """Put the health monitor's findings into a validation's metrics ``row``: those since the
    last row (non-finite streaks) and those this validation brings. Returns the latter, to
    print after the row's own line."""
    findings = validation_events([*state.history, row], facts)
    row["health"] = [*state.pending_health, *(event.to_dict() for event in findings)]
    state.pending_health = []
    return findings


def _records(config: RunConfig, data: Datasets, parts: TrainingParts, plan: dict | None) -> str:
    """config.yaml's text: the settings, what the data check found, the precision chosen and
    why, and the plan the settings came from (none without one)."""
    records = {"data_check": data.summary, "runtime": parts.precision.to_dict()}
    return config.to_yaml({**records, "plan": plan} if plan else records)


def _time_note(seconds: float, length: RunLength, done: Progress) -> str:
    """``8 s, about 3 min left`` for an epoch line: at the pace so far, to the planned end."""
    left = length.seconds_left(done.step, done.seconds)
    return f"{seconds:.0f} s" + (f", about {format_duration(left)} left" if left else "")


def _metadata(config: RunConfig, data: Datasets, parts: TrainingParts,
              state: RunState, plan: dict | None) -> dict:
    """What a checkpoint records beside the weights: enough to predict, score and resume, and
    the plan the settings came from (None without one)."""
    spec, weights = data.spec, parts.class_weights
    return {"class_names": list(spec.class_names),
            "colours": [list(c) for c in spec.colours],
            "ignore_index": spec.ignore_index,
            "mask_spec": spec.to_dict(),   # how the masks were read: other folders read alike
            "normalisation": {"mean": list(data.mean), "std": list(data.std)},
            "binary": config.train.loss == "bce_dice",
            "class_weights": None if weights is None else weights.tolist(),
            "precision": parts.runtime.precision,
            "channels_last": config.train.channels_last,
            "run_config": config.to_dict(),
            "data_check": data.summary,
            "plan": plan,
            "training": {**state.to_json(), "scheduler": parts.scheduler.state_dict(),
                         "scaler": (parts.scaler.state_dict() if parts.scaler.is_enabled()
                                    else None)}}


def _resume_tensors(tally: EpochTally | None) -> dict[str, torch.Tensor]:
    """The tensors a resume checkpoint holds beside the model: the RNG, and mid-epoch the
    epoch's training confusion matrix."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if tally is not None:
        tensors["train.matrix"] = tally.matrix.matrix
    return tensors


def _restore(run_dir: RunDir, parts: TrainingParts, spec) -> RunState:
    """Load the resume checkpoint into ``parts`` (weights, optimiser, schedule, scaler, RNG);
    returns the run's state, with the epoch's tally when it stopped mid-epoch."""
    checkpoint = run_dir.load_resume()
    unwrap(parts.model).load_state_dict(checkpoint.section("model"))
    restore_optimizer(checkpoint, parts.optimizer)
    saved = checkpoint.metadata["training"]
    parts.scheduler.load_state_dict(saved["scheduler"])
    if saved.get("scaler"):
        parts.scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(checkpoint.tensors["rng.torch"])
    state = RunState.from_json(saved, spec.num_classes, spec.ignore_index)
    if state.tally is not None:
        state.tally.matrix.matrix = checkpoint.tensors["train.matrix"].to(parts.runtime.device)
    log.info(f"resuming {run_dir.path} at epoch {state.progress.epoch + 1}, batch "
             f"{state.progress.batch + 1}")
    return state


def _train_loader(config: RunConfig, data: Datasets, world: distributed.World,
                  runtime: Runtime, done: Progress) -> DataLoader:
    """The epoch's training batches for this rank, without the ``done.batch`` already taken."""
    cfg = config.data
    if cfg.batch_size % world.size:
        raise ValueError(f"--batch-size {cfg.batch_size} is the global batch and must divide "
                         f"among {world.size} processes")
    per_rank = cfg.batch_size // world.size
    # --epoch-steps splits each pass into `parts` epochs, each a run of the pass's shuffled
    # order; augmentations are drawn per epoch, so each part draws its own. A pass is its
    # whole batches (the short one is dropped), or the one short batch of a smaller set.
    parts = distributed.epoch_parts(max(1, len(data.train) // cfg.batch_size),
                                    config.train.epoch_steps)
    data.train.set_epoch(done.epoch)
    seed = config.train.seed * 100_003 + done.epoch // parts
    # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG,
    # which would shift every later dropout mask after a mid-epoch resume.
    return DataLoader(data.train, batch_size=per_rank, num_workers=cfg.workers,
                      sampler=distributed.EpochOrder(len(data.train), seed, per_rank, world,
                                                     done.batch, (done.epoch % parts, parts)),
                      pin_memory=runtime.device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed),
                      drop_last=len(data.train) > cfg.batch_size)


def _val_loader(config: RunConfig, data: Datasets, world: distributed.World,
                device: torch.device) -> DataLoader:
    """This rank's shard of the validation set (every image exactly once over the ranks)."""
    shard = (Subset(data.val, list(distributed.shard(len(data.val), world)))
             if world.distributed else data.val)
    return validation_loader(shard, config.data.batch_size, config.data.workers,
                             device.type == "cuda")


def with_data_shapes(config: RunConfig, data: Datasets) -> RunConfig:
    """The config with the model's input channels and outputs set from the data: one output
    for bce_dice (a binary task), one per class otherwise."""
    num_classes, loss = data.spec.num_classes, config.train.loss
    if num_classes < 2:
        raise ValueError(one_class_message("the dataset", data.spec.class_names))
    if loss == "bce_dice" and num_classes != 2:
        raise ValueError(f"--loss bce_dice is for binary tasks (2 classes); this dataset has "
                         f"{num_classes}: {', '.join(data.spec.class_names)}")
    outputs = 1 if loss == "bce_dice" else num_classes
    return replace(config, model=replace(config.model, in_channels=data.in_channels,
                                         num_classes=outputs))


def _check_data_unchanged(recorded: dict | None, data: Datasets, allowed: str) -> None:
    """Refuse to resume on data that is not what the run recorded when it started (its
    `Datasets.summary`: how many images, and each class's training pixels), naming what
    changed, unless ``--data-changed ok``; then the change is recorded in the summary that
    config.yaml keeps. A run that recorded no data check is not compared."""
    if not recorded:
        return
    now = data.summary
    changed = [f"{key.replace('_', ' ')} {recorded[key]} -> {now[key]}"
               for key in ("train_images", "val_images") if recorded.get(key) != now[key]]
    before, after = recorded.get("classes", {}), now["classes"]
    changed += [f"{name} training pixels {before[name]['pixels']} -> {after[name]['pixels']}"
                for name in after if name in before
                and before[name]["pixels"] != after[name]["pixels"]]
    if not changed:
        return
    if allowed != "ok":
        raise ValueError(f"the data changed since the run started ({'; '.join(changed)}): "
                         f"resuming would train and validate on other images than its "
                         f"checkpoints saw. Restore the data, start a new run, or pass "
                         f"--data-changed ok to continue on it")
    log.warning(f"resuming on changed data ({'; '.join(changed)}), as --data-changed ok asks")
    now["changed_on_resume"] = [*recorded.get("changed_on_resume", []), "; ".join(changed)]


def _data_folders(data: Datasets) -> set[Path]:
    """The folders the image and mask files come from (none for built-in data)."""
    pairs = [*getattr(data.train, "pairs", []), *getattr(data.val, "pairs", [])]
    return {path.parent for pair in pairs for path in pair}


def _skipped_pairs(skipped: list[tuple[str, str]]) -> list[str]:
    """The ``--skip-bad`` notice: one message listing the pairs left out (none if none)."""
    if not skipped:
        return []
    lines = [f"--skip-bad: left out {len(skipped)} bad pair(s):"]
    # The reason usually names the file already; don't say it twice.
    lines += [f"  {why}" if why.startswith(path) else f"  {path}: {why}" for path, why in skipped]
    return ["\n".join(lines)]
