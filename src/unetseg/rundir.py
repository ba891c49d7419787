"""The run folder: what a training run writes, and how a resumed run reads it back.

::

    RUN/
      config.yaml            the resolved configuration (written at the start and on resume)
      last.safetensors       the resume checkpoint: model, optimiser, schedule, RNG, `RunState`
      previous.safetensors   the resume checkpoint before it, in case ``last`` is damaged
      best.safetensors       the weights with the best validation mIoU so far
      metrics.jsonl          one row per validation (undefined scores as null), with the
                             health monitor's findings since the row before (`unetseg.health`)
      metrics.csv            the same rows as a table
      curves.png             loss and mIoU against the epoch (redrawn every `CURVES_EVERY`
                             seconds at most, and when the run ends)
      tensorboard/           with --tensorboard
      .lock                  there while a run writes the folder (`RunDir.lock`)

Only rank 0 writes (every method that writes is a no-op on the other ranks), so under DDP no
two processes ever rename the same file. Every file is written atomically (`unetseg.files`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .charts import plot_curves
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import RECORD_SECTIONS, RunConfig, read_config_file
from .evaluation import Evaluation
from .files import atomic_write_text, leftover_temporaries, write_csv, write_jsonl, write_yaml
from .health import class_shares
from .metrics import ConfusionMatrix
from .outputs import check_output_folder, refusal, refuse_inside

__all__ = ["RunDir", "RunState", "Progress", "EpochTally", "LOG_COLUMNS", "epoch_row",
           "read_run_config", "load_run_config", "CONFIG_FILE"]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
# Held (flock) by the process that writes the run; never counted as one of the run's files.
LOCK_FILE = ".lock"
# The files a run writes (and `--overwrite` replaces); other files in the folder are left alone.
RUN_FILES = (CONFIG_FILE, "last.safetensors", "previous.safetensors", "best.safetensors",
             ".staged-last.safetensors", "metrics.jsonl", "metrics.csv", "curves.png",
             "tensorboard")
# Seconds between two drawings of curves.png during a run.
CURVES_EVERY = 30.0
LOG_COLUMNS = ["epoch", "step", "train_loss", "train_miou", "val_loss", "val_miou", "val_mdice",
               "val_pixel_accuracy", "val_mean_bf1", "lr", "seconds"]


@dataclass
class Progress:
    """How far a run is: the one record the training loop reads ("how far along?") and every
    resume checkpoint saves. ``step`` is the learning-rate schedule's position too."""

    step: int = 0                # optimiser steps taken, skipped non-finite ones included
    epoch: int = 0               # epochs finished
    batch: int = 0               # batches of the current epoch taken
    seconds: float = 0.0         # wall time so far, validation included (the time budget's)
    skipped: int = 0             # non-finite steps skipped so far


@dataclass
class EpochTally:
    """The current epoch's training scores so far: kept in mid-epoch checkpoints, so that a
    resumed epoch reports the same training loss and mIoU as one never interrupted."""

    matrix: ConfusionMatrix          # training predictions against their masks
    loss_sum: float = 0.0
    steps: int = 0                   # steps whose loss counted (finite ones)

    def to_json(self) -> dict:
        return {"loss_sum": self.loss_sum, "steps": self.steps}


