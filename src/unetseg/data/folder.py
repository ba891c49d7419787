"""Image/mask folders: ``images/`` and ``masks/`` matched by file stem, described by a small
dataset file.

The dataset file (``dataset.yaml``, ``dataset.yml`` or ``dataset.json`` beside the folders, or
given explicitly) says what the mask values mean::

    classes: [background, road, building]     # names; their number is num_classes
    colours: [[0, 0, 0], [128, 64, 128], [128, 0, 0]]   # RGB per class: for RGB masks and overlays
    ignore_index: 255                          # mask value that counts nowhere
    remap: {0: 1, 255: 0}                      # optional: stored value -> class index

Every pair is checked once when the dataset is built (sizes from the file headers, mask values
decoded), so a bad file stops the run before training with its name and what was expected,
not hours later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import IMAGE_SUFFIXES, image_size, read_image, read_mask
from .tensors import ChannelStats, to_tensors

__all__ = ["DatasetSpec", "FolderDataset", "match_pairs", "read_split_file", "split_by_ratio"]

DATASET_FILES = ("dataset.yaml", "dataset.yml", "dataset.json")

# (image HWC float32, mask HW int64, seed) -> (image, mask): a joint augmentation.
JointTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def default_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours for classes without given ones (a fixed, well-spread hue sequence)."""
    import colorsys

    colours = [(0, 0, 0)]
    for c in range(1, num_classes):
        hue = (c * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours[:num_classes]


@dataclass(frozen=True)
class DatasetSpec:
    """What the masks of a dataset mean: class names and colours, ignore label, value remap."""

    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = 255
    remap: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ValueError("a dataset needs at least one class name")
        if not self.colours:
            object.__setattr__(self, "colours", tuple(default_colours(len(self.class_names))))
        if len(self.colours) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.colours)} colours")
        if 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(f"ignore_index {self.ignore_index} is the label of class "
                             f"{self.class_names[self.ignore_index]!r}; expected a value outside "
                             f"0..{len(self.class_names) - 1} (255 is usual)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "dataset file") -> DatasetSpec:
        known = {"classes", "colours", "colors", "ignore_index", "remap"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
        if "classes" not in values:
            raise ValueError(f"{source}: needs 'classes', a list of class names")
        colours = values.get("colours", values.get("colors")) or ()
        return cls(
            class_names=tuple(str(name) for name in values["classes"]),
            colours=tuple(tuple(int(v) for v in colour) for colour in colours),
            ignore_index=int(values.get("ignore_index", 255)),
            remap={int(k): int(v) for k, v in (values.get("remap") or {}).items()},
        )

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping with 'classes', found {type(values)}")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.class_names), "colours": [list(c) for c in self.colours],
                "ignore_index": self.ignore_index, "remap": dict(self.remap)}

    def apply_remap(self, mask: np.ndarray) -> np.ndarray:
        if not self.remap:
            return mask
        out = mask.copy()
        for stored, label in self.remap.items():
            out[mask == stored] = label
        return out


def find_spec_file(root: Path) -> Path | None:
    for name in DATASET_FILES:
        if (root / name).is_file():
            return root / name
    return None


def _files_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a folder of images")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: not an image file; expected one of {IMAGE_SUFFIXES}")
        if path.stem in files:
            raise ValueError(f"{path} and {files[path.stem]} share the stem {path.stem!r}")
        files[path.stem] = path
    return files


