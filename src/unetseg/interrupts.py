"""Stopping a job cleanly: SIGTERM (a cluster pre-empting the job) and Ctrl-C.

`StopSignals` is the one interrupt handler: training stops after the step in hand and writes a
checkpoint; ``unetseg predict`` stops after the image in hand and writes its summary. The
handler only records the signal; the job looks at it where stopping is safe.
"""

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
    """While active, ``signals`` (by default SIGTERM, a cluster pre-empting the job, and
    SIGINT, Ctrl-C) only ask the job to stop: ``signal`` records the first one, and the job
    stops at its next safe point (training: after the current step, with a checkpoint, raising
    `TrainingInterrupted`). The first signal is acknowledged at once (by the process that
    ``announce``s, rank 0 under DDP), saying what the job does ``when`` stopping; a second
    one stops at once with KeyboardInterrupt.

    The handlers are installed for the block only, and only in the main thread (the only one
    that may); elsewhere the signals keep their usual meaning.
    """

    def __init__(self, announce: bool = True,
                 signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
                 when: str = "after this step and writing a checkpoint") -> None:
        self.signal: int | None = None
        self.announce, self.signals, self.when = announce, signals, when
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a signal asked the job to stop."""
        return self.signal is not None

    def _handle(self, number, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = number
        if self.announce:
            _say(f"\n{signal.Signals(number).name}: stopping {self.when}; Ctrl-C again to "
                 f"abort at once\n")

    def interrupted(self, run_dir: Path, where: str) -> TrainingInterrupted:
        name = signal.Signals(self.signal).name
        return TrainingInterrupted(f"stopped by {name} after {where}; the checkpoint is saved. "
                                   f"Continue with: unetseg train --resume {run_dir}",
                                   self.signal)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            # None: the earlier handler was not set from Python and cannot be put back.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()


def _say(message: str) -> None:
    """Write from a signal handler: straight to the file descriptor, since a print here could
    interrupt one in progress (a progress bar's) and fail as a reentrant call on the stream;
    through the stream where it has no descriptor (a captured stream in tests)."""
    try:
        os.write(sys.stderr.fileno(), message.encode())
    except (AttributeError, OSError, ValueError):     # io.UnsupportedOperation is both
        sys.stderr.write(message)
