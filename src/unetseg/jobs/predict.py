"""Predicting image files: the job behind ``unetseg predict``.

Inputs are files, folders (their images, not recursing) or glob patterns. For each image
``NAME`` it writes, into the output folder:

- ``NAME.png``: the mask as a palette PNG, pixel value = class index, shown in the class colours;
- ``NAME_overlay.png``: the image with translucent class colours;
- ``NAME_probs.npy`` (with ``probs``): float16 (C, H, W) class probabilities;
- ``NAME_confidence.png`` (with ``confidence``): the top class's probability per pixel, as
  an 8-bit grey PNG (255 = 1.0);

Probabilities are calibrated: those of the logits divided by the temperature the checkpoint
was fitted with after training (`unetseg.calibration`; 1 where it has none), blended over
tiles and flips as the mask is.

Images go through in overlapping tiles of ``tile`` pixels; ``"auto"`` (the default) is the
side of the crops the model was trained on, at least 256 (`unetseg.infer.tile_for`), so that a
tile holds as much context as training showed.

``summary.json`` gathers every image's size and class areas (merged with the entries of
earlier runs into the same folder), the inputs that failed, the files of the folders given
that are not images it reads (``skipped``: a GIF, a WebP), and, when the run stopped early,
``"interrupted": true`` with the inputs not reached under ``"remaining"``.

Before anything is written, every planned output is checked: two inputs that would write the
same file (``a.png`` and ``a.jpg``, or ``a.png``'s overlay and an input ``a_overlay.png``) and
an output that is an input are refused; so, unless ``overwrite``, is an output that exists (the
refuse policy of `unetseg.outputs`). An image that cannot be read is reported by name and
skipped; the others still finish. The first Ctrl-C stops after the image in hand (its outputs
and summary.json are written; `unetseg.interrupts.StopSignals`); a second aborts.
"""

from __future__ import annotations

import glob
import json
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..data.io import (
    IMAGE_SUFFIXES,
    image_header,
    is_system_file,
    list_images,
    no_pixel_limit,
    read_raw_image,
)
from ..files import atomic_write_bytes, write_json
from ..infer import check_options, predict, tile_for
from ..interrupts import StopSignals
from ..memory import Estimate, check_fits
from ..outputs import check_output_folder, refuse_existing_outputs
from ..progress import progress, say
from ..report.images import confidence_grey, overlay, palette_png, png_bytes

__all__ = ["Inputs", "expand_inputs", "output_paths", "PredictOptions", "PredictReport",
           "predict_files", "check_size"]

