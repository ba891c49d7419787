"""Pictures of results: training curves, confusion matrices, overlays, and the per-class table.

Plots use matplotlib's Agg backend (no display needed) and are written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write_bytes

__all__ = ["plot_curves", "plot_confusion", "overlay", "save_overlay_panel", "format_table",
           "colourise"]


def _figure_bytes(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], class_names: Sequence[str], path: str | Path) -> None:
    """Loss (train and validation), mIoU, and per-class IoU against the epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, (loss_ax, miou_ax, class_ax) = plt.subplots(1, 3, figsize=(15, 4))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], label="train")
    loss_ax.plot(epochs, [row["val_loss"] for row in history], label="validation")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    miou_ax.plot(epochs, [row["val_miou"] for row in history], marker="o")
    miou_ax.set(title="validation mIoU", xlabel="epoch", ylim=(0, 1))
    for c, name in enumerate(class_names):
        class_ax.plot(epochs, [row["val_iou"][c] for row in history], label=name)
    class_ax.set(title="validation IoU per class", xlabel="epoch", ylim=(0, 1))
    class_ax.legend(fontsize="small", ncol=2)
    atomic_write_bytes(path, _figure_bytes(figure))


def _confusion_figure(matrix: np.ndarray, class_names: Sequence[str]):
    """Row-normalised confusion matrix (share of each true class predicted as each class)."""
    plt = _pyplot()
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
    atomic_write_bytes(path, _figure_bytes(_confusion_figure(matrix, class_names)))


def colourise(mask: np.ndarray, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; labels outside the palette are black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = np.asarray(colours, dtype=np.uint8)
    return palette[np.clip(mask, 0, 255)]


def overlay(image: np.ndarray, mask: np.ndarray, colours, alpha: float = 0.45,
            rows: int = 512) -> np.ndarray:
    """uint8 (H, W, 3): the image ((H, W, C), uint8, uint16 or float in [0, 1]) blended with
    its class colours, ``rows`` rows at a time so a large image never needs a float copy."""
    palette = np.zeros((256, 3), dtype=np.float32)
    palette[: len(colours)] = np.asarray(colours, dtype=np.float32)
    scale = 255.0 / (255.0 if image.dtype == np.uint8 else
                     65535.0 if image.dtype == np.uint16 else 1.0)
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    for top in range(0, mask.shape[0], rows):
        part = image[top:top + rows].astype(np.float32) * scale
        if part.shape[-1] == 1:
            part = np.repeat(part, 3, axis=-1)
        blended = (1 - alpha) * part + alpha * palette[mask[top:top + rows]]
        out[top:top + rows] = blended.clip(0, 255).astype(np.uint8)
    return out


def save_overlay_panel(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                       colours: Sequence[Sequence[int]], path: str | Path,
                       min_height: int = 192) -> None:
    """One PNG, image | truth | prediction side by side (image in [0, 1], HWC); the masks are
    drawn in their class colours.

    Images shorter than ``min_height`` are enlarged by an integer factor with nearest
    neighbours, so a 64 x 64 sample stays readable and every pixel stays a sharp block.
    """
    from PIL import Image

    zoom = max(1, min_height // image.shape[0])
    image, truth, prediction = (np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1)
                                for a in (image, truth, prediction))
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    panel = np.concatenate([(rgb.clip(0, 1) * 255).astype(np.uint8), gap,
                            colourise(truth, colours), gap,
                            colourise(prediction, colours)], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(panel).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _cell(value: float) -> str:
    return "     -" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:6.3f}"


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    """A plain-text table of per-class rows (``class`` plus numeric ``columns``); NaN shows
    as ``-`` (the class is absent, so the score is undefined)."""
    width = max(12, *(len(str(row["class"])) + 2 for row in rows))
    lines = ["class".ljust(width) + "".join(f"{c:>10}" for c in columns)]
    for row in rows:
        lines.append(str(row["class"]).ljust(width)
                     + "".join(f"{_cell(row[c]):>10}" for c in columns))
    return "\n".join(lines)
