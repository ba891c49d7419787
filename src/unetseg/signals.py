"""Stopping a run cleanly: SIGTERM (a cluster pre-empting the job) and Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["StopSignals", "TrainingInterrupted"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT stopped the run after a checkpoint; ``signal`` is the number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal = signal_number


class StopSignals:
    """While active, SIGTERM (a cluster pre-empting the job) and SIGINT (Ctrl-C) only ask the
    run to stop: it finishes the current step, writes a checkpoint and raises
    `TrainingInterrupted`. The first signal is acknowledged at once (by the process that
    ``announce``s, rank 0 under DDP); a second one stops at once with KeyboardInterrupt."""

    def __init__(self, announce: bool = True) -> None:
        self.signal: int | None = None
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def _handle(self, number, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number
        if self.announce:
            _say(f"\n{signal.Signals(number).name}: stopping after this step and writing a "
                 f"checkpoint; Ctrl-C again to abort at once\n")

    def interrupted(self, run_dir: Path, where: str) -> TrainingInterrupted:
        name = signal.Signals(self.signal).name
        return TrainingInterrupted(f"stopped by {name} after {where}; the checkpoint is saved. "
                                   f"Continue with: unetseg train --resume {run_dir}",
                                   self.signal)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _say(message: str) -> None:
    """Write from a signal handler: straight to the file descriptor, since a print here could
    interrupt one in progress (a progress bar's) and fail as a reentrant call on the stream;
    through the stream where it has no descriptor (a captured stream in tests)."""
    try:
        os.write(sys.stderr.fileno(), message.encode())
    except (AttributeError, OSError, ValueError):     # io.UnsupportedOperation is both
        sys.stderr.write(message)
