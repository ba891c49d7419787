"""The jobs behind ``unetseg inspect``: inspect folders of predicted and true masks, or score
a dataset split with a checkpoint (through `score_split`, as ``unetseg evaluate`` does) and
inspect that.

Predicted masks are read as the class indices they hold (what ``unetseg predict`` writes),
except that two-class predictions holding only 0 and one other value (saved for viewing, as
0/255) read that value as class 1, and say so; a value that is no class is refused, naming
the file. The dataset file's value remap and RGB colours describe how the *true* masks are
stored, so they apply to those only, by the rule training reads masks by
(`unetseg.data.build.mask_reading`: 0/255 masks of two classes read 255 as class 1, and say
so). The output policy (`unetseg.outputs`): refuse, unless ``overwrite``, to replace a report
in the output folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import read_metadata
from ..data.build import LABEL_KEYS, binary_value, mask_reading
from ..data.folder import DatasetSpec
from ..data.io import IMAGE_SUFFIXES, images_by_stem, list_images, read_image, read_mask
from ..data.spec import read_spec_file
from ..inspector import Inspection, Inspector
from ..outputs import claim_folder
from ..report.inspection import REPORT_FILES, write_inspection_report
from .scoring import score_split

__all__ = ["inspect_folders", "inspect_checkpoint", "class_spec"]

log = logging.getLogger(__name__)


def class_spec(classes: str | None, num_labels: int | None = None) -> tuple[DatasetSpec, bool]:
    """Class names from a dataset file (YAML/JSON), a comma-separated list, or, with neither,
    ``class 0 .. class N-1`` for the ``num_labels`` found in the masks; and whether a dataset
    file declares what is ignored or remapped (then nothing is decided from the masks)."""
    if classes and Path(classes).is_file():
        values = read_spec_file(classes)
        return (DatasetSpec.from_dict(values, classes),
                any(key in values for key in LABEL_KEYS))
    if classes:
        return DatasetSpec(class_names=tuple(name.strip() for name in classes.split(","))), False
    if not num_labels:
        raise ValueError("give --classes (a dataset file or a comma-separated list of names)")
    return DatasetSpec(class_names=tuple(f"class {i}" for i in range(num_labels))), False


# --- folders of masks ---------------------------------------------------------------------------

def _mask_files(folder: Path, flag: str, predictions: bool) -> dict[str, Path]:
    """The mask images in ``folder``, by stem.

    Files that are not images (``summary.json``, ``*_probs.npy``, notes) are left out; so, in
    a folder of ``predictions``, is ``NAME_overlay.png`` beside a ``NAME.png``: ``unetseg
    predict`` writes it for people to look at, and it is no mask.
    """
    if not folder.is_dir():
        raise ValueError(f"{flag} {folder}: expected a folder of masks")
    files = images_by_stem(folder)[0]
    if predictions:
        files = {stem: path for stem, path in files.items()
                 if not (stem.endswith("_overlay") and stem[:-len("_overlay")] in files)}
    if not files:
        raise ValueError(f"{flag} {folder}: no mask images found (expected one of "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return files


def _pair_masks(pred_dir: Path, truth_dir: Path) -> list[tuple[Path, Path]]:
    """(prediction, truth) pairs matched by stem, in stem order; a prediction without a true
    mask, or the reverse, is an error (a missing one would silently change the scores)."""
    preds = _mask_files(pred_dir, "--pred", predictions=True)
    truths = _mask_files(truth_dir, "--truth", predictions=False)
    parts = []
    if set(preds) - set(truths):
        parts.append(f"predictions without a true mask in --truth {truth_dir}: "
                     f"{sorted(set(preds) - set(truths))[:5]}")
    if set(truths) - set(preds):
        parts.append(f"true masks without a prediction in --pred {pred_dir}: "
                     f"{sorted(set(truths) - set(preds))[:5]}")
    if parts:
        raise ValueError("; ".join(parts))
    return [(preds[stem], truths[stem]) for stem in sorted(preds)]


def _read_prediction(path: Path) -> np.ndarray:
    """A predicted mask as int64 (H, W) class indices, read as stored: no remap, no colours."""
    try:
        return read_mask(path)
    except ValueError as error:
        raise ValueError(f"{error}. --pred masks are read as class indices (as `unetseg "
                         f"predict` writes them); the dataset file's colours and remap apply "
                         f"to the --truth masks only") from error


def _prediction_remap(pairs: list[tuple[Path, Path]], class_names: tuple[str, ...],
                      pred_dir: Path) -> dict[int, int]:
    """How the predicted masks' stored values become classes: as stored, or ``{v: 1}`` for
    two-class predictions holding only 0 and v > 1. ValueError naming the first file with a
    value that is then no class."""
    first_file: dict[int, Path] = {}
    for pred_path, _ in pairs:
        for value in np.unique(_read_prediction(pred_path)).tolist():
            first_file.setdefault(value, pred_path)
    stored, c = sorted(first_file), len(class_names)
    remap = {}
    v = binary_value(c, stored)
    if v is not None:
        remap = {v: 1}
        log.info(f"{pred_dir}: predicted masks hold only the values 0 and {v}: {v} is read "
                 f"as class 1 ({class_names[1]})")
    bad = [value for value in stored if not 0 <= remap.get(value, value) < c]
    if bad:
        raise ValueError(f"{first_file[bad[0]]}: predicted value {bad[0]} is not a class "
                         f"0..{c - 1} ({', '.join(class_names)}); --pred masks hold class "
                         f"indices, as `unetseg predict` writes them (values found in --pred: "
                         f"{', '.join(map(str, stored[:10]))})")
    return remap


def _found_labels(pairs: list[tuple[Path, Path]], truth_values: dict[int, int]) -> int:
    """The number of classes when no --classes names them: 2 for true masks of 0 and one other
    value (0/255: what training reads as two classes), else 1 + the largest value in the
    masks other than 255 (the default ignore label)."""
    stored = sorted(truth_values)
    if len(stored) == 2 and stored[0] == 0 and stored[1] > 1:
        return 2
    labels = set(stored)
    for pred_path, _ in pairs:
        labels.update(np.unique(_read_prediction(pred_path)).tolist())
    return max(label for label in labels if label != 255) + 1


def _stored_values(spec: DatasetSpec, paths: list[Path]) -> dict[int, int]:
    """Pixels per stored value over the true masks, decoded as ``spec`` stores them."""
    total: dict[int, int] = {}
    for path in paths:
        values, counts = np.unique(spec.decode_mask(path), return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            total[value] = total.get(value, 0) + count
    return total


def inspect_folders(
    pred_dir: str | Path, truth_dir: str | Path, out: str | Path, classes: str | None = None,
    images_dir: str | Path | None = None, overwrite: bool = False,
) -> Inspection:
    """Inspect predicted masks against true ones, matched by file stem; with ``images_dir``
    (images matched by stem) the report also shows the worst images.

    ``pred_dir`` may be a ``unetseg predict`` output folder as it is: only its masks are read.
    Raises ValueError before reading any mask when ``out`` holds a report and ``overwrite``
    is off.
    """
    out = claim_folder(out, REPORT_FILES, overwrite)
    pairs = _pair_masks(Path(pred_dir), Path(truth_dir))
    truths = [truth for _, truth in pairs]
    if classes:
        spec, declared = class_spec(classes)
    else:                                              # name the labels found
        spec, declared = class_spec(None, _found_labels(pairs, _stored_values(
            DatasetSpec(class_names=("class 0", "class 1")), truths)))
    spec, notices = mask_reading(spec, declared, classes or "the labels found",
                                 _stored_values(spec, truths), [(t, t) for t in truths])
    for notice in notices:                             # as training says them
        log.info(notice)
    predicted = DatasetSpec(class_names=spec.class_names, ignore_index=spec.ignore_index,
                            remap=_prediction_remap(pairs, spec.class_names, Path(pred_dir)))

    def read_pair(index: int) -> tuple[np.ndarray, np.ndarray]:
        pred_path, truth_path = pairs[index]
        # Truth as stored, decoded as training reads it (colours, void colour, remap).
        pred = predicted.apply_remap(_read_prediction(pred_path))
        truth = spec.apply_remap(spec.decode_mask(truth_path))
        if pred.shape != truth.shape:
            raise ValueError(f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but {truth_path} "
                             f"is {truth.shape[1]}x{truth.shape[0]}; expected the same size")
        return pred, truth

    inspector = Inspector(spec.class_names, spec.ignore_index)
    for index, (_, truth_path) in enumerate(pairs):
        inspector.add(*read_pair(index), truth_path.name)
    inspection = inspector.result()
    images = _images_by_stem(images_dir) if images_dir is not None else None

    def sample(index: int):
        image = images.get(pairs[index][1].stem)
        if image is None:
            return None
        pred, truth = read_pair(index)
        return read_image(image), truth, pred
    write_inspection_report(inspection, out, spec.colours, sample if images else None,
                            title=f"Mask inspection: {Path(pred_dir).name} vs "
                                  f"{Path(truth_dir).name}", ignore_index=spec.ignore_index)
    return inspection


def _images_by_stem(folder: str | Path) -> dict[str, Path]:
    """The --images folder's images by stem, for the worst-images section; of two with one
    stem the last is shown."""
    if not Path(folder).is_dir():
        raise ValueError(f"--images {folder}: expected a folder of images")
    return {path.stem: path for path in list_images(folder).images}


# --- a checkpoint on a dataset split ------------------------------------------------------------

def inspect_checkpoint(
    checkpoint: str | Path, out: str | Path, split: str | None = None,
    data: dict[str, Any] | None = None, device: str | None = None, progress: bool = False,
    overwrite: bool = False,
) -> Inspection:
    """Score a dataset split with ``checkpoint`` through `score_split` (the path ``unetseg
    evaluate`` takes; ``split`` None: its default) and write the inspector's report.

    Raises ValueError before scoring when ``out`` holds a report and ``overwrite`` is off.
    """
    out = claim_folder(out, REPORT_FILES, overwrite)
    scored = score_split(checkpoint, split, data, device, inspect=True, progress=progress)
    write_inspection_report(scored.inspection, out, scored.colours, scored.sample,
                            title=f"Mask inspection: {Path(checkpoint).name}",
                            ignore_index=scored.ignore_index,
                            health=training_health(read_metadata(checkpoint)),
                            calibration=scored.evaluation.calibration)
    return scored.inspection


def training_health(metadata: dict[str, Any]) -> list[dict] | None:
    """The health monitor's findings over a checkpoint's training history, in order, up to
    the epoch it was saved at (best.safetensors: its best epoch); None for a checkpoint
    without a history that the monitor read (an exported or an older one)."""
    history = (metadata.get("training") or {}).get("history") or []
    if not any("health" in row for row in history):
        return None
    return [event for row in history for event in row.get("health", [])]
