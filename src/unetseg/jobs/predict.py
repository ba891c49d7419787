"""Predicting image files: the job behind ``unetseg predict``.

Inputs are files, folders (their images, not recursing) or glob patterns. For each image
``NAME`` it writes, into the output folder:

- ``NAME.png``: the mask as a palette PNG, pixel value = class index, shown in the class colours;
- ``NAME_overlay.png``: the image with translucent class colours;
- ``NAME_probs.npy`` (with ``probs``): float16 (C, H, W) class probabilities;

and ``summary.json`` gathers every image's size and class areas (merged with the entries of
earlier runs into the same folder). Existing outputs are not replaced unless ``overwrite``. An
image that cannot be read is reported by name and skipped; the others still finish.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data.io import IMAGE_SUFFIXES, no_pixel_limit, read_raw_image
from ..files import atomic_write_bytes, atomic_write_text, check_output_folder
from ..infer import predict
from ..report.images import overlay, palette_png, png_bytes

__all__ = ["expand_inputs", "output_paths", "PredictOptions", "PredictReport", "predict_files"]


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: the arguments of `unetseg.infer.predict`, plus what to write."""

    tile: int | None = 256
    overlap: float = 0.25
    blend: str = "gaussian"
    batch_size: int = 4
    tta: bool = False
    precision: str = "auto"
    probs: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)     # input path -> reason
    summary: dict[str, Any] = field(default_factory=dict)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Image paths from files, folders and glob patterns, in order, without duplicates. A
    name that matches nothing is an error, so a typo is not mistaken for an empty folder."""
    found: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(entry)) if Path(p).is_file()]
        if not matches:
            raise ValueError(f"{entry}: no such file, no images in that folder, or no match "
                             f"for the pattern")
        found.extend(matches)
    return list(dict.fromkeys(found))


def output_paths(image: Path, out_dir: Path, probs: bool) -> list[Path]:
    names = [f"{image.stem}.png", f"{image.stem}_overlay.png"]
    if probs:
        names.append(f"{image.stem}_probs.npy")
    return [out_dir / name for name in names]


def _save_probs(path: Path, probs_shape: tuple[int, ...]) -> tuple[np.ndarray, Path]:
    """A float16 .npy memory map in a temporary file beside ``path``: the probabilities of a
    large image go to disk as rows finish instead of filling memory."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float16, shape=probs_shape)
    return array, temporary


def _predict_one(predictor, path: Path, out_dir: Path, options: PredictOptions) -> dict:
    with no_pixel_limit():          # large scenes are what tiled prediction is for
        image = read_raw_image(path)
    height, width = image.shape[:2]
    mask_path, overlay_path, *probs_path = output_paths(path, out_dir, options.probs)
    probs_target, temporary = (_save_probs(probs_path[0], (predictor.num_classes, height, width))
                               if options.probs else (False, None))
    try:
        result = predict(predictor, image, tile=options.tile, overlap=options.overlap,
                         blend=options.blend, batch_size=options.batch_size, tta=options.tta,
                         precision=options.precision, probs=probs_target,
                         progress=options.progress)
        if temporary is not None:
            probs_target.flush()
            del probs_target
            os.replace(temporary, probs_path[0])
    finally:
        if temporary is not None and temporary.exists():
            temporary.unlink()
    atomic_write_bytes(mask_path, palette_png(result.mask, predictor.colours))
    atomic_write_bytes(overlay_path, png_bytes(overlay(image, result.mask, predictor.colours)))
    areas = np.bincount(result.mask.reshape(-1), minlength=predictor.num_classes)
    return {"input": str(path), "height": height, "width": width,
            "outputs": [str(p) for p in output_paths(path, out_dir, options.probs)],
            "pixels": {name: int(n) for name, n in zip(predictor.class_names, areas)},
            "share": {name: float(n / areas.sum())
                      for name, n in zip(predictor.class_names, areas)}}


def predict_files(predictor, inputs: list[str], out_dir: str | Path,
                  options: PredictOptions = PredictOptions()) -> PredictReport:
    """Predict every image named by ``inputs`` into ``out_dir``; see the module docstring.

    Raises ValueError before predicting anything when an input matches nothing, ``out_dir``
    is a file, or outputs exist and ``overwrite`` is off.
    """
    out_dir = check_output_folder(out_dir, "--out")
    paths = expand_inputs(inputs)
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise ValueError(f"{path} and {stems[path.stem]} would write the same outputs "
                             f"({path.stem}.png); predict them into different folders")
        stems[path.stem] = path
    inputs = {path.resolve() for path in paths}
    clashes = [p for path in paths for p in output_paths(path, out_dir, options.probs)
               if p.resolve() in inputs]
    if clashes:
        raise ValueError(f"{clashes[0]} is an input and would be overwritten by an output; "
                         f"choose another --out")
    existing = [p for path in paths for p in output_paths(path, out_dir, options.probs)
                if p.exists()]
    if existing and not options.overwrite:
        listed = ", ".join(str(p) for p in existing[:3])
        raise ValueError(f"{len(existing)} output file(s) exist, for example {listed}; pass "
                         f"--overwrite to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)

    summary_path = out_dir / "summary.json"
    report = PredictReport()
    report.summary = (json.loads(summary_path.read_text()) if summary_path.is_file() else {})
    report.summary.setdefault("images", {})
    for path in tqdm(paths, desc="images", unit="image", disable=not options.progress
                     or len(paths) < 2):
        try:
            entry = _predict_one(predictor, path, out_dir, options)
        except ValueError as error:             # unreadable or unusable input: name it, go on
            report.failed[str(path)] = str(error)
            tqdm.write(f"skipped {path}: {error}")
            continue
        report.summary["images"][path.stem] = entry
        report.written.extend(Path(p) for p in entry["outputs"])
    report.summary["failed"] = report.failed
    atomic_write_text(summary_path, json.dumps(report.summary, indent=2))
    return report
