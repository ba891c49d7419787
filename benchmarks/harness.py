"""What every benchmark shares: alternating timings, the machine line and the printed table.

The machines these run on are shared and their speed drifts, so a benchmark never compares
absolute times taken minutes apart. `alternate` runs the contenders in turns (A B C A B C ...)
after a warm-up of each, so that a slow minute slows all alike, and every table reports the
median with the min-max range and the ratio to a reference measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from unetseg.precision import cpu_flags, cpu_model

__all__ = ["Timing", "alternate", "machine", "table", "print_table", "printed", "tables",
           "provenance", "peak_rss_mib", "seconds", "write_results", "RESULTS"]

# Where the benchmarks' results files go, one per script.
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    """Repeated measurements of one contender (seconds, or any per-run figure)."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, digits: int = 3) -> str:
        return f"{min(self.values):.{digits}g}-{max(self.values):.{digits}g}"


def seconds(function: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def alternate(contenders: dict[str, Callable[[], object]], repeats: int = 3,
              warmup: int = 1) -> dict[str, Timing]:
    """Time each contender ``repeats`` times, in turns, after ``warmup`` untimed calls each."""
    for function in contenders.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            times[name].append(seconds(function))
    return {name: Timing(values) for name, values in times.items()}


def machine() -> str:
    """One line naming the hardware and versions a table was measured on."""
    flags = ", ".join(cpu_flags())
    gpu = (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    return (f"{cpu_model()} ({flags}), {os.cpu_count()} cores, {torch.get_num_threads()} "
            f"torch threads{gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")


def commit() -> str:
    """The short commit of the working tree, "+" when its code has uncommitted changes
    (results files that the scripts of the same run rewrote do not count)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!benchmarks/results", ":!docs/results"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def write_results(path: Path, **measured) -> Path:
    """A results file: what a script measured, with the machine, the commit, the command and
    the date, so that a figure quoted in the docs can be traced to the run that made it."""
    document = {"machine": machine(), "commit": commit(),
                "command": " ".join(["python", *sys.argv]),
                "date": time.strftime("%Y-%m-%d"), **measured}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory so far of this process (or of its finished children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table under a bold title: what docs/benchmarks.md shows (docs/figures.py
    renders it from a results file) and what the script prints."""
    cells = [header] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"**{title}**", ""]
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(text.ljust(width) for text, width in zip(row, widths))
                     + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


# Every table a script prints, in order: what `write_results(path, tables=printed())` keeps.
_PRINTED: list[dict] = []


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print a table, and keep it for the script's results file (`printed`)."""
    _PRINTED.append({"title": title, "header": header,
                     "rows": [[_plain(value) for value in row] for row in rows]})
    print("\n" + table(title, header, rows) + "\n", flush=True)


def printed() -> list[dict]:
    """The tables printed so far, as data."""
    return list(_PRINTED)


def tables(document: dict, *which: str) -> str:
    """The tables of a results file that kept them (all, or those numbered ``which``, from
    0), as the script printed them, then where they were measured: docs/figures.py renders
    docs/benchmarks.md with it."""
    kept = document["tables"]
    chosen = [kept[int(i)] for i in which] if which else kept
    return "\n\n".join([*(table(t["title"], t["header"], t["rows"]) for t in chosen),
                         provenance(document)])


def provenance(document: dict) -> str:
    """The line saying which command measured a results file, where and when."""
    return (f"Measured by `{document['command']}` at commit {document['commit']}, "
            f"{document['date']}, on {document['machine']}.")


def _plain(value: object) -> object:
    """A cell as JSON holds it: numbers stay numbers (formatted when shown)."""
    if isinstance(value, (int, float, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
