"""Scoring a model over a whole dataset: `evaluate` reads batches and writes nothing.

Scores come from one confusion matrix accumulated over every batch (never an average of
per-batch IoUs) plus the boundary F1 of every image. The loss is the run's own loss function,
so the validation loss is the same objective as the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from . import distributed
from .calibration import Calibration, CalibrationBins, probabilities
from .data.protocol import SegmentationDataset
from .inspector import Inspector
from .metrics import BoundaryF1, ConfusionMatrix, Scores, labels_from_logits
from .progress import progress as show_progress
from .runtime import Runtime

__all__ = ["Evaluation", "evaluate", "validation_loader"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Evaluation:
    """Scores of a model over a dataset."""

    scores: Scores
    boundary_f1: np.ndarray          # (C,) per-class BF score, NaN where undefined
    loss: float                      # mean loss over batches; NaN without a loss function
    pixel_share: np.ndarray          # (C,) share of counted true pixels per class
    ignored_share: float = float("nan")   # share of the true pixels that are ignore_index
    # With a temperature: (T, ECE of the raw probabilities, ECE of those scaled by T).
    calibration: tuple[float, Calibration, Calibration] | None = None

    def rows(self, class_names) -> list[dict]:
        """Per-class rows: iou, dice, precision, recall, bf1, share, and with calibration
        measured, ece and ece_after (over the pixels predicted as the class, before and
        after temperature scaling)."""
        rows = self.scores.per_class(list(class_names))
        for row, bf1, share in zip(rows, self.boundary_f1, self.pixel_share):
            row.update(bf1=float(bf1), share=float(share))
        if self.calibration is not None:
            _, before, after = self.calibration
            for row, raw, scaled in zip(rows, before.class_ece, after.class_ece):
                row.update(ece=float(raw), ece_after=float(scaled))
        return rows

    @property
    def mean_boundary_f1(self) -> float:
        """Mean BF score over the classes where it is defined (NaN if none)."""
        defined = self.boundary_f1[~np.isnan(self.boundary_f1)]
        return float(defined.mean()) if defined.size else float("nan")

    def to_dict(self, class_names) -> dict:
        document = {"miou": self.scores.miou, "mdice": self.scores.mdice,
                    "pixel_accuracy": self.scores.pixel_accuracy, "loss": self.loss,
                    "mean_boundary_f1": self.mean_boundary_f1,
                    "ignored_share": self.ignored_share,
                    "classes": self.rows(class_names),
                    "confusion_matrix": self.scores.matrix.tolist()}
        if self.calibration is not None:
            temperature, before, after = self.calibration
            document["calibration"] = {"temperature": temperature,
                                       "before": before.to_dict(class_names),
                                       "after": after.to_dict(class_names)}
        return document


def validation_loader(dataset: SegmentationDataset, batch_size: int, workers: int = 0,
                      pin_memory: bool = False) -> DataLoader:
    """The loader every score is read through (training's validation, `score_split`, the
    experiments and the benchmarks): whole images in their order, ``batch_size`` at a time
    when they share one size, else one at a time (images of different sizes cannot share a
    batch). ``dataset`` may be a `torch.utils.data.Subset` of one (a rank's shard)."""
    whole = dataset.dataset if isinstance(dataset, Subset) else dataset
    # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG,
    # and validating would shift the training's random stream (a resumed run would differ).
    return DataLoader(dataset, batch_size=batch_size if len(whole.sizes) == 1 else 1,
                      num_workers=workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(0))


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, loader: Iterable, num_classes: int, loss_fn: LossFn | None = None,
    runtime: Runtime | None = None, ignore_index: int | None = 255,
    inspector: Inspector | None = None, progress: bool = False,
    temperature: float | None = None,
) -> Evaluation:
    """Score ``model`` over every batch of ``loader`` at the dataset level.

    Args:
        model: images (N, C, H, W) -> logits (N, num_classes or 1, H, W); put in eval mode for
            the loop and restored after.
        loader: batches of (images float32 (N, C, H, W), masks int64 (N, H, W)).
        num_classes: classes scored (2 for a single binary logit).
        loss_fn: the run's loss, ``loss_fn(logits, masks) -> scalar``; None leaves loss NaN.
        runtime: device, autocast precision and memory layout, as in training (default:
            the CPU in fp32).
        ignore_index: mask value that counts nowhere (None: every pixel counts).
        inspector: also fold every image's (prediction, truth) into it, named by
            ``loader.dataset.name(i)``.
        progress: show a bar in a terminal, else a line every tenth of the batches.
        temperature: also measure calibration (`unetseg.calibration`): the expected
            calibration error of the probabilities as they are and divided by this
            temperature (None: not measured, as in training's validation).

    Under DDP each rank scores its own shard and the counts are summed over ranks once, after
    the loop (a no-op in a single process).
    """
    runtime = runtime or Runtime()
    was_training = model.training
    model.eval()
    device = runtime.device
    # Inspecting, the inspector's own matrix and boundary F1 are the scores: each image is
    # measured once, and evaluation.json and the report cannot disagree.
    if inspector is None:
        matrix = ConfusionMatrix(num_classes, ignore_index, device)
        boundary = BoundaryF1(num_classes, ignore_index=ignore_index)
    else:
        matrix, boundary = inspector.matrix, inspector.boundary
    calibration = None if temperature is None else tuple(
        CalibrationBins(num_classes, ignore_index, device=device) for _ in range(2))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    pixels = torch.zeros(2, dtype=torch.float64, device=device)     # all, ignored
    batches = 0
    for images, masks in show_progress(loader, "evaluate", progress, unit="batch", leave=False):
        masks = masks.to(device)
        with runtime.autocast():
            logits = model(runtime.images(images))
        if loss_fn is not None:
            loss_sum += loss_fn(logits.float(), masks)
        pixels[0] += masks.numel()
        if ignore_index is not None:
            pixels[1] += (masks == ignore_index).sum()
        batches += 1
        labels = labels_from_logits(logits)
        if calibration is not None:
            calibration[0].update(probabilities(logits), masks)
            calibration[1].update(probabilities(logits, temperature), masks)
        if inspector is None:
            matrix.update(labels, masks)
            boundary.update(labels, masks)
            continue
        for pred, truth in zip(labels.cpu().numpy(), masks.cpu().numpy()):
            inspector.add(pred, truth, loader.dataset.name(len(inspector.image_names)))
    model.train(was_training)
    matrix.all_reduce()
    boundary.all_reduce()
    totals = distributed.all_sum_if_initialised(
        torch.cat([loss_sum.view(1), torch.tensor([float(batches)], dtype=torch.float64,
                                                   device=device), pixels]))
    loss = (totals[0] / totals[1]).item() if loss_fn is not None and totals[1] > 0 \
        else float("nan")
    scores = matrix.compute()
    truth = scores.matrix.sum(1).double()
    share = (truth / truth.sum().clamp_min(1)).numpy()
    ignored = (totals[3] / totals[2]).item() if totals[2] > 0 else float("nan")
    if calibration is not None:
        for bins in calibration:
            bins.all_reduce()
        calibration = (temperature, *(bins.compute() for bins in calibration))
    return Evaluation(scores, boundary.compute(), loss, share, ignored, calibration)
