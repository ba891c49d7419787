"""Progress for people and for logs: a live bar in a terminal, plain lines anywhere else.

tqdm redraws its bar with carriage returns, which turn a log file, CI output or ``nohup.out``
into one unreadable line. When standard error is not a terminal, `progress` prints a plain
line every tenth of the way instead (or nothing, for ``lines=False``: the caller already prints
a line per unit of work, as training does per epoch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "in_terminal", "format_duration"]

T = TypeVar("T")


def in_terminal() -> bool:
    """Whether progress goes to a terminal (tqdm draws on standard error)."""
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 05 min``: as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def progress(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None,
             unit: str = "it", lines: bool = True, **bar_options) -> Iterable[T]:
    """``items``, with a tqdm bar in a terminal, else (with ``lines``) a line per tenth."""
    if not enabled:
        return items
    if in_terminal():
        return tqdm(items, desc=desc, total=total, unit=unit, **bar_options)
    return _lines(items, desc, total, unit) if lines else items


def _lines(items: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    start, step, done = time.perf_counter(), max(1, (total or 10) // 10), 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or done == total:
            elapsed = time.perf_counter() - start
            left = (f", about {format_duration(elapsed / done * (total - done))} left"
                    if total and done < total else "")
            of = f"/{total}" if total else ""
            print(f"{desc}: {done}{of} {unit}s ({format_duration(elapsed)}{left})",
                  file=sys.stderr, flush=True)
