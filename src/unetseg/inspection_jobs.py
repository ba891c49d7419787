"""The jobs behind ``unetseg inspect``: inspect folders of predicted and true masks, or
predict a dataset split with a checkpoint (through `unetseg.infer`) and inspect that."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
import numpy as np

from .data.folder import DatasetSpec, match_pairs
from .data.io import read_image, read_mask
from .evaluation import image_name, raw_sample
from .inspection_report import write_inspection_report
from .inspector import Inspection, Inspector

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
    path: str | Path, out: str | Path, data_overrides: dict | None = None, split: str = "val",
    tile: int | None = None, device: str | None = None,
) -> Inspection:
    """Predict every image of a dataset split with `unetseg.infer.predict` and inspect it."""
    from .checkpoint import load_checkpoint
    from .config import RunConfig
    from .data.sources import build_eval_dataset
    from .infer import load_segmenter, predict
    from .runtime import pick_device

    meta = load_checkpoint(path).metadata
    run = RunConfig.from_dict(meta["run_config"])
    norm = meta["normalisation"]
    dataset, spec = build_eval_dataset(replace(run.data, **(data_overrides or {})),
                                       tuple(norm["mean"]), tuple(norm["std"]), split)
    segmenter = load_segmenter(path, pick_device(device))
    inspector = Inspector(meta["class_names"], meta["ignore_index"])
    predictions: list[np.ndarray] = []
    for index in range(len(dataset)):
        image = raw_sample(dataset, index)
        truth = dataset[index][1].numpy()
        mask = predict(segmenter, image, tile=tile, precision="auto").mask
        inspector.add(mask, truth, image_name(dataset, index))
        predictions.append(mask)
    inspection = inspector.result()

    def samples(index: int):
        return raw_sample(dataset, index), dataset[index][1].numpy(), predictions[index]

    write_inspection_report(inspection, out, meta["colours"], samples,
                            title=f"Mask inspection: {Path(path).name}",
                            ignore_index=meta["ignore_index"])
    return inspection
