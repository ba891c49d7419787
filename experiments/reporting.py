"""Writing the studies' results: JSON, CSV, Markdown tables and curve plots over seeds.

A *run* is the dict `common.train_contender` returns, with the study adding ``dataset``. Runs of
the same contender on the same dataset with different seeds are one *group*; plots show the
group's mean and its min-max spread.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"     # where a full run publishes its summary and charts

__all__ = ["write_json", "write_csv", "markdown_table", "groups", "aligned", "plot_curves",
           "metric_of", "fmt", "write_results", "write_summary", "summary"]


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON; NaN is refused, so a results file is always standard JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, allow_nan=False) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as a CSV table, one column per key in the order first seen (a row
    without a key leaves its cell empty); nothing is written for no rows."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_results(out: Path, results: dict[str, Any], rows: list[dict[str, Any]],
                  started: float) -> None:
    """A finished study's results.json (with its summary rows and wall time) and summary.csv."""
    results.update(summary=rows, wall_s=time.perf_counter() - started)
    write_json(out / "results.json", results)
    write_csv(out / "summary.csv", rows)


def write_summary(out: Path, results: dict[str, Any], text: str,
                  charts: tuple[Path, ...] = ()) -> None:
    """summary.md, and the table printed with the run's wall time. A full run's summary also
    goes, with the machine, the commit and the command, to docs/results/STUDY.json, and its
    ``charts`` to docs/images/experiments/STUDY_NAME.png, from which docs/experiments.md
    renders them (`summary`; docs/figures.py). A quick run never touches docs/."""
    (out / "summary.md").write_text(text + "\n")
    print(f"\n{text}\n\n{results['mode']} run, {results['wall_s']:.0f} s wall; results in {out}")
    if results["mode"] != "full":
        return
    study = f"{results['study']}_study"
    shown = []
    for chart in charts:
        shown.append(f"images/experiments/{study}_{chart.name}")
        (DOCS / shown[-1]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chart, DOCS / shown[-1])
    harness().write_results(DOCS / "results" / f"{study}.json", mode=results["mode"],
                            wall_s=round(results["wall_s"]), summary=text, charts=shown)


def harness():
    """benchmarks/harness.py, which writes and describes every results file (imported when
    needed: a quick run never does)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import harness

    return harness


def summary(document: dict[str, Any]) -> str:
    """A study's tables as its full run printed them, its charts, and where it ran."""
    charts = "".join(f"\n\n![{Path(chart).stem.replace('_', ' ')}]({chart})"
                     for chart in document.get("charts", []))
    return (f"{document['summary']}{charts}\n\n({harness().provenance(document)} "
            f"{document['wall_s']:,} s wall.)")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals, None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells through `fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def groups(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs by (dataset, contender name), in the order first seen."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(run["dataset"], run["contender"]["name"])].append(run)
    return dict(grouped)


def metric_of(name: str) -> Callable[[dict[str, Any]], float]:
    """A getter for a curve entry's metric: ``miou``, ``fg_iou``, or ``iou/CLASS``."""
    if name.startswith("iou/"):
        return lambda entry: entry["metrics"]["iou"][name[4:]]
    return lambda entry: entry["metrics"][name]


def aligned(runs: list[dict[str, Any]], x: str, metric: str) -> dict[str, list[float]]:
    """The seeds' curves matched by evaluation index (truncated to the shortest): ``x`` and
    the metric's ``mean``, ``low`` and ``high`` over seeds. ``x`` (``step``, ``train_wall_s``
    or ``train_cpu_s``) is the seeds' mean at each index: step budgets evaluate at the same
    steps, time budgets at nearly the same seconds. A metric that is None (an absent class)
    counts as NaN."""
    length = min(len(run["curve"]) for run in runs)
    get = metric_of(metric)
    xs, mean, low, high = [], [], [], []
    for index in range(length):
        entries = [run["curve"][index] for run in runs]
        values = [math.nan if get(e) is None else get(e) for e in entries]
        xs.append(sum(e[x] for e in entries) / len(entries))
        mean.append(sum(values) / len(values))
        low.append(min(values))
        high.append(max(values))
    return {"x": xs, "mean": mean, "low": low, "high": high}


def plot_curves(runs: list[dict[str, Any]], metric: str, path: Path, title: str,
                clock: str = "train_wall_s") -> None:
    """One figure per dataset row: ``metric`` against steps (left) and training time (right:
    ``clock``, wall seconds by default, or ``train_cpu_s`` for a study budgeted in CPU
    seconds), a line per contender (mean over seeds) with its min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = groups(runs)
    datasets = list(dict.fromkeys(dataset for dataset, _ in grouped))
    figure, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)),
                                squeeze=False)
    for row, dataset in enumerate(datasets):
        clock_label = "training CPU seconds" if clock == "train_cpu_s" else \
            "training wall seconds"
        for column, (x, label) in enumerate((("step", "optimiser steps"), (clock, clock_label))):
            axis = axes[row][column]
            for (where, name), members in grouped.items():
                if where != dataset:
                    continue
                curve = aligned(members, x, metric)
                line, = axis.plot(curve["x"], curve["mean"], marker=".",
                                  label=f"{name} ({len(members)} seed{'s' * (len(members) > 1)})")
                axis.fill_between(curve["x"], curve["low"], curve["high"], alpha=0.2,
                                  color=line.get_color())
            axis.set_xlabel(label)
            axis.set_ylabel(metric)
            axis.set_title(f"{dataset}: {metric}")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
