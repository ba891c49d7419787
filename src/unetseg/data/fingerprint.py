"""The dataset fingerprint: what a configuration should be planned from, measured on the
training masks in one pass.

Per image: its size and channels, and (over a sample) the intensity statistics and bit depth.
Per class: its share of the labelled pixels, the masks holding it, and its connected
components (8-connected): their areas and their bounding-box extents (the longer side), as the
5th, 50th and 95th percentiles *weighted by the components' pixels* (p5 is the size below
which 5% of the class's pixels lie, so specks of annotation noise, many but tiny, do not pass
for the objects), and how *thin* the class is: the share of its pixels within 2
pixels of another label (`EDGE_PX`). Blobs score low; membranes and vessels, whose every pixel
is near an edge, score near 1. Over the dataset: the ignored share and the share of *empty*
masks, those holding nothing but the most frequent class.

Only the training split is read: a plan must not be chosen on the images it is scored on. The
result is cached under `unetseg.files.cache_dir()`, keyed by every training mask's path, size
and modification time and by how masks are decoded, so a second plan of unchanged files reads
none of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import cache_dir, write_json
from .io import read_raw_image
from .spec import DatasetSpec

__all__ = ["ClassPrint", "Fingerprint", "fingerprint", "EDGE_PX", "mask_statistics",
           "weighted_percentiles"]

EDGE_PX = 2                     # a pixel within this many pixels of another label is edge
PERCENTILES = (5, 50, 95)
VERSION = 2                     # bump when what is measured changes: old cache entries go stale


@dataclass(frozen=True)
class ClassPrint:
    """One class over the training masks."""

    name: str
    pixels: int
    share: float                          # of the labelled (not ignored) pixels
    images: int                           # masks holding at least one pixel of it
    components: int
    area: tuple[float, float, float]      # component areas in pixels: p5, p50, p95 (weighted)
    extent: tuple[float, float, float]    # bounding boxes' longer side: p5, p50, p95 (weighted)
    edge_share: float                     # of its pixels within EDGE_PX of another label


@dataclass(frozen=True)
class Fingerprint:
    """The training split of a dataset, in the figures a plan needs (see the module doc)."""

    images: int
    height: tuple[int, int, int]          # min, median, max
    width: tuple[int, int, int]
    channels: int
    bit_depth: str                        # "8-bit", "16-bit" or "float"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[ClassPrint, ...]
    ignored_share: float
    empty_share: float                    # masks holding only the most frequent class

    @property
    def background(self) -> int:
        """The most frequent class: what an 'empty' mask holds and objects stand out from."""
        return max(range(len(self.classes)), key=lambda c: self.classes[c].pixels)

    @property
    def objects(self) -> list[ClassPrint]:
        """Every class but the most frequent, with at least one component."""
        return [row for c, row in enumerate(self.classes)
                if c != self.background and row.components]

    @property
    def median_side(self) -> int:
        return min(self.height[1], self.width[1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fingerprint:
        classes = tuple(ClassPrint(**{**row, "area": tuple(row["area"]),
                                      "extent": tuple(row["extent"])})
                        for row in values["classes"])
        tuples = {k: tuple(values[k]) for k in ("height", "width", "mean", "std")}
        return cls(**{**values, **tuples, "classes": classes})


def weighted_percentiles(values: list[float], weights: list[float]) -> tuple[float, ...]:
    """For each of `PERCENTILES` q, the smallest value whose share of the total weight, with
    every smaller value's, reaches q%: no interpolation, so each is a value that occurs."""
    if len(values) == 0:
        return (0.0,) * len(PERCENTILES)
    order = np.argsort(values, kind="stable")
    ordered = np.asarray(values, dtype=np.float64)[order]
    reached = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    found = [ordered[np.searchsorted(reached, q / 100 * reached[-1])] for q in PERCENTILES]
    return tuple(round(float(v), 2) for v in found)


