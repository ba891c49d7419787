"""Image/mask folders: ``images/`` and ``masks/`` matched by file stem, described by a small
dataset file.

The dataset file (``dataset.yaml``, ``dataset.yml`` or ``dataset.json`` beside the folders, or
given explicitly) says what the mask values mean::

    classes: [background, road, building]     # distinct names; their number is num_classes
    colours: [[0, 0, 0], [128, 64, 128], [128, 0, 0]]   # RGB per class: for RGB masks and overlays
    ignore_index: 255                          # mask value that counts nowhere
    ignore_colour: [0, 0, 0]                   # optional: RGB masks' void colour -> ignore_index
    remap: {0: 1, 255: 0}                      # optional: stored value -> class index

(``colors`` and ``ignore_color`` are accepted too.) Every key is checked when the file is read,
and an error names the file and the key; a file that does not parse names its line.

Files in the folders that are not images (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, any
dot-file, any suffix other than an image's) are left out and counted in a notice. Every pair is
decoded once when the dataset is built (`FolderScan`: sizes, channels, pixel sums and the raw
mask values), and checked against the spec from those numbers, so a bad file stops the run
before training with its name and what was expected, not hours later.
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

__all__ = ["DatasetSpec", "FolderDataset", "FolderScan", "PairScan", "match_pairs",
           "raw_mask_values", "read_spec_file", "read_split_file", "split_by_ratio"]

DATASET_FILES = ("dataset.yaml", "dataset.yml", "dataset.json")
# Files that operating systems drop into folders; never images, whatever their suffix.
JUNK_FILES = ("thumbs.db", "desktop.ini")

Pairs = list[tuple[Path, Path]]
# (image HWC float32, mask HW int64, seed) -> (image, mask): a joint augmentation.
JointTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
Colour = tuple[int, int, int]


def default_colours(num_classes: int) -> list[Colour]:
    """Distinct colours for classes without given ones (a fixed, well-spread hue sequence)."""
    import colorsys

    colours = [(0, 0, 0)]
    for c in range(1, num_classes):
        hue = (c * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours[:num_classes]


# ---------------------------------------------------------------- what the mask values mean

def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_colour(colour: Any, key: str) -> None:
    if not (isinstance(colour, (tuple, list)) and len(colour) == 3
            and all(_is_int(v) and 0 <= v <= 255 for v in colour)):
        raise ValueError(f"{key} is {_plain(colour)}; expected [r, g, b], three whole numbers "
                         f"0..255")


def _plain(value: Any) -> str:
    """A value as the user wrote it in YAML/JSON: lists, not tuples."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