@dataclass
class RunState:
    """The run's bookkeeping, saved as JSON in every resume checkpoint: its `Progress`, the
    best validation so far, the metrics history and, mid-epoch, the epoch's `EpochTally`
    (whose matrix the checkpoint holds as a tensor)."""

    progress: Progress = field(default_factory=Progress)
    best_miou: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0                      # validations since the best one
    history: list[dict] = field(default_factory=list)    # one metrics.jsonl row per epoch
    tally: EpochTally | None = None
    # Health findings since the last row (`unetseg.health.HealthEvent.to_dict`); the next
    # row carries them.
    pending_health: list[dict] = field(default_factory=list)

    def record(self, row: dict, miou: float, epoch: int) -> bool:
        """Add a validated epoch's ``row`` to the history; returns whether its ``miou`` is the
        best so far (``epoch`` 1-based)."""
        self.history.append(row)
        improved = miou > self.best_miou
        if improved:
            self.best_miou, self.best_epoch, self.bad_epochs = miou, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def to_json(self) -> dict[str, Any]:
        return {"progress": asdict(self.progress), "best_miou": self.best_miou,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "history": self.history,
                "tally": None if self.tally is None else self.tally.to_json(),
                "pending_health": self.pending_health}

    @classmethod
    def from_json(cls, values: dict[str, Any], num_classes: int,
                  ignore_index: int | None) -> RunState:
        """The state a checkpoint saved, with an empty matrix in a mid-epoch tally (the
        checkpoint's ``train.matrix`` tensor fills it). Checkpoints written before the
        progress record (epoch, seconds and in_epoch at the top level) are read too."""
        progress = values.get("progress")
        tally = values.get("tally")
        if progress is None:                       # the earlier layout
            in_epoch = values.get("in_epoch") or {}
            progress = {"step": (values.get("scheduler") or {}).get("last_epoch", 0),
                        "epoch": values["epoch"], "batch": in_epoch.get("batches", 0),
                        "seconds": values.get("seconds", 0.0)}
            tally = ({"loss_sum": in_epoch["loss_sum"], "steps": in_epoch["steps"]}
                     if in_epoch else None)
        return cls(Progress(**progress), values["best_miou"], values["best_epoch"],
                   values["bad_epochs"], values["history"],
                   None if tally is None else EpochTally(
                       ConfusionMatrix(num_classes, ignore_index), **tally),
                   values.get("pending_health", []))


def read_run_config(run: str | Path) -> dict[str, Any]:
    """The sections a run's config.yaml holds, as written: the settings (data, model, train)
    and the records (`RECORD_SECTIONS`). The one reader of that file: resuming, the run
    folder's checks and the recorded precision all go through it.

    Raises:
        OSError: the file cannot be read (a folder that holds no run).
        ValueError: it is not YAML, or not a mapping of sections (the message names the file).
    """
    return read_config_file(Path(run) / CONFIG_FILE)


def load_run_config(run: str | Path) -> RunConfig:
    """The configuration a run was trained with (`read_run_config`, records left out), as
    resuming reads it; errors name the file, and a folder that holds no run is a ValueError
    saying so."""
    if not (Path(run) / CONFIG_FILE).is_file():
        raise ValueError(f"cannot resume {run}: it holds no run (no {CONFIG_FILE}); expected "
                         f"the --out folder of an earlier unetseg train")
    return RunConfig.from_dict(read_run_config(run), str(Path(run) / CONFIG_FILE))


def epoch_row(epoch: int, step: int, train_loss: float, train_miou: float, val: Evaluation,
              lr: float, seconds: float) -> dict:
    """One line of metrics.jsonl (and, through `LOG_COLUMNS`, of metrics.csv) for 0-based
    ``epoch`` after ``step`` optimiser steps: training loss and mIoU of the epoch, the
    validation scores, learning rate, and the seconds since the previous line, and what the
    health monitor reads: each class's share of the validation's true and predicted pixels."""
    true_share, predicted_share = class_shares(val.scores.matrix)
    return {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "train_miou": train_miou,
            "val_loss": val.loss, "val_miou": val.scores.miou, "val_mdice": val.scores.mdice,
            "val_pixel_accuracy": val.scores.pixel_accuracy,
            "val_mean_bf1": val.mean_boundary_f1,
            "val_iou": val.scores.iou.tolist(), "val_bf1": val.boundary_f1.tolist(),
            "lr": lr, "seconds": round(seconds, 2),
            "val_true_share": true_share, "val_predicted_share": predicted_share}