# What each of `output_paths`' files is, in its order, for messages.
# The largest image predicted without --max-pixels: 16384 x 16384, above Pillow's own limit
# (about 179 Mpx, which training keeps), since large scenes are what tiled prediction is for.
DEFAULT_MAX_PIXELS = 16384 * 16384
# An image, its mask and its overlay live in host memory wherever the model runs.
HOST = torch.device("cpu")


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: the arguments of `unetseg.infer.predict`, plus what to write."""

    tile: int | str | None = "auto"            # "auto": `tile_for` the model; None: whole
    overlap: float = 0.25
    blend: str = "gaussian"
    batch_size: int = 4
    tta: bool = False
    precision: str = "auto"
    probs: bool = False
    confidence: bool = False
    overwrite: bool = False
    progress: bool = True
    max_pixels: int | None = None              # None: DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        check_options(None if self.tile == "auto" else self.tile, self.overlap, self.blend,
                      self.batch_size)                                      # once, first
        if self.max_pixels is None:
            object.__setattr__(self, "max_pixels", DEFAULT_MAX_PIXELS)
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"--max-pixels must be a whole number >= 1, found "
                             f"{self.max_pixels}")


NOT_READ = f"not an image unetseg reads ({', '.join(IMAGE_SUFFIXES)})"


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)     # input path -> reason
    skipped: dict[str, str] = field(default_factory=dict)    # a folder's other file -> why
    summary: dict[str, Any] = field(default_factory=dict)


class Inputs(NamedTuple):
    images: list[Path]          # what is predicted, in order
    skipped: list[Path]         # other files of the folders given (dot-files left out)


def expand_inputs(inputs: list[str]) -> Inputs:
    """Image paths from files, folders and glob patterns, in order, without duplicates, and
    the folders' files that are not images read (a GIF, a WebP), to be counted rather than
    passed over in silence. A name that matches nothing is an error, so a typo is not
    mistaken for an empty folder."""
    found: list[Path] = []
    skipped: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            matches, others = list_images(path)
            skipped += [path / name for name in others if not is_system_file(name)]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in sorted(glob.glob(entry)) if Path(p).is_file()]
        if not matches:
            raise ValueError(f"{entry}: no such file, no images in that folder, or no match "
                             f"for the pattern")
        found.extend(matches)
    return Inputs(list(dict.fromkeys(found)), list(dict.fromkeys(skipped)))


def output_paths(image: Path, out_dir: Path, options: PredictOptions) -> list[Path]:
    """The mask, the overlay and, as ``options`` ask, the probabilities and the confidence
    map of ``image``."""
    names = [f"{image.stem}.png", f"{image.stem}_overlay.png",
             *([f"{image.stem}_probs.npy"] if options.probs else []),
             *([f"{image.stem}_confidence.png"] if options.confidence else [])]
    return [out_dir / name for name in names]


def _kinds(options: PredictOptions) -> list[str]:
    """What each of `output_paths` is, in its order."""
    return ["mask", "overlay", *(["probabilities"] if options.probs else []),
            *(["confidence map"] if options.confidence else [])]


def _check_outputs(paths: list[Path], out_dir: Path, options: PredictOptions) -> None:
    """Refuse, before anything is written, outputs that would overwrite an input, another
    input's outputs or (without ``overwrite``) existing files.

    Paths are compared resolved, so ``--out .`` and ``--out ./in/..`` find the same clashes.
    """
    inputs = {path.resolve(): path for path in paths}
    writers: dict[Path, tuple[Path, str]] = {}         # output -> (input writing it, kind)
    for path in paths:
        for output, kind in zip(output_paths(path, out_dir, options), _kinds(options)):
            key = output.resolve()
            if key in inputs:
                raise ValueError(f"{inputs[key]} is an input and would be overwritten by the "
                                 f"{kind} of {path}; choose another --out")
            if key in writers:
                other, other_kind = writers[key]
                raise ValueError(f"{other} and {path} would both write {output} (the "
                                 f"{other_kind} of {other.name} and the {kind} of {path.name}); "
                                 f"rename one of them or predict them into different --out "
                                 f"folders")
            writers[key] = (path, kind)
    if not options.overwrite:
        refuse_existing_outputs(p for path in paths
                                for p in output_paths(path, out_dir, options))


# --- the work -----------------------------------------------------------------------------------

def _save_probs(path: Path, probs_shape: tuple[int, ...]) -> tuple[np.ndarray, Path]:
    """A float16 .npy memory map in a temporary file beside ``path``: the probabilities of a
    large image go to disk as rows finish instead of filling memory."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float16, shape=probs_shape)
    return array, temporary


def check_size(path: Path, options: PredictOptions) -> None:
    """Refuse, from its header alone, an image over ``--max-pixels`` or one whose decoded
    arrays (the image, its mask and its overlay) cannot fit in memory, naming its size: a
    196-byte PNG claiming 60000 x 60000 pixels ran for hours at 6.4 GB. The header read also
    verifies a PNG's chunks, so one whose pixel data ends early is refused, not read as
    zeros."""
    with no_pixel_limit():          # the limit is --max-pixels here, checked below
        height, width, channels = image_header(path)
    pixels = height * width
    if pixels > options.max_pixels:
        raise ValueError(f"{path}: {width} x {height} pixels ({pixels / 1e6:,.0f} Mpx) is over "
                         f"--max-pixels {options.max_pixels:,}; pass a larger --max-pixels to "
                         f"predict it deliberately")
    image_bytes = pixels * (2 * channels + 1 + 3)       # up to 16-bit image, mask, overlay
    check_fits(Estimate(0, 0, image_bytes, task="predict"), HOST,
               f"--max-pixels, or split {path.name} (it is {width} x {height})")


