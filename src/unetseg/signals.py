"""Stopping a run cleanly: SIGTERM (a cluster pre-empting the job) and Ctrl-C."""

from __future__ import annotations

import signal
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

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
