"""Scoring a model over a whole dataset, and the `unetseg evaluate` job on a checkpoint.

Scores come from one confusion matrix accumulated over every batch (never an average of
per-batch IoUs) plus the boundary F1 of every image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import load_model
from .files import atomic_write_text, json_ready
from .config import RunConfig
from .data.sources import build_eval_dataset
from .inspection_report import write_inspection_report
from .inspector import Inspection, Inspector
from .losses import compute_loss
from .metrics import BoundaryF1, ConfusionMatrix, Scores
from .report import plot_confusion
from .runtime import autocast, pick_device, pick_precision

__all__ = ["Evaluation", "CheckpointEvaluation", "evaluate", "evaluate_checkpoint",
           "predict_labels", "prepare_images", "image_name", "raw_sample", "sample_source"]


@dataclass
class Evaluation:
    """Scores of a model over a dataset."""

    scores: Scores
    boundary_f1: np.ndarray          # (C,) per-class BF score, NaN where undefined
    loss: float                      # mean loss over batches
    pixel_share: np.ndarray          # (C,) share of counted true pixels per class

    def rows(self, class_names) -> list[dict]:
        """Per-class rows: iou, dice, precision, recall, bf1, share."""
        rows = self.scores.per_class(list(class_names))
        for row, bf1, share in zip(rows, self.boundary_f1, self.pixel_share):
            row.update(bf1=float(bf1), share=float(share))
        return rows

    @property
    def mean_boundary_f1(self) -> float:
        """Mean BF score over the classes where it is defined (NaN if none)."""
        defined = self.boundary_f1[~np.isnan(self.boundary_f1)]
        return float(defined.mean()) if defined.size else float("nan")

    def to_dict(self, class_names) -> dict:
        return {"miou": self.scores.miou, "mdice": self.scores.mdice,
                "pixel_accuracy": self.scores.pixel_accuracy, "loss": self.loss,
                "mean_boundary_f1": self.mean_boundary_f1,
                "classes": self.rows(class_names),
                "confusion_matrix": self.scores.matrix.tolist()}


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class indices (N, H, W): argmax over classes, or logit > 0 for a single binary logit."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def prepare_images(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, loader, num_classes: int, ignore_index: int,
    device: torch.device | str = "cpu", precision: str = "fp32", loss: str = "ce_dice",
    channels_last: bool = False, progress: bool = False, inspector: Inspector | None = None,
) -> Evaluation:
    """Score ``model`` over every batch of ``loader`` (images, masks) at the dataset level;
    with an ``inspector``, also fold every image's (prediction, truth) into it."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index, device)
    boundary = BoundaryF1(num_classes, ignore_index=ignore_index)
    total_loss, batches = 0.0, 0
    for images, masks in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        masks = masks.to(device)
        with autocast(device, precision):
            logits = model(prepare_images(images, device, channels_last))
        total_loss += compute_loss(loss, logits.float(), masks, ignore_index).item()
        batches += 1
        labels = predict_labels(logits)
        matrix.update(labels, masks)
        boundary.update(labels, masks)
        if inspector is not None:
            for pred, truth in zip(labels.cpu().numpy(), masks.cpu().numpy()):
                inspector.add(pred, truth, image_name(loader.dataset,
                                                        len(inspector.image_names)))
    model.train(was_training)
    # Under DDP each rank scored its own shard: sum the counts (no-ops in a single process).
    matrix.all_reduce()
    boundary.all_reduce()
    loss_totals = torch.tensor([total_loss, batches], dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(loss_totals)
    total_loss, batches = loss_totals.tolist()
    scores = matrix.compute()
    truth = scores.matrix.sum(1).double()
    share = (truth / truth.sum().clamp_min(1)).numpy()
    return Evaluation(scores, boundary.compute(), total_loss / max(batches, 1), share)


def image_name(dataset, index: int) -> str:
    """A folder dataset's image file name, else ``sample i``."""
    pairs = getattr(dataset, "pairs", None)
    return pairs[index][0].name if pairs is not None else f"sample {index}"


def raw_sample(dataset, index: int) -> np.ndarray:
    """Image ``index`` of a dataset before normalisation, (H, W, C) in [0, 1]."""
    if hasattr(dataset, "load"):                       # a folder dataset
        return dataset.load(index)[0]
    return dataset.draw(index)[0].transpose(1, 2, 0)   # synthetic: (C, H, W)


def sample_source(model, dataset, device, precision: str, channels_last: bool):
    """For the report's worst images: image ``i`` as (raw image, truth, prediction)."""
    def sample(index: int):
        image, truth = dataset[index]
        with torch.inference_mode(), autocast(device, precision):
            logits = model(prepare_images(image[None], device, channels_last))
        return raw_sample(dataset, index), truth.numpy(), predict_labels(logits)[0].cpu().numpy()
    return sample


@dataclass
class CheckpointEvaluation:
    evaluation: Evaluation
    class_names: list[str]
    inspection: Inspection


def evaluate_checkpoint(
    path: str | Path, out: str | Path, split: str = "val", data_overrides: dict | None = None,
    device: str | None = None,
) -> CheckpointEvaluation:
    """Score a checkpoint on its own data (or ``data_overrides``) with its normalisation,
    precision and memory layout, so it reproduces the validation scores recorded in training.
    Writes ``evaluation.json``, ``confusion.png`` and the inspector's ``report.json`` and
    ``report.html`` into ``out``."""
    torch_device = pick_device(device)
    model, meta = load_model(path, torch_device)
    run = RunConfig.from_dict(meta["run_config"])
    data_config = replace(run.data, **(data_overrides or {}))
    norm = meta["normalisation"]
    dataset, spec = build_eval_dataset(data_config, tuple(norm["mean"]), tuple(norm["std"]),
                                       split)
    class_names = list(meta["class_names"])
    if spec.num_classes != len(class_names):
        raise ValueError(f"{path} predicts {len(class_names)} classes ({', '.join(class_names)}) "
                         f"but the data has {spec.num_classes}")
    precision = meta.get("precision", "fp32")
    if torch_device.type != "cuda" and precision == "fp16":
        precision = "fp32"
    precision = pick_precision(precision, torch_device)
    channels_last = bool(meta.get("channels_last", False))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    sizes = getattr(dataset, "sizes", {None})
    loader = DataLoader(dataset, batch_size=run.data.batch_size if len(sizes) == 1 else 1,
                        num_workers=run.data.workers)
    inspector = Inspector(class_names, meta["ignore_index"])
    evaluation = evaluate(model, loader, len(class_names), meta["ignore_index"], torch_device,
                          precision, run.train.loss, channels_last, inspector=inspector)
    inspection = inspector.result()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json",
                      json.dumps(json_ready(evaluation.to_dict(class_names)), indent=2))
    plot_confusion(evaluation.scores.matrix.numpy(), class_names, out / "confusion.png")
    write_inspection_report(inspection, out, meta["colours"],
                            sample_source(model, dataset, torch_device, precision, channels_last),
                            title=f"Mask inspection: {Path(path).name}",
                            ignore_index=meta["ignore_index"])
    return CheckpointEvaluation(evaluation, class_names, inspection)