def match_pairs(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by stem; an image without mask or the reverse is an error."""
    images, masks = _files_by_stem(image_dir), _files_by_stem(mask_dir)
    if not images:
        raise ValueError(f"{image_dir}: no images found")
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"images without a mask in {mask_dir}: {lonely_images[:5]}")
        if lonely_masks:
            parts.append(f"masks without an image in {image_dir}: {lonely_masks[:5]}")
        raise ValueError("; ".join(parts))
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def read_split_file(path: str | Path) -> list[str]:
    """Stems listed in a split file: one entry per line, the first token's file name counts
    (so SegNet's ``/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png`` gives ``X``)."""
    stems = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            stems.append(Path(line.split()[0]).stem)
    return stems


def split_by_ratio(stems: list[str], val_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded (train, val) split; at least one sample on each side when there are two."""
    if not 0.0 < val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in (0, 1), found {val_ratio}")
    if len(stems) < 2:
        raise ValueError(f"cannot split {len(stems)} pair(s) into training and validation; "
                         f"expected at least 2, or give a separate validation folder")
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val = min(max(1, round(len(stems) * val_ratio)), len(stems) - 1)
    val = sorted(stems[i] for i in order[:n_val])
    train = sorted(stems[i] for i in order[n_val:])
    return train, val


class FolderDataset(Dataset):
    """Pairs of image and mask files as ``(image float32 (C, H, W), mask int64 (H, W))``.

    Images are in [0, 1] before ``mean``/``std`` normalisation; masks hold class indices in
    [0, num_classes) or ``spec.ignore_index``. The whole dataset is checked on construction:
    every image is readable and has its mask's size, every mask value is a class or the ignore
    label, and all images have the same channel count. The check also counts pixels per class
    (``class_pixels``), for class weights and reports.

    Args:
        pairs: (image path, mask path) pairs.
        spec: what the mask values mean.
        transform: optional joint augmentation ``(image HWC, mask HW, seed) -> (image, mask)``.
        mean, std: per-channel normalisation; None leaves images in [0, 1].
        seed: base of the per-sample augmentation seeds (with ``epoch`` and the index).
        skip_bad: drop unreadable or inconsistent pairs (listed in ``skipped``) instead of
            raising on the first one.
    """

    def __init__(
        self, pairs: list[tuple[Path, Path]], spec: DatasetSpec,
        transform: JointTransform | None = None,
        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
        seed: int = 0, skip_bad: bool = False,
    ) -> None:
        if not pairs:
            raise ValueError("the dataset is empty: no (image, mask) pairs")
        self.pairs, self.spec, self.transform = list(pairs), spec, transform
        self.mean, self.std = mean, std
        self.seed, self.epoch = seed, 0
        self.skip_bad = skip_bad
        self.skipped: list[tuple[str, str]] = []          # (image path, why), with skip_bad
        self.in_channels, self.class_pixels, self.sizes, self._stats = self._check()

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    def __len__(self) -> int:
        return len(self.pairs)

    def channel_stats(self) -> ChannelStats:
        """Per-channel statistics of all images, gathered by the construction check."""
        return self._stats

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, index), so resumed runs redraw the same ones."""
        self.epoch = epoch

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 (H, W, C) in [0, 1] and mask int64 (H, W), before any transform."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = self.spec.apply_remap(read_mask(mask_path, np.asarray(self.spec.colours)))
        return image, mask

    def raw(self, index: int) -> np.ndarray:
        """Image ``index`` before normalisation: float32 (H, W, C) in [0, 1]."""
        return read_image(self.pairs[index][0])

    def name(self, index: int) -> str:
        return self.pairs[index][0].name

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, index])
                              .generate_state(1)[0])
            image, mask = self.transform(image, mask, sample_seed)
        return to_tensors(image, mask, self.mean, self.std)

    def _check_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Load pair ``index`` and check it on its own; ValueError naming the file if bad."""
        image_path, mask_path = self.pairs[index]
        image_hw, mask_hw = image_size(image_path), image_size(mask_path)
        if image_hw != mask_hw:
            raise ValueError(
                f"mask {mask_path} is {mask_hw[1]}x{mask_hw[0]} but image {image_path} is "
                f"{image_hw[1]}x{image_hw[0]} (width x height); expected the same size")
        image, mask = self.load(index)
        valid = mask != self.spec.ignore_index
        bad = valid & ((mask < 0) | (mask >= self.num_classes))
        if bad.any():
            raise ValueError(
                f"{mask_path}: values {np.unique(mask[bad])[:10].tolist()} are not classes "
                f"0..{self.num_classes - 1} ({', '.join(self.spec.class_names)}) nor the "
                f"ignore label {self.spec.ignore_index}")
        return image, mask[valid], image_hw

    def _check(self) -> tuple[int, np.ndarray, set[tuple[int, int]], ChannelStats]:
        """Check every pair once; with ``skip_bad`` a bad pair is dropped and listed in
        ``skipped`` instead of stopping everything."""
        stats = ChannelStats()
        counts = np.zeros(self.num_classes, dtype=np.int64)
        channels: dict[int, Path] = {}
        sizes = set()
        kept = []
        for index, (image_path, _) in enumerate(self.pairs):
            try:
                image, labels, image_hw = self._check_pair(index)
                found = dict(channels)
                found.setdefault(image.shape[-1], image_path)
                if len(found) > 1:
                    examples = ", ".join(f"{path} has {c}" for c, path in sorted(found.items()))
                    raise ValueError(f"images mix channel counts ({examples}); expected all "
                                     f"grey or all RGB")
            except ValueError as error:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(image_path), str(error)))
                continue
            channels = found
            kept.append(self.pairs[index])
            sizes.add(image_hw)
            stats.add(image)
            counts += np.bincount(labels, minlength=self.num_classes)
        if not kept:
            raise ValueError(f"all {len(self.pairs)} pairs are bad; the first: "
                             f"{self.skipped[0][1]}")
        self.pairs = kept
        return next(iter(channels)), counts, sizes, stats