def mask_statistics(labels: np.ndarray, num_classes: int, ignore_index: int) -> dict[str, Any]:
    """One mask's contribution: per class its pixels, component areas and extents, and edge
    pixels; and its ignored pixels. ``labels`` are class indices (after the remap)."""
    from scipy import ndimage  # the planner's only scipy use: imported when a plan is made

    eight = np.ones((3, 3), dtype=bool)
    per_class = []
    for c in range(num_classes):
        region = labels == c
        pixels = int(region.sum())
        if not pixels:
            per_class.append(None)
            continue
        components, count = ndimage.label(region, structure=eight)
        areas = np.bincount(components.ravel())[1:]
        extents = [max(s[0].stop - s[0].start, s[1].stop - s[1].start)
                   for s in ndimage.find_objects(components)]
        # The image border is not an edge: a class filling the frame is not thin.
        interior = ndimage.binary_erosion(region, structure=eight, iterations=EDGE_PX,
                                          border_value=1)
        per_class.append({"pixels": pixels, "areas": areas.tolist(), "extents": extents,
                          "edge": pixels - int(interior.sum())})
    return {"classes": per_class, "ignored": int((labels == ignore_index).sum())}


def _cache_key(pairs: list[tuple[Path, Path]], spec: DatasetSpec) -> str:
    files = []
    for _, mask in pairs:
        stat = mask.stat()
        files.append([str(mask.resolve()), stat.st_size, stat.st_mtime_ns])
    decoding = [list(spec.class_names), [list(c) for c in spec.colours],
                sorted(spec.remap.items()), spec.ignore_index,
                list(spec.ignore_colour) if spec.ignore_colour else None]
    text = json.dumps([VERSION, files, decoding])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _bit_depth(image: Path) -> str:
    dtype = read_raw_image(image).dtype
    return "float" if dtype.kind == "f" else "16-bit" if dtype.itemsize > 1 else "8-bit"


def fingerprint(pairs: list[tuple[Path, Path]], spec: DatasetSpec,
                channel_mean: tuple[float, ...], channel_std: tuple[float, ...],
                channels: int, progress: bool = False) -> Fingerprint:
    """The fingerprint of the training ``pairs``, their masks read with ``spec`` (its remap
    applied). The intensity statistics come from the dataset's own sample (`ChannelStats`);
    the bit depth from the first image. Cached (see the module doc)."""
    from ..progress import progress as progress_bar

    key = _cache_key(pairs, spec)
    cached = cache_dir() / "fingerprints" / f"{key}.json"
    if cached.is_file():
        try:
            return Fingerprint.from_dict(json.loads(cached.read_text()))
        except (ValueError, TypeError, KeyError):
            pass                                    # a damaged entry is measured again
    n = spec.num_classes
    pixels, images = np.zeros(n, np.int64), np.zeros(n, np.int64)
    areas: list[list[int]] = [[] for _ in range(n)]
    extents: list[list[int]] = [[] for _ in range(n)]
    edges = np.zeros(n, np.int64)
    ignored, heights, widths, holders = 0, [], [], []
    # A few hundred masks take seconds: a bar only beyond that.
    for _, mask_path in progress_bar(pairs, "fingerprint", progress and len(pairs) >= 200,
                                     unit="mask"):
        labels = spec.apply_remap(spec.decode_mask(mask_path))
        heights.append(labels.shape[0])
        widths.append(labels.shape[1])
        found = mask_statistics(labels, n, spec.ignore_index)
        ignored += found["ignored"]
        holders.append([c for c, row in enumerate(found["classes"]) if row])
        for c, row in enumerate(found["classes"]):
            if row:
                pixels[c] += row["pixels"]
                images[c] += 1
                areas[c] += row["areas"]
                extents[c] += row["extents"]
                edges[c] += row["edge"]
    labelled = max(int(pixels.sum()), 1)
    classes = tuple(
        ClassPrint(name, int(pixels[c]), round(float(pixels[c] / labelled), 6), int(images[c]),
                   len(areas[c]), weighted_percentiles(areas[c], areas[c]),
                   weighted_percentiles(extents[c], areas[c]),
                   round(float(edges[c] / pixels[c]), 4) if pixels[c] else 0.0)
        for c, name in enumerate(spec.class_names))
    background = int(np.argmax(pixels))
    empty = sum(1 for held in holders if set(held) <= {background})
    result = Fingerprint(
        images=len(pairs),
        height=(min(heights), int(np.median(heights)), max(heights)),
        width=(min(widths), int(np.median(widths)), max(widths)),
        channels=channels, bit_depth=_bit_depth(pairs[0][0]),
        mean=tuple(round(float(v), 5) for v in channel_mean),
        std=tuple(round(float(v), 5) for v in channel_std),
        classes=classes,
        ignored_share=round(ignored / (labelled + ignored), 6),
        empty_share=round(empty / len(pairs), 6))
    try:
        write_json(cached, result.to_dict())
    except OSError:
        pass                          # a read-only cache costs the next plan a pass, no more
    return result
