"""Scoring a checkpoint on a dataset split: the one path behind evaluate, inspect and the demo.

The checkpoint runs exactly as it ran in training's validation: the run's own data settings
and normalisation, the precision and memory layout it recorded, whole images in batches
(images of several sizes one at a time), and the run's own loss function. `unetseg evaluate`
therefore reproduces the validation scores in metrics.jsonl, and `unetseg inspect` sees the
same confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..checkpoint import load_model
from ..config import DataConfig, RunConfig
from ..data.protocol import SegmentationDataset
from ..data.sources import build_eval_dataset
from ..evaluation import Evaluation, evaluate, predict_labels
from ..inspector import Inspection, Inspector
from ..losses import make_loss
from ..runtime import Runtime

__all__ = ["ScoredSplit", "score_split", "data_with_overrides"]

# The settings that say where a source's files are: reset when another source is asked for.
SOURCE_SETTINGS = ("root", "val", "spec", "classes", "train_list", "val_list")


@dataclass
class ScoredSplit:
    """A checkpoint's scores on one split, and what a report needs to show its images."""

    evaluation: Evaluation
    inspection: Inspection | None
    class_names: list[str]
    colours: list[tuple[int, int, int]]
    ignore_index: int
    dataset: SegmentationDataset
    model: torch.nn.Module
    runtime: Runtime

    @property
    def images(self) -> int:
        return len(self.dataset)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index`` as (raw image (H, W, C) in [0, 1], truth, prediction), predicted
        the same way as when it was scored (for the report's worst images)."""
        image, truth = self.dataset[index]
        with torch.inference_mode(), self.runtime.autocast():
            logits = self.model(self.runtime.images(image[None]))
        return (self.dataset.raw(index), truth.numpy(),
                predict_labels(logits)[0].cpu().numpy())


def data_with_overrides(data: DataConfig, overrides: dict[str, Any] | None) -> DataConfig:
    """The run's data settings with ``overrides`` (None values ignored). Asking for another
    source starts its file settings afresh instead of carrying the old source's over."""
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if changes.get("source", data.source) != data.source:
        defaults = {f.name: f.default for f in fields(DataConfig)}
        changes = {**{name: defaults[name] for name in SOURCE_SETTINGS}, **changes}
    return replace(data, **changes)


def score_split(
    checkpoint: str | Path, split: str = "val", data: dict[str, Any] | None = None,
    device: str | None = None, inspect: bool = True, progress: bool = False,
) -> ScoredSplit:
    """Score ``checkpoint`` on ``split`` of its own data, or of the data ``data`` overrides
    (keys of `DataConfig`: source, root, val, spec, ...), as training's validation did.

    With ``inspect``, the mask inspector also reads every (prediction, truth) pair.
    Raises ValueError when the data has another number of classes than the checkpoint.
    """
    model, meta = load_model(checkpoint, "cpu")
    run = RunConfig.from_dict(meta["run_config"], str(checkpoint))
    norm = meta["normalisation"]
    dataset, spec = build_eval_dataset(data_with_overrides(run.data, data),
                                       tuple(norm["mean"]), tuple(norm["std"]), split)
    class_names, ignore_index = list(meta["class_names"]), meta["ignore_index"]
    if spec.num_classes != len(class_names):
        raise ValueError(f"{checkpoint} predicts {len(class_names)} classes "
                         f"({', '.join(class_names)}) but the data has {spec.num_classes} "
                         f"({', '.join(spec.class_names)})")
    precision = meta.get("precision", "fp32")
    runtime = Runtime.resolve(device, precision, bool(meta.get("channels_last", False)))
    if runtime.device.type != "cuda" and precision == "fp16":
        runtime = replace(runtime, precision="fp32")       # fp16 autocast is CUDA-only
    model = runtime.model(model)
    weights = meta.get("class_weights")
    loss_fn = make_loss(run.train.loss, ignore_index, run.train.dice_weight,
                        None if weights is None else torch.tensor(weights)).to(runtime.device)
    loader = DataLoader(dataset, batch_size=run.data.batch_size if len(dataset.sizes) == 1
                        else 1, num_workers=run.data.workers)
    inspector = Inspector(class_names, ignore_index) if inspect else None
    evaluation = evaluate(model, loader, len(class_names), loss_fn, runtime, ignore_index,
                          inspector, progress)
    return ScoredSplit(evaluation, inspector.result() if inspector else None, class_names,
                       [tuple(c) for c in meta["colours"]], ignore_index, dataset, model,
                       runtime)
