"""The smoke demo: train a small U-Net on synthetic shapes and score it on held-out shapes.

This exercises the core end to end (model, CE + Dice loss, dataset-level metrics) in about a
minute on two CPU cores. It is deliberately a plain loop; the full training loop with
checkpoints, schedules and resume is `unetseg.train` (a later step of the project).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .data.synthetic import CLASS_NAMES, SyntheticShapes
from .losses import ce_dice_loss
from .metrics import BoundaryF1, ConfusionMatrix, Scores
from .model import UNet

__all__ = ["DemoResult", "run_demo", "format_table"]


@dataclass(frozen=True)
class DemoResult:
    scores: Scores
    boundary_f1: list[float]
    seconds: float


def run_demo(
    steps: int = 300, size: int = 64, base: int = 16, batch_size: int = 16,
    val_images: int = 64, seed: int = 0, log_every: int = 50,
) -> DemoResult:
    """Train ``steps`` AdamW steps on fresh synthetic batches, then evaluate on other seeds."""
    torch.manual_seed(seed)
    model = UNet(in_channels=3, num_classes=len(CLASS_NAMES), base=base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    train = DataLoader(SyntheticShapes(steps * batch_size, size, seed=seed),
                       batch_size=batch_size, shuffle=False)
    start = time.perf_counter()
    model.train()
    for step, (images, masks) in enumerate(train, start=1):
        loss, parts = ce_dice_loss(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step:4d}/{steps}  loss {loss.item():.4f}  "
                  f"ce {parts['ce']:.4f}  dice {parts['dice']:.4f}", flush=True)

    # Validation seeds never overlap training ones: the seed is part of every sample's key.
    val = DataLoader(SyntheticShapes(val_images, size, seed=seed + 1_000_000), batch_size=32)
    matrix = ConfusionMatrix(len(CLASS_NAMES))
    boundary = BoundaryF1(len(CLASS_NAMES))
    model.eval()
    with torch.inference_mode():
        for images, masks in val:
            pred = model(images).argmax(dim=1)
            matrix.update(pred, masks)
            boundary.update(pred, masks)
    return DemoResult(matrix.compute(), boundary.compute().tolist(),
                      time.perf_counter() - start)


def format_table(scores: Scores, boundary_f1: list[float], class_names: list[str]) -> str:
    """The per-class table the demo prints."""
    lines = [f"{'class':<12}{'IoU':>8}{'Dice':>8}{'prec':>8}{'recall':>8}{'BF1':>8}"]
    for row, bf1 in zip(scores.per_class(class_names), boundary_f1):
        lines.append(f"{row['class']:<12}{row['iou']:>8.3f}{row['dice']:>8.3f}"
                     f"{row['precision']:>8.3f}{row['recall']:>8.3f}{bf1:>8.3f}")
    lines.append(f"mIoU {scores.miou:.3f}   mDice {scores.mdice:.3f}   "
                 f"pixel accuracy {scores.pixel_accuracy:.3f}")
    return "\n".join(lines)
