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

from ..checkpoint import load_model
from ..config import PRESET_SOURCES, DataConfig, RunConfig, same_path
from ..data.build import build_eval_dataset, has_test_folder
from ..data.protocol import SegmentationDataset
from ..data.spec import DatasetSpec
from ..evaluation import Evaluation, evaluate, validation_loader
from ..inspector import Inspection, Inspector
from ..losses import make_loss
from ..metrics import labels_from_logits
from ..precision import replayed_precision
from ..runtime import Runtime, pick_device

__all__ = ["ScoredSplit", "score_split", "data_with_overrides", "load_split", "LoadedSplit"]

# The settings that say where a source's files are, or what synthetic data draws: reset when
# another source is asked for (a folder refuses the drawing settings rather than ignore them).
SOURCE_SETTINGS = ("root", "val", "spec", "classes", "train_list", "val_list", "train_samples",
                   "val_samples", "foreground")


@dataclass
class ScoredSplit:
    """A checkpoint's scores on one split, and what a report needs to show its images."""

    evaluation: Evaluation
    inspection: Inspection | None
    split: str                       # the split scored: train, val, all or test
    class_names: list[str]
    colours: list[tuple[int, int, int]]
    ignore_index: int
    dataset: SegmentationDataset
    model: torch.nn.Module
    runtime: Runtime
    calibration: dict | None = None  # the checkpoint's temperature fit (None: never fitted)

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
                labels_from_logits(logits)[0].cpu().numpy())


def data_with_overrides(data: DataConfig, overrides: dict[str, Any] | None) -> DataConfig:
    """The run's data settings with ``overrides`` (None values ignored). Asking for another
    source starts its file settings afresh instead of carrying the old source's over."""
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not same_path(changes.get("source", data.source), data.source):
        defaults = {f.name: f.default for f in fields(DataConfig)}
        changes = {**{name: defaults[name] for name in SOURCE_SETTINGS}, **changes}
    return replace(data, **changes)


def _default_split(trained: DataConfig, scored: DataConfig) -> str:
    """The run's validation images; another folder is a test set, scored whole, and a folder
    laid out as train/ and test/ is scored on its test/."""
    if has_test_folder(scored) and not same_path(scored.source, trained.source):
        return "test"
    other_folder = not same_path(scored.source, trained.source) and not (
        scored.synthetic or scored.source in PRESET_SOURCES)
    return "all" if other_folder else "val"


class _Relabelled:
    """A dataset whose masks are turned from its own class order into the checkpoint's
    (``table[data label] = checkpoint label``; the data's ignore label becomes the
    checkpoint's). Everything else is the wrapped dataset's."""

    def __init__(self, dataset: SegmentationDataset, table: dict[int, int]) -> None:
        self.dataset, self.table = dataset, table

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]
        relabelled = mask.clone()
        for label, target in self.table.items():
            relabelled[mask == label] = target
        return image, relabelled

    def __getattr__(self, name: str):
        return getattr(self.dataset, name)


def _in_checkpoint_labels(dataset: SegmentationDataset, spec, class_names: list[str],
                          ignore_index: int, checkpoint) -> SegmentationDataset:
    """``dataset`` with labels that mean the checkpoint's classes, matched by name."""
    data_names = list(spec.class_names)
    if data_names == class_names and spec.ignore_index == ignore_index:
        return dataset
    if sorted(data_names) != sorted(class_names) or len(set(data_names)) != len(data_names):
        raise ValueError(f"{checkpoint} predicts the classes {', '.join(class_names)} but the "
                         f"data names {', '.join(data_names)}; expected the same names (in any "
                         f"order)")
    table = {label: class_names.index(name) for label, name in enumerate(data_names)}
    table[spec.ignore_index] = ignore_index
    return _Relabelled(dataset, table)


@dataclass
class LoadedSplit:
    """A checkpoint's model on the device it runs on, and one split of data read as its run
    read its masks, in its class order."""

    model: torch.nn.Module
    meta: dict[str, Any]
    run: RunConfig
    split: str
    dataset: SegmentationDataset
    runtime: Runtime
    class_names: list[str]
    ignore_index: int

    def loader(self):
        return validation_loader(self.dataset, self.run.data.batch_size, self.run.data.workers)


def load_split(checkpoint: str | Path, split: str | None = None,
               data: dict[str, Any] | None = None, device: str | None = None) -> LoadedSplit:
    """The model of ``checkpoint`` and ``split`` of its own data, or of the data ``data``
    overrides, as `score_split` reads them (see there)."""
    model, meta = load_model(checkpoint, "cpu")
    run = RunConfig.from_dict(meta["run_config"], str(checkpoint))
    norm = meta["normalisation"]
    data_config = data_with_overrides(run.data, data)
    class_names, ignore_index = list(meta["class_names"]), meta["ignore_index"]
    split = split or _default_split(run.data, data_config)
    recorded = meta.get("mask_spec")           # how the run read its masks (newer runs)
    dataset, spec = build_eval_dataset(
        data_config, tuple(norm["mean"]), tuple(norm["std"]), split, class_names=class_names,
        recorded=None if recorded is None else DatasetSpec.from_dict(recorded, str(checkpoint)))
    dataset = _in_checkpoint_labels(dataset, spec, class_names, ignore_index, checkpoint)
    chosen = pick_device(device)
    runtime = Runtime(chosen, replayed_precision(meta.get("precision", "fp32"), chosen),
                      bool(meta.get("channels_last", False)))
    return LoadedSplit(runtime.model(model), meta, run, split, dataset, runtime, class_names,
                       ignore_index)


def score_split(
    checkpoint: str | Path, split: str | None = None, data: dict[str, Any] | None = None,
    device: str | None = None, inspect: bool = True, progress: bool = False,
) -> ScoredSplit:
    """Score ``checkpoint`` on ``split`` of its own data, or of the data ``data`` overrides
    (keys of `DataConfig`: source, root, val, spec, ...), as training's validation did.

    ``split`` defaults to the run's validation split, and to the whole folder when ``data``
    names another folder (a test set). Classes are matched by name: data whose classes are
    the checkpoint's in another order is relabelled; other names are refused. A folder without
    a dataset file takes the checkpoint's class names. With ``inspect``, the mask inspector
    also reads every (prediction, truth) pair.
    """
    loaded = load_split(checkpoint, split, data, device)
    meta, class_names, ignore_index = loaded.meta, loaded.class_names, loaded.ignore_index
    weights = meta.get("class_weights")
    loss_fn = make_loss(loaded.run.train.loss, ignore_index, loaded.run.train.dice_weight,
                        None if weights is None else torch.tensor(weights)
                        ).to(loaded.runtime.device)
    inspector = Inspector(class_names, ignore_index) if inspect else None
    # Calibration is measured as the checkpoint's temperature gives it (1: not fitted).
    temperature = (meta.get("calibration") or {}).get("temperature", 1.0)
    evaluation = evaluate(loaded.model, loaded.loader(), len(class_names), loss_fn,
                          loaded.runtime, ignore_index, inspector, progress, temperature)
    return ScoredSplit(evaluation, inspector.result() if inspector else None, loaded.split,
                       class_names, [tuple(c) for c in meta["colours"]], ignore_index,
                       loaded.dataset, loaded.model, loaded.runtime, meta.get("calibration"))