def _predict_one(predictor, path: Path, out_dir: Path, options: PredictOptions) -> dict:
    check_size(path, options)
    with no_pixel_limit():          # large scenes are what tiled prediction is for
        image = read_raw_image(path)
    height, width = image.shape[:2]
    mask_path, overlay_path, *extra = output_paths(path, out_dir, options)
    probs_path = extra[:1] if options.probs else []
    probs_target, temporary = (_save_probs(probs_path[0], (predictor.num_classes, height, width))
                               if options.probs else (False, None))
    try:
        result = predict(predictor, image, tile=options.tile, overlap=options.overlap,
                         blend=options.blend, batch_size=options.batch_size, tta=options.tta,
                         precision=options.precision, probs=probs_target,
                         progress=options.progress,
                         temperature=getattr(predictor, "temperature", 1.0),
                         confidence=options.confidence)
        if temporary is not None:
            probs_target.flush()
            del probs_target
            os.replace(temporary, probs_path[0])
    finally:
        if temporary is not None and temporary.exists():
            temporary.unlink()
    atomic_write_bytes(mask_path, palette_png(result.mask, predictor.colours))
    atomic_write_bytes(overlay_path, png_bytes(overlay(image, result.mask, predictor.colours)))
    if options.confidence:
        atomic_write_bytes(extra[-1], png_bytes(confidence_grey(result.confidence)))
    areas = np.bincount(result.mask.reshape(-1), minlength=predictor.num_classes)
    return {"input": str(path), "height": height, "width": width,
            "outputs": [str(p) for p in output_paths(path, out_dir, options)],
            "pixels": {name: int(n) for name, n in zip(predictor.class_names, areas)},
            "share": {name: float(n / areas.sum())
                      for name, n in zip(predictor.class_names, areas)}}


def _predict_into(report: PredictReport, predictor, path: Path, out_dir: Path,
                  options: PredictOptions) -> None:
    """Predict ``path`` and record its outputs in ``report``, or record why it failed."""
    try:
        entry = _predict_one(predictor, path, out_dir, options)
    except ValueError as error:                 # unreadable or unusable input: name it, go on
        report.failed[str(path)] = str(error)
        say(f"skipped {path}: {error}")
        return
    report.summary["images"][path.stem] = entry
    report.written.extend(Path(p) for p in entry["outputs"])


def _write_summary(path: Path, report: PredictReport, remaining: list[Path]) -> None:
    """summary.json: this run's entries merged into the earlier ones, the failures, and
    whether the run stopped before ``remaining`` (empty when it finished)."""
    report.summary["failed"] = report.failed
    report.summary["skipped"] = report.skipped
    report.summary["interrupted"] = bool(remaining)
    report.summary["remaining"] = [str(p) for p in remaining]
    write_json(path, report.summary)


def predict_files(predictor, inputs: list[str], out_dir: str | Path,
                  options: PredictOptions = PredictOptions()) -> PredictReport:
    """Predict every image named by ``inputs`` into ``out_dir``; see the module docstring.

    Raises ValueError before predicting anything when an input matches nothing, ``out_dir``
    is a file, two inputs would write the same output, an output would replace an input, or
    outputs exist and ``overwrite`` is off. Raises KeyboardInterrupt after a Ctrl-C, once the
    finished images and summary.json (with ``"interrupted": true``) are written.
    """
    out_dir = check_output_folder(out_dir, "--out")
    if options.tile == "auto":
        options = replace(options, tile=tile_for(getattr(predictor, "training_crop", None)))
    paths, skipped = expand_inputs(inputs)
    _check_outputs(paths, out_dir, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.json"
    report = PredictReport(skipped={str(path): NOT_READ for path in skipped})
    report.summary = (json.loads(summary_path.read_text()) if summary_path.is_file() else {})
    report.summary.setdefault("images", {})
    # Ctrl-C only: a SIGTERM (a pre-empted job) still ends predict at once, as it always has.
    with StopSignals(signals=(signal.SIGINT,), when="after this image") as stop:
        finished = 0
        try:
            # A bar in a terminal (for one image, its tiles' bar is enough), a plain line
            # per tenth of the images in a log.
            for path in progress(paths, "images", options.progress, unit="image",
                                 disable=len(paths) < 2):
                _predict_into(report, predictor, path, out_dir, options)
                finished += 1
                if stop.requested:
                    break
        finally:        # whatever stopped the loop, the finished images stay listed
            _write_summary(summary_path, report, paths[finished:])
    if finished < len(paths):                  # only a Ctrl-C leaves the loop early
        raise KeyboardInterrupt(f"stopped by Ctrl-C after {finished} of {len(paths)} images; "
                                f"their outputs and summary.json are in {out_dir}; the "
                                f"{len(paths) - finished} not predicted are listed there "
                                f"under 'remaining'")
    return report
