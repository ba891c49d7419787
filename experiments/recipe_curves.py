"""The recipe search's chart and table: several `unetseg train` runs, one metric, one clock.

Each run folder holds what `unetseg train` writes: ``metrics.jsonl`` (one row per validation,
whose ``seconds`` are the wall seconds since the previous row, validation included: the
clock that ``--time-budget`` spends) and ``best.safetensors`` (the class names, from its
metadata). The script plots the metric of every run against minutes on that clock, on one
chart, and prints a Markdown table per run: the best value within each ``--within`` mark, the
lowest class IoU of that validation (so a class stuck at 0 shows), and the first minute the
metric reached each ``--target``.

    .venv/bin/python experiments/recipe_curves.py runs/c0=classic runs/c1=recipe \\
        --metric miou --within 60,120 --target 0.30,0.40 --out camvid_recipes.png

A metric is ``miou`` (validation mIoU) or ``iou:CLASS`` (one class's IoU, by name).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reporting import fmt, markdown_table  # noqa: E402

from unetseg.checkpoint import read_metadata  # noqa: E402


def read_run(folder: Path) -> dict[str, Any]:
    """A run's validations as ``{"minutes", "step", "miou", "iou": {class: value}}`` rows on
    the run's cumulative clock; ValueError naming the folder if it holds no metrics."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{folder} has no metrics.jsonl: expected a `unetseg train` run folder")
    names = read_metadata(folder / "best.safetensors")["class_names"]
    rows, clock = [], 0.0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        clock += record["seconds"]
        iou = {name: (math.nan if value is None else value)
               for name, value in zip(names, record["val_iou"])}
        rows.append({"minutes": clock / 60, "step": record.get("step"),
                     "miou": record["val_miou"], "iou": iou})
    if not rows:
        raise ValueError(f"{path} is empty: the run has not validated yet")
    return {"folder": str(folder), "rows": rows}


def value_of(row: dict[str, Any], metric: str) -> float:
    """The row's ``miou`` or ``iou:CLASS``; ValueError naming the classes for an unknown one."""
    if metric == "miou":
        return row["miou"]
    name = metric.removeprefix("iou:")
    if not metric.startswith("iou:") or name not in row["iou"]:
        raise ValueError(f"--metric must be miou or iou:CLASS with CLASS one of "
                         f"{', '.join(row['iou'])}; found {metric!r}")
    return row["iou"][name]


def summary_rows(runs: dict[str, dict[str, Any]], metric: str, within: list[float],
                 targets: list[float]) -> tuple[list[str], list[list[Any]]]:
    """The table: per run, steps and minutes done, best ``metric`` within each mark (with the
    lowest class IoU of that validation) and the first minute at each target."""
    header = ["run", "validations", "last step", "minutes"]
    header += [f"best {metric} <= {mark:g} min (lowest class IoU)" for mark in within]
    header += [f"minutes to {metric} >= {target:g}" for target in targets]
    table = []
    for label, run in runs.items():
        rows = run["rows"]
        cells: list[Any] = [label, len(rows), rows[-1]["step"], rows[-1]["minutes"]]
        for mark in within:
            inside = [row for row in rows if row["minutes"] <= mark]
            if not inside:
                cells.append(None)
                continue
            best = max(inside, key=lambda row: value_of(row, metric))
            present = [value for value in best["iou"].values() if not math.isnan(value)]
            lowest = min(present, default=math.nan)       # an absent class is not a 0
            cells.append(f"{value_of(best, metric):.3f} at {best['minutes']:.1f} min "
                         f"({lowest:.3f})")
        for target in targets:
            reached = next((row for row in rows if value_of(row, metric) >= target), None)
            cells.append(None if reached is None else
                         f"{reached['minutes']:.1f} (step {reached['step']})")
        table.append(cells)
    return header, table


def plot(runs: dict[str, dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """``metric`` against minutes on the training clock, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    for label, run in runs.items():
        rows = run["rows"]
        axis.plot([row["minutes"] for row in rows], [value_of(row, metric) for row in rows],
                  marker=".", label=label)
    axis.set_xlabel("minutes of training on one CPU thread (validation included)")
    axis.set_ylabel(f"validation {metric}")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, each FOLDER or FOLDER=LABEL")
    parser.add_argument("--metric", default="miou", help="miou or iou:CLASS (default: miou)")
    parser.add_argument("--within", type=numbers, default=[], help="minute marks, e.g. 60,120")
    parser.add_argument("--target", type=numbers, default=[], help="metric values, e.g. 0.4")
    parser.add_argument("--out", type=Path, required=True, help="the chart (.png)")
    parser.add_argument("--title", default="validation score against training time")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        folder, _, label = spec.partition("=")
        runs[label or Path(folder).name] = read_run(Path(folder))
    for run in runs.values():
        value_of(run["rows"][0], args.metric)            # an unknown metric fails early
    header, table = summary_rows(runs, args.metric, args.within, args.target)
    plot(runs, args.metric, args.out, args.title)
    print(markdown_table(header, [[fmt(cell) for cell in row] for row in table]))
    print(f"\nchart: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
