"""matplotlib on first use, and the chart a training run draws: its curves.

matplotlib is imported on first use with the Agg backend (no display needed), so importing
unetseg never pays for it; `unetseg.report.figures` draws the reports' charts the same way.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from .files import atomic_write_bytes

__all__ = ["pyplot", "figure_bytes", "plot_curves"]


def figure_bytes(figure) -> bytes:
    """``figure`` as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], class_names: Sequence[str], path: str | Path) -> None:
    """Loss (train and validation), mIoU, and per-class IoU against the epoch."""
    plt = pyplot()
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
    atomic_write_bytes(path, figure_bytes(figure))
