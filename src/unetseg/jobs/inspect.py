"""The jobs behind ``unetseg inspect``: inspect folders of predicted and true masks, or score
a dataset split with a checkpoint (through `score_split`, as ``unetseg evaluate`` does) and
inspect that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.folder import DatasetSpec, match_pairs
from ..data.io import read_image, read_mask
from ..files import check_output_folder
from ..inspector import Inspection, Inspector
from ..report.inspection import write_inspection_report
from .scoring import score_split

__all__ = ["inspect_folders", "inspect_checkpoint", "class_spec"]


def class_spec(classes: str | None, num_labels: int | None = None) -> DatasetSpec:
    """Class names from a dataset file (YAML/JSON), a comma-separated list, or, with neither,
    ``class 0 .. class N-1`` for the ``num_labels`` found in the masks."""
    if classes and Path(classes).is_file():
        return DatasetSpec.from_file(classes)
    if classes:
        return DatasetSpec(class_names=tuple(name.strip() for name in classes.split(",")))
    if not num_labels:
        raise ValueError("give --classes (a dataset file or a comma-separated list of names)")
    return DatasetSpec(class_names=tuple(f"class {i}" for i in range(num_labels)))


def inspect_folders(
    pred_dir: str | Path, truth_dir: str | Path, out: str | Path, classes: str | None = None,
    images_dir: str | Path | None = None,
) -> Inspection:
    """Inspect predicted masks against true ones, matched by file stem; with ``images_dir``
    (images matched by stem) the report also shows the worst images."""
    pairs = match_pairs(Path(pred_dir), Path(truth_dir))
    if classes:
        spec = class_spec(classes)
    else:                                    # name the classes after the labels found
        labels = set()
        for pair in pairs:
            for mask_path in pair:
                labels.update(np.unique(read_mask(mask_path)).tolist())
        spec = class_spec(None, max(label for label in labels if label != 255) + 1)
    colours = np.asarray(spec.colours)
    inspector = Inspector(spec.class_names, spec.ignore_index)
    masks = []
    for pred_path, truth_path in pairs:
        pred = spec.apply_remap(read_mask(pred_path, colours))
        truth = spec.apply_remap(read_mask(truth_path, colours))
        if pred.shape != truth.shape:
            raise ValueError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but {truth_path} "
                             f"is {truth.shape[1]}x{truth.shape[0]}; expected the same size")
        inspector.add(pred, truth, truth_path.name)
        masks.append((pred_path, truth_path))
    inspection = inspector.result()
    images = ({p.stem: p for p in Path(images_dir).iterdir() if p.is_file()}
              if images_dir is not None else None)

    def sample(index: int):
        pred_path, truth_path = masks[index]
        image = images.get(truth_path.stem)
        if image is None:
            return None
        return (read_image(image), spec.apply_remap(read_mask(truth_path, colours)),
                spec.apply_remap(read_mask(pred_path, colours)))
    write_inspection_report(inspection, out, spec.colours, sample if images else None,
                            title=f"Mask inspection: {Path(pred_dir).name} vs "
                                  f"{Path(truth_dir).name}", ignore_index=spec.ignore_index)
    return inspection


def inspect_checkpoint(
    checkpoint: str | Path, out: str | Path, split: str = "val",
    data: dict[str, Any] | None = None, device: str | None = None, progress: bool = False,
) -> Inspection:
    """Score a dataset split with ``checkpoint`` through `score_split` (the path ``unetseg
    evaluate`` takes) and write the inspector's report."""
    out = check_output_folder(out, "--out")
    scored = score_split(checkpoint, split, data, device, inspect=True, progress=progress)
    write_inspection_report(scored.inspection, out, scored.colours, scored.sample,
                            title=f"Mask inspection: {Path(checkpoint).name}",
                            ignore_index=scored.ignore_index)
    return scored.inspection