@dataclass(frozen=True)
class DatasetSpec:
    """What the masks of a dataset mean: class names and colours, ignore label, value remap.

    ``remap`` maps stored mask values to class indices or ``ignore_index``; values it does not
    name are classes as stored. ``ignore_colour`` (RGB masks only) is a colour whose pixels
    become ``ignore_index``. Raises ValueError naming the key for any inconsistent value.
    """

    class_names: tuple[str, ...]
    colours: tuple[Colour, ...] = ()
    ignore_index: int = 255
    remap: dict[int, int] = field(default_factory=dict)
    ignore_colour: Colour | None = None

    def __post_init__(self) -> None:
        self._check_classes()
        if not self.colours:
            object.__setattr__(self, "colours", tuple(default_colours(len(self.class_names))))
        if len(self.colours) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.colours)} colours")
        for c, colour in enumerate(self.colours):
            _check_colour(colour, f"colours[{c}] ({self.class_names[c]})")
        object.__setattr__(self, "colours", tuple(tuple(int(v) for v in c) for c in self.colours))
        if not _is_int(self.ignore_index):
            raise ValueError(f"ignore_index is {self.ignore_index!r}; expected a whole number "
                             f"(255 is usual)")
        if 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(f"ignore_index {self.ignore_index} is the label of class "
                             f"{self.class_names[self.ignore_index]!r}; expected a value outside "
                             f"0..{len(self.class_names) - 1} (255 is usual)")
        self._check_remap()
        if self.ignore_colour is not None:
            self._check_ignore_colour()

    def _check_classes(self) -> None:
        if not self.class_names:
            raise ValueError("a dataset needs at least one class name")
        for c, name in enumerate(self.class_names):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"classes[{c}] is {name!r}; expected a non-empty name (quote "
                                 f"names YAML would read as numbers or yes/no: '1', 'no')")
        repeated = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
        if repeated:
            raise ValueError(f"classes name {', '.join(map(repr, repeated))} more than once; "
                             f"expected distinct names, one per class index")

    def _check_remap(self) -> None:
        labels = f"a class 0..{self.num_classes - 1} or ignore_index {self.ignore_index}"
        for stored, label in self.remap.items():
            if not (_is_int(stored) and _is_int(label)):
                raise ValueError(f"remap {stored!r}: {label!r} must map a whole number (a "
                                 f"stored mask value) to a whole number ({labels})")
            if label != self.ignore_index and not 0 <= label < self.num_classes:
                raise ValueError(f"remap {{{stored}: {label}}}: {label} is not {labels}")

    def _check_ignore_colour(self) -> None:
        _check_colour(self.ignore_colour, "ignore_colour")
        colour = tuple(self.ignore_colour)
        if colour in self.colours:
            name = self.class_names[self.colours.index(colour)]
            raise ValueError(f"ignore_colour {list(colour)} is the colour of class {name!r}; "
                             f"expected a colour no class uses (give each class its colour in "
                             f"'colours')")
        object.__setattr__(self, "ignore_colour", tuple(int(v) for v in colour))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "dataset file") -> DatasetSpec:
        """A spec from a dataset file's mapping; ValueError naming ``source`` and the key."""
        known = {"classes", "colours", "colors", "ignore_index", "ignore_colour",
                 "ignore_color", "remap"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
        if "classes" not in values:
            raise ValueError(f"{source}: needs 'classes', a list of class names")
        for british, american in (("colours", "colors"), ("ignore_colour", "ignore_color")):
            if british in values and american in values:
                raise ValueError(f"{source}: gives both {british!r} and {american!r}; keep one")
        try:
            colours = values.get("colours", values.get("colors")) or ()
            ignore_colour = values.get("ignore_colour", values.get("ignore_color"))
            return cls(class_names=_class_names(values["classes"]),
                       colours=tuple(_as_colour(c, f"colours[{i}]") for i, c in enumerate(
                           _as_list(colours, "colours", "[[0, 0, 0], [255, 255, 255]]"))),
                       ignore_index=values.get("ignore_index", 255),
                       remap=_remap(values.get("remap") or {}),
                       ignore_colour=None if ignore_colour is None
                       else _as_colour(ignore_colour, "ignore_colour"))
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        return cls.from_dict(read_spec_file(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        values = {"classes": list(self.class_names), "colours": [list(c) for c in self.colours],
                  "ignore_index": self.ignore_index, "remap": dict(self.remap)}
        if self.ignore_colour is not None:
            values["ignore_colour"] = list(self.ignore_colour)
        return values

    def decode_mask(self, path: str | Path) -> np.ndarray:
        """Mask ``path`` as int64 (H, W) stored values, before ``remap``: grey and palette
        masks as stored, RGB masks through ``colours`` (``ignore_colour`` -> ``ignore_index``)."""
        return read_mask(path, np.asarray(self.colours), self.ignore_colour, self.ignore_index)

    def apply_remap(self, mask: np.ndarray) -> np.ndarray:
        """Stored values -> labels, for a mask or for an array of distinct values alike."""
        if not self.remap:
            return mask
        out = mask.copy()
        for stored, label in self.remap.items():
            out[mask == stored] = label              # compare with the input: no chaining
        return out


def _as_list(value: Any, key: str, example: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} is {value!r}; expected a list, e.g. {example}")
    return list(value)


def _class_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        # YAML reads `classes: cell, membrane` as one string, which would iterate as letters.
        names = ", ".join(name.strip() for name in value.split(","))
        raise ValueError(f"classes is the text {value!r}, not a list; write a list, e.g. "
                         f"classes: [{names}]")
    return tuple(_as_list(value, "classes", "[background, road, building]"))


def _as_colour(value: Any, key: str) -> Colour:
    _check_colour(value, key)
    return tuple(int(v) for v in value)


def _remap(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise ValueError(f"remap is {value!r}; expected a mapping of stored value to class "
                         f"index, e.g. {{255: 1}}")
    remap = {}
    for stored, label in value.items():
        # JSON keys are always strings: "255" is the stored value 255.
        if isinstance(stored, str) and stored.strip().lstrip("-").isdigit():
            stored = int(stored)
        if not (_is_int(stored) and _is_int(label)):
            raise ValueError(f"remap {stored!r}: {label!r} must map a whole number (a stored "
                             f"mask value) to a whole number (a class index or ignore_index)")
        remap[int(stored)] = int(label)
    return remap


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping a dataset file (YAML or JSON) holds; ValueError naming the file, and the
    line where it does not parse."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the dataset file ({error})") from None
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON at line {error.lineno}, column "
                             f"{error.colno}: {error.msg}") from None
    else:
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping with 'classes', found {type(values)}")
    return values


def find_spec_file(root: Path) -> Path | None:
    for name in DATASET_FILES:
        if (root / name).is_file():
            return root / name
    return None


# ---------------------------------------------------------------- files and pairs

def _is_junk(path: Path) -> bool:
    """Not an image: a dot-file (.DS_Store, macOS's ._0001.png), an OS file, another suffix."""
    return (path.name.startswith(".") or path.name.lower() in JUNK_FILES
            or path.suffix.lower() not in IMAGE_SUFFIXES)


def _files_by_stem(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The image files of ``folder`` by stem, and the names of the other files left out."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a folder of images")
    files: dict[str, Path] = {}
    junk: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            continue
        if _is_junk(path):
            junk.append(path.name)
            continue
        if path.stem in files:
            raise ValueError(f"{path} and {files[path.stem]} share the stem {path.stem!r}")
        files[path.stem] = path
    return files, junk


def _junk_notice(folder: Path, junk: list[str]) -> str:
    shown = ", ".join(junk[:3]) + (", ..." if len(junk) > 3 else "")
    return (f"skipped {len(junk)} non-image file{'s' if len(junk) > 1 else ''} in {folder} "
            f"({shown}); images are {', '.join(IMAGE_SUFFIXES)}")


def match_pairs(image_dir: Path, mask_dir: Path, notices: list[str] | None = None) -> Pairs:
    """(image, mask) pairs matched by stem; an image without mask or the reverse is an error.

    Non-image files are left out; ``notices``, when given, gets one line per folder that had
    some (so a user sees that ``scan.tif.bak`` was not used).
    """
    images, image_junk = _files_by_stem(image_dir)
    masks, mask_junk = _files_by_stem(mask_dir)
    skipped = [_junk_notice(folder, junk) for folder, junk in
               ((image_dir, image_junk), (mask_dir, mask_junk)) if junk]
    # A lonely image is often explained by a mask saved under a suffix we do not read.
    why = f" ({'; '.join(skipped)})" if skipped else ""
    if not images:
        raise ValueError(f"{image_dir}: no images found{why}")
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"images without a mask in {mask_dir}: {lonely_images[:5]}")
        if lonely_masks:
            parts.append(f"masks without an image in {image_dir}: {lonely_masks[:5]}")
        raise ValueError("; ".join(parts) + why)
    if notices is not None:
        notices.extend(skipped)
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


# ---------------------------------------------------------------- one pass over every pair

@dataclass
class PairScan:
    """One pair as the construction pass decoded it: all a check against a spec needs."""

    pair: tuple[Path, Path]
    size: tuple[int, int]          # (H, W)
    channels: int
    stats: ChannelStats            # this image's pixel sums
    values: np.ndarray             # distinct stored mask values, before remap (int64)
    counts: np.ndarray             # pixels holding each of them (int64)


def _value_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a mask and how many pixels hold each."""
    flat = mask.ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 1 << 16:
        counts = np.bincount(flat)                  # a millisecond where np.unique sorts
        values = np.flatnonzero(counts)
        return values.astype(np.int64), counts[values].astype(np.int64)
    values, counts = np.unique(flat, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def _add_counts(total: dict[int, int], values: np.ndarray, counts: np.ndarray) -> None:
    for value, count in zip(values.tolist(), counts.tolist()):
        total[value] = total.get(value, 0) + count


def _scan_pair(pair: tuple[Path, Path], spec: DatasetSpec) -> PairScan:
    """Decode one pair and check it on its own; ValueError naming the file if bad."""
    image_path, mask_path = pair
    image_hw, mask_hw = image_size(image_path), image_size(mask_path)
    if image_hw != mask_hw:
        raise ValueError(
            f"mask {mask_path} is {mask_hw[1]}x{mask_hw[0]} but image {image_path} is "
            f"{image_hw[1]}x{image_hw[0]} (width x height); expected the same size")
    image = read_image(image_path)
    stats = ChannelStats()
    stats.add(image)
    values, counts = _value_counts(spec.decode_mask(mask_path))
    return PairScan(pair, image_hw, image.shape[-1], stats, values, counts)


class FolderScan:
    """Every pair decoded once: sizes, channel counts, pixel sums and the stored mask values.

    What the values *mean* is decided afterwards (`FolderDataset` checks them against a spec),
    so a question about the whole dataset, such as whether masks stored as 0/255 mean two
    classes, is answered from the raw values before anything is refused or ignored.

    Args:
        pairs: (image path, mask path) pairs.
        spec: how masks are decoded (``colours``, ``ignore_colour``); its remap is not applied.
        skip_bad: leave out unreadable or inconsistent pairs (listed in ``skipped``).
    """

    def __init__(self, pairs: Pairs, spec: DatasetSpec, skip_bad: bool = False) -> None:
        if not pairs:
            raise ValueError("the dataset is empty: no (image, mask) pairs")
        self.spec = spec
        self.items: list[PairScan] = []
        self.skipped: list[tuple[str, str]] = []          # (image path, why), with skip_bad
        channels: dict[int, Path] = {}
        for pair in pairs:
            try:
                item = _scan_pair(pair, spec)
                found = {**channels}
                found.setdefault(item.channels, pair[0])
                if len(found) > 1:
                    examples = ", ".join(f"{path} has {c}" for c, path in sorted(found.items()))
                    raise ValueError(f"images mix channel counts ({examples}); expected all "
                                     f"grey or all RGB")
            except ValueError as error:
                if not skip_bad:
                    raise
                self.skipped.append((str(pair[0]), str(error)))
                continue
            channels = found
            self.items.append(item)
        if not self.items:
            raise ValueError(f"all {len(pairs)} pairs are bad; the first: "
                             f"{self.skipped[0][1]}")
        self.in_channels = next(iter(channels))

    def raw_values(self) -> dict[int, int]:
        """Pixels per stored mask value (before remap) over every decoded pair."""
        total: dict[int, int] = {}
        for item in self.items:
            _add_counts(total, item.values, item.counts)
        return total


def raw_mask_values(pairs: Pairs, spec: DatasetSpec, skip_bad: bool = False) -> dict[int, int]:
    """Pixels per stored mask value over the masks of ``pairs``, reading no image: for a
    decision about the whole dataset when only one of its splits is being built."""
    total: dict[int, int] = {}
    for _, mask_path in pairs:
        try:
            _add_counts(total, *_value_counts(spec.decode_mask(mask_path)))
        except ValueError:
            if not skip_bad:
                raise
    return total


class FolderDataset(Dataset):
    """Pairs of image and mask files as ``(image float32 (C, H, W), mask int64 (H, W))``.

    Images are in [0, 1] before ``mean``/``std`` normalisation; masks hold class indices in
    [0, num_classes) or ``spec.ignore_index``. The whole dataset is checked on construction:
    every image is readable and has its mask's size, every mask value (after ``remap``) is a
    class or the ignore label, and all images have the same channel count. The check also
    counts, over the kept pairs, pixels per class (``class_pixels``), masks holding each class
    (``class_images``) and ignored pixels (``ignored_pixels``), for class weights, warnings and
    reports.

    Args:
        pairs: (image path, mask path) pairs, or their `FolderScan` when the caller has already
            decoded them (with a spec that decodes masks as ``spec`` does).
        spec: what the mask values mean.
        transform: optional joint augmentation ``(image HWC, mask HW, seed) -> (image, mask)``.
        mean, std: per-channel normalisation; None leaves images in [0, 1].
        seed: base of the per-sample augmentation seeds (with ``epoch`` and the index).
        skip_bad: drop unreadable or inconsistent pairs (listed in ``skipped``) instead of
            raising on the first one.
    """

    def __init__(
        self, pairs: Pairs | FolderScan, spec: DatasetSpec,
        transform: JointTransform | None = None,
        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
        seed: int = 0, skip_bad: bool = False,
    ) -> None:
        scan = pairs if isinstance(pairs, FolderScan) else FolderScan(pairs, spec, skip_bad)
        decoding = (spec.colours, spec.ignore_colour, spec.ignore_index)
        if (scan.spec.colours, scan.spec.ignore_colour, scan.spec.ignore_index) != decoding:
            raise ValueError("the FolderScan decoded masks with other colours or ignore label "
                             "than this spec; scan the pairs with this spec")
        self.spec, self.transform = spec, transform
        self.mean, self.std = mean, std
        self.seed, self.epoch = seed, 0
        self.skip_bad = skip_bad
        self.skipped = list(scan.skipped)                  # (image path, why), with skip_bad
        self.notices: list[str] = []     # what a user should read first; set by its builder
        self.in_channels = scan.in_channels
        self._count_labels(scan.items)

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
        return read_image(image_path), self.spec.apply_remap(self.spec.decode_mask(mask_path))

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

    def _labels(self, item: PairScan) -> np.ndarray:
        """The labels of a pair's distinct stored values; ValueError naming the mask if one is
        neither a class nor the ignore label."""
        labels = self.spec.apply_remap(item.values)
        bad = (labels != self.spec.ignore_index) & ((labels < 0) | (labels >= self.num_classes))
        if bad.any():
            raise ValueError(
                f"{item.pair[1]}: values {np.unique(labels[bad])[:10].tolist()} are not classes "
                f"0..{self.num_classes - 1} ({', '.join(self.spec.class_names)}) nor the "
                f"ignore label {self.spec.ignore_index}")
        return labels

    def _count_labels(self, items: list[PairScan]) -> None:
        """Check every scanned pair's values and count the kept ones (with ``skip_bad`` a bad
        pair is dropped and listed in ``skipped`` instead of stopping everything)."""
        n, ignore = self.num_classes, self.spec.ignore_index
        self.class_pixels = np.zeros(n, dtype=np.int64)
        self.class_images = np.zeros(n, dtype=np.int64)
        self.ignored_pixels = 0
        self.sizes: set[tuple[int, int]] = set()
        self._stats = ChannelStats()
        self.pairs = []
        for item in items:
            try:
                labels = self._labels(item)
            except ValueError as error:
                if not self.skip_bad:
                    raise
                self.skipped.append((str(item.pair[0]), str(error)))
                continue
            kept = labels != ignore
            per_class = np.zeros(n, dtype=np.int64)
            np.add.at(per_class, labels[kept], item.counts[kept])
            self.class_pixels += per_class
            self.class_images += per_class > 0
            self.ignored_pixels += int(item.counts[~kept].sum())
            self.sizes.add(item.size)
            self._stats.merge(item.stats)
            self.pairs.append(item.pair)
        if not self.pairs:
            raise ValueError(f"all {len(self.skipped)} pairs are bad; the first: "
                             f"{self.skipped[0][1]}")
