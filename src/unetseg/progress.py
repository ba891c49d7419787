"""Progress for people and for logs: a live bar in a terminal, plain lines anywhere else.

tqdm redraws its bar with carriage returns, which turn a log file, CI output or ``nohup.out``
into one unreadable line. When standard error is not a terminal, `progress` prints a plain
line every tenth of the way instead (or nothing, for ``lines=False``: the caller already prints
a line per unit of work, as training does per epoch).

The one progress style of the package: `progress` wraps an iterable (batches, images, pairs),
`counter` counts work that is not one (the tiles of an image), and `say` prints a line
without tearing a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "counter", "say", "in_terminal", "format_duration"]

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


def counter(total: int, desc: str, enabled: bool = True, unit: str = "it",
            lines: bool = True, **bar_options) -> Any:
    """A count of ``total`` units of work, shown as `progress` shows an iterable's: call
    ``update(n)`` as units finish and ``close()`` at the end."""
    if enabled and in_terminal():
        return tqdm(total=total, desc=desc, unit=unit, **bar_options)
    return _LineCounter(desc, total, unit, enabled and lines)


def say(message: str) -> None:
    """Print ``message`` on standard error, above a bar if one is drawn (not through it)."""
    tqdm.write(message, file=sys.stderr)


class _LineCounter:
    """Outside a terminal: a plain line every tenth of ``total`` (none when not ``shown``)."""

    def __init__(self, desc: str, total: int | None, unit: str, shown: bool = True) -> None:
        self.desc, self.total, self.unit, self.shown = desc, total, unit, shown
        self.start, self.done = time.perf_counter(), 0
        self.step = max(1, (total or 10) // 10)

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if self.shown and (self.done // self.step > before // self.step
                           or self.done == self.total):
            self._print()

    def _print(self) -> None:
        elapsed, total, done = time.perf_counter() - self.start, self.total, self.done
        left = (f", about {format_duration(elapsed / done * (total - done))} left"
                if total and done < total else "")
        of = f"/{total}" if total else ""
        print(f"{self.desc}: {done}{of} {self.unit}s ({format_duration(elapsed)}{left})",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _lines(items: Iterable[T], desc: str, total: int | None, unit: str) -> Iterator[T]:
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    count = _LineCounter(desc, total, unit)
    for item in items:
        yield item
        count.update()
