"""The reports' charts, drawn with matplotlib: the confusion matrix and the inspector's bars.

matplotlib is imported on first use (`unetseg.charts.pyplot`), so importing unetseg never
pays for it. Charts are returned as PNG bytes or written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..charts import figure_bytes, pyplot
from ..files import atomic_write_bytes
from ..inspector import ERROR_TYPES, SIZE_BUCKETS

__all__ = ["plot_confusion", "confusion_figure", "iou_bars", "share_bars", "recall_bars",
           "breakdown_bars", "reliability_figure"]


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]):
    """Row-normalised confusion matrix (share of each true class predicted as each class)."""
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(class_names)
    figure, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.55 * n))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row share)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    return figure


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """Write the row-normalised confusion matrix as a PNG."""
    atomic_write_bytes(path, figure_bytes(confusion_figure(matrix, class_names)))


def reliability_figure(calibrations: Sequence[tuple[str, object]]):
    """The reliability diagram: each bin's accuracy against its mean confidence, one line per
    (label, `unetseg.calibration.Calibration`), beside the diagonal a calibrated model
    follows; empty bins are left out, and the bars below show how many pixels each bin
    holds (of the first calibration)."""
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True,
                                         height_ratios=(3, 1), layout="constrained")
    top.plot([0, 1], [0, 1], color="#999", linestyle="--", label="calibrated")
    for (label, calibration), colour in zip(calibrations, ("#d84315", "#1565c0")):
        filled = calibration.counts > 0
        top.plot(calibration.confidence[filled], calibration.accuracy[filled], marker="o",
                 color=colour, label=f"{label} (ECE {calibration.ece:.3f})")
    top.set(ylabel="accuracy of the bin's pixels", xlim=(0, 1), ylim=(0, 1),
            title="reliability (15 confidence bins)")
    top.legend(loc="upper left")
    counts = calibrations[0][1].counts
    edges = np.linspace(0, 1, len(counts) + 1)
    bottom.bar(edges[:-1], counts / max(counts.sum(), 1), width=np.diff(edges), align="edge",
               color="#bbb", edgecolor="white")
    bottom.set(xlabel="confidence (top class probability)", ylabel="pixel share")
    return figure

# The error breakdown's colours, shared by the stacked bars and the report's error maps.
BAR_COLOURS = {"iou": "#4c9a2a", "fp_boundary": "#ffd54f", "fn_boundary": "#ffb300",
               "fp_extent": "#ff8a65", "fn_extent": "#e64a19", "fp_segment": "#f06292",
               "fn_segment": "#ad1457"}


# --- the inspector's charts: one row per class, worst at the top -------------------------------
# Legends sit below the axes, outside them: inside, they cover the bars of whichever classes
# fall in that corner, and how many rows a chart has depends on the dataset.

def _bar_chart(rows: list[dict], row_height: float):
    """A figure sized for ``rows`` whose layout keeps room for a legend outside the axes."""
    return pyplot().subplots(figsize=(8, row_height * len(rows) + 1.6), layout="constrained")


def _legend_below(figure, columns: int) -> None:
    figure.legend(loc="outside lower center", ncol=columns, fontsize="small", frameon=False)


def iou_bars(rows: list[dict], miou: float):
    figure, ax = _bar_chart(rows, 0.4)
    names = [r["class"] for r in rows]
    values = [0.0 if math.isnan(r["iou"]) else r["iou"] for r in rows]
    ax.barh(names, values, color=BAR_COLOURS["iou"])
    ax.axvline(miou, color="black", linestyle="--", label=f"mIoU {miou:.3f}")
    ax.set(xlim=(0, 1), xlabel="IoU", title="IoU per class (worst at the top)")
    ax.invert_yaxis()
    _legend_below(figure, 1)
    return figure


def share_bars(rows: list[dict]):
    figure, ax = _bar_chart(rows, 0.4)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["true_share"] for r in rows], height=0.4, label="truth")
    ax.barh(y + 0.2, [r["pred_share"] for r in rows], height=0.4, label="prediction")
    ax.set_yticks(y, [r["class"] for r in rows])
    ax.set(xlabel="share of pixels", title="class shares: truth vs prediction")
    ax.invert_yaxis()
    _legend_below(figure, 2)
    return figure


def recall_bars(rows: list[dict]):
    figure, ax = _bar_chart(rows, 0.45)
    y = np.arange(len(rows))
    for offset, bucket in zip((-0.27, 0.0, 0.27), SIZE_BUCKETS):
        values = [r["object_recall"][bucket] for r in rows]
        ax.barh(y + offset, [0 if math.isnan(v) else v for v in values], height=0.27,
                label=f"{bucket} objects")
    ax.set_yticks(y, [r["class"] for r in rows])
    ax.set(xlim=(0, 1), xlabel="object recall (no bar: no such objects or none found)",
           title="object recall by size")
    ax.invert_yaxis()
    _legend_below(figure, 3)
    return figure


def breakdown_bars(rows: list[dict]):
    figure, ax = _bar_chart(rows, 0.4)
    names = [r["class"] for r in rows]
    left = np.zeros(len(rows))
    for part in ("iou",) + ERROR_TYPES:
        values = np.array([0.0 if math.isnan(r["iou"]) else
                           (r["iou"] if part == "iou" else r["error_shares"][part])
                           for r in rows])
        ax.barh(names, values, left=left, color=BAR_COLOURS[part], label=part)
        left += values
    ax.set(xlim=(0, 1), xlabel="share of TP + FP + FN", title="IoU and error breakdown")
    ax.invert_yaxis()
    _legend_below(figure, 4)
    return figure