class RunDir:
    """The folder of one run, as rank ``0`` (``is_main``) or another rank sees it."""

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path, self.is_main = Path(path), is_main
        self.last = self.path / "last.safetensors"
        self.previous = self.path / "previous.safetensors"
        self.best = self.path / "best.safetensors"
        self._tensorboard = None
        # curves.png is redrawn at most every CURVES_EVERY seconds (matplotlib takes most of
        # a second a chart, more than a tiny run's epoch) and at the run's end.
        self._curves_drawn = time.monotonic()
        self._curves_due: tuple[list[dict], list[str]] | None = None
        self._lock = None                       # the open lock file while the run holds it
        self._created = False                   # whether taking the lock made the folder

    def lock(self) -> None:
        """Hold the run folder until `close`: a second run into it, new or resumed, is
        refused, naming the first one's process and start. The lock is the kernel's (flock),
        so it ends with the process that holds it: a killed run leaves at most a stale
        ``.lock`` file, which blocks nothing. Only rank 0 takes it (the other ranks of a DDP
        run share the folder)."""
        if not self.is_main:
            return
        check_output_folder(self.path, "--out")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK_FILE
        while True:
            handle = open(path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ValueError(f"--out {self.path} is in use by another run ({holder}); "
                                 f"wait for it to end, or choose another --out") from None
            # The holder before us removes the file as it lets go: a lock on a file that is no
            # longer there (or no longer this one) holds nothing. Take the new one.
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
                    break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"unetseg train, PID {os.getpid()}, started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._lock = handle
        # A run killed inside a write leaves that write's temporary file. Holding the lock,
        # no one else writes here: clear them.
        for leftover in leftover_temporaries(self.path):
            leftover.unlink(missing_ok=True)

    def check(self, resume: bool, overwrite: bool = False) -> bool:
        """Refuse to resume a run that does not exist, or to start one in a folder that holds
        files (a finished run's best.safetensors, someone's own config.yaml) unless
        ``overwrite``. Returns whether a new run starts over files of an earlier one (then
        `clear` them once the data has been checked); nothing is removed here.

        A run killed before its first checkpoint left only its own config.yaml and logs: the
        same command starts it again without --overwrite, since no weights can be lost."""
        check_output_folder(self.path, "--out")
        exists = self.last.exists() or self.previous.exists()
        if resume:
            if not exists:
                raise ValueError(f"cannot resume: {self.last} does not exist")
            return False
        present = (sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
                   if self.path.is_dir() else [])
        if present and not overwrite and not self._only_an_unstarted_run(present):
            # The refuse policy (`unetseg.outputs`), with every file of the folder counted:
            # a run folder belongs to its run.
            if exists:
                raise refusal("--out", self.path, f"already holds a run ({self.last.name})",
                              also="pass --resume to continue it, ",
                              overwrite_does="start a new run there")
            shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
            raise refusal("--out", self.path,
                          f"already holds files ({shown}) but no run to resume",
                          overwrite_does="start a new run there")
        return bool(present)

    def _only_an_unstarted_run(self, present: list[str]) -> bool:
        """Whether the folder holds nothing but what a run writes before its first checkpoint,
        with a config.yaml that this toolkit wrote (it records the data check)."""
        before_checkpoints = {"config.yaml", "metrics.jsonl", "metrics.csv", "curves.png",
                              "tensorboard", ".staged-last.safetensors"}
        if not set(name for name in present if not name.endswith(".tmp")) <= before_checkpoints:
            return False
        return RECORD_SECTIONS[0] in self._recorded()

    def record(self, name: str) -> dict | None:
        """A record (one of `RECORD_SECTIONS`) that config.yaml holds, or None."""
        return self._recorded().get(name)

    def _recorded(self) -> dict[str, Any]:
        """What config.yaml holds; nothing when there is no readable one (someone's own file,
        a run killed while writing it)."""
        try:
            return read_run_config(self.path)
        except (OSError, ValueError):
            return {}

    def refuse_inside(self, folders: set[Path]) -> None:
        """Refuse a run folder inside one of the data's folders (images/, masks/): the run's
        files would land among the data, and later be read as data."""
        refuse_inside(self.path, folders, "--out")

    def clear(self) -> None:
        """Remove the files an earlier run wrote (for ``--overwrite``), so nothing of it, a
        stale previous checkpoint say, can mix with the new run; other files stay."""
        if not self.is_main:
            return
        for name in RUN_FILES:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def write_config(self, config: str | dict[str, Any]) -> None:
        """config.yaml: the YAML text of `RunConfig.to_yaml`, or the sections as values."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if isinstance(config, str):
            atomic_write_text(self.path / CONFIG_FILE, config)
        else:
            write_yaml(self.path / CONFIG_FILE, config)

    # --- checkpoints ----------------------------------------------------------------------

    def load_resume(self) -> Checkpoint:
        """The last checkpoint, or the one before it when the last is missing or unreadable (a
        kill between the two renames of `save_resume`, a truncated copy, a corrupt disk)."""
        try:
            return load_checkpoint(self.last)
        except (FileNotFoundError, ValueError) as error:
            if not self.previous.exists():
                raise
            checkpoint = load_checkpoint(self.previous)
            if self.is_main:
                log.warning(f"{self.last} is unusable ({error}); resuming from "
                            f"{self.previous.name}")
                if self.last.exists():          # kept for inspection, out of the rotation
                    os.replace(self.last, self.last.with_name(self.last.name + ".corrupt"))
            return checkpoint

    def save_resume(self, model: nn.Module, metadata: dict, optimizer: torch.optim.Optimizer,
                    tensors: dict[str, torch.Tensor]) -> None:
        """Write the resume checkpoint, keeping the one before it as ``previous``: whatever
        happens during the write, one good checkpoint stays on disk. It is the run's commit
        point: write it after everything else an epoch writes."""
        if not self.is_main:
            return
        staged = self.path / (".staged-" + self.last.name)
        save_checkpoint(staged, model, metadata, optimizer, tensors)
        if self.last.exists():
            os.replace(self.last, self.previous)
        os.replace(staged, self.last)

    def save_best(self, model: nn.Module, metadata: dict) -> None:
        if self.is_main:
            save_checkpoint(self.best, model, metadata)

    # --- logs -----------------------------------------------------------------------------

    def write_logs(self, history: list[dict], class_names) -> None:
        """metrics.jsonl and metrics.csv, rewritten whole from ``history``; curves.png too
        where `CURVES_EVERY` seconds have passed since it was drawn (`finish_logs` draws the
        last one)."""
        if not self.is_main:
            return
        write_jsonl(self.path / "metrics.jsonl", history)
        write_csv(self.path / "metrics.csv", LOG_COLUMNS + [f"iou_{name}" for name in class_names],
                  ([row[c] for c in LOG_COLUMNS] + list(row["val_iou"]) for row in history))
        self._curves_due = (list(history), list(class_names))
        if time.monotonic() - self._curves_drawn >= CURVES_EVERY:
            self.finish_logs()

    def finish_logs(self) -> None:
        """Draw curves.png from the history last written, if it is not drawn yet."""
        if self._curves_due is not None:
            plot_curves(*self._curves_due, self.path / "curves.png")
            self._curves_due, self._curves_drawn = None, time.monotonic()

    def open_tensorboard(self) -> None:
        """Also log to ``tensorboard/`` (rank 0), or say why not: it is an optional extra."""
        if not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("--tensorboard: the tensorboard package is not installed (pip install "
                  "tensorboard); logging to metrics.jsonl/csv and curves.png only")
            return
        self._tensorboard = SummaryWriter(log_dir=str(self.path / "tensorboard"))

    def log_tensorboard(self, row: dict, class_names) -> None:
        writer = self._tensorboard
        if writer is None:
            return
        for key in LOG_COLUMNS[2:-1]:
            writer.add_scalar(key.replace("_", "/", 1), row[key], row["epoch"])
        for name, iou in zip(class_names, row["val_iou"]):
            writer.add_scalar(f"val_iou/{name}", iou, row["epoch"])
        writer.flush()

    def close(self) -> None:
        """Close the TensorBoard log and let the folder go: the lock file is removed while
        still held (see `lock`), and a folder that taking the lock made and that holds nothing
        else (the run stopped before writing) goes too."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._lock is None:
            return
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        if self._created:
            with contextlib.suppress(OSError):      # not empty: the run wrote there
                self.path.rmdir()
        self._lock.close()                     # closing the file releases the lock
        self._lock = None
