"""From a data configuration to train and validation datasets.

``source`` is ``"synthetic"`` (built in: background, circle, square), ``"binary"`` (built in:
background and objects covering ``foreground`` of each image), ``"camvid"`` or ``"isbi"``
(presets, with ``root`` the dataset folder), or the path of an image/mask folder (``images/`` +
``masks/``, or ``train/`` + ``val/`` folders each holding those, and an optional dataset file).

Every mask is decoded once (images are read from their headers, a sample of them decoded for
the statistics) and indexed (`unetseg.data.scan_cache`), and what the masks hold is judged before
training, so that a data mistake gives an error or a notice (`Datasets.notices`) instead of a
silent wrong answer:

- a 2-class folder whose masks hold only 0 and one value v > 1 (0/255 above all), with no
  dataset file saying what is ignored or remapped, reads v as class 1 (and says so);
- a class that never occurs in the training masks, or more than 10% of the training pixels
  ignored, is a notice naming the fix;
- a remap key no mask holds is a notice (a 1-bit PNG reads as 0/1, so ``{255: 1}`` does nothing);
- non-image files in the folders are left out and counted;
- ``--classes`` beside a dataset file, or split files naming the same image, are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..config import PRESET_SOURCES, DataConfig
from .folder import (
    DatasetSpec,
    FolderDataset,
    FolderScan,
    Pairs,
    find_spec_file,
    match_pairs,
    raw_mask_values,
    read_spec_file,
    read_split_file,
    split_by_ratio,
)
from .presets import (
    CAMVID,
    ISBI,
    camvid_pairs,
    camvid_test_pairs,
    isbi_pairs,
    isbi_test_pairs,
)
from .synthetic import BinaryShapes, SyntheticShapes
from .tensors import ChannelStats

__all__ = ["Datasets", "build_datasets", "build_eval_dataset", "mask_reading", "SPLITS",
           "LABEL_KEYS", "stored_mask_values", "has_test_folder", "binary_value"]

# Dataset-file keys that say what is ignored or remapped: with any of them, the file has
# spoken, and 0/255 masks are read as it says, never guessed.
LABEL_KEYS = ("ignore_index", "remap", "ignore_colour", "ignore_color")
# Above this share of ignored training pixels, "ignored" is more likely a mistake than a choice.
IGNORED_SHARE_WARNING = 0.10


@dataclass
class Datasets:
    """Train and validation datasets and what a user must know before training on them.

    ``notices``: one line each, naming what, where and the fix (0/255 masks read as two classes,
    non-image files left out, classes that never occur, mostly-ignored pixels, unused remap
    keys). ``summary`` (JSON-able, for config.yaml and reports)::

        {"classes": {name: {"pixels": int, "share": float, "images": int}, ...},
         "ignored_share": float, "train_images": int, "val_images": int, "notices": [str]}

    counts over the training masks: ``share`` is of all their pixels (the shares and
    ``ignored_share`` sum to 1), ``images`` the number of training masks holding the class.
    ``classes`` is empty where pixels are not counted (synthetic data).
    """

    train: Dataset
    val: Dataset
    spec: DatasetSpec
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_pixels: list[int] | None     # training pixels per class, where counted
    skipped: list[tuple[str, str]] = field(default_factory=list)   # bad pairs left out
    notices: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Source:
    """A dataset's pairs and the spec of its masks, as found on disk, before decoding."""

    train: Pairs
    val: Pairs
    every: Pairs              # split "all": the whole folder, or both splits
    spec: DatasetSpec
    origin: str               # where the spec comes from, for messages
    labels_declared: bool     # the spec states what is ignored or remapped: no 0/255 guess
    notices: list[str]        # non-image files left out


# ---------------------------------------------------------------- where the pairs are

RECORDED = "the checkpoint's mask mapping"


def _mapping(spec: DatasetSpec) -> str:
    """``classes background, box; stored 255 -> 0, 0 -> 1; ignore_index 255``."""
    remap = ", ".join(f"{value} -> {label}" for value, label in spec.remap.items())
    return (f"classes {', '.join(spec.class_names)}" + (f"; stored {remap}" if remap else "")
            + f"; ignore_index {spec.ignore_index}")


def _folder_spec(
    root: Path, config: DataConfig, class_names: tuple[str, ...] | None,
    recorded: DatasetSpec | None = None,
) -> tuple[DatasetSpec, str, bool]:
    """(spec, where it comes from, whether it declares ignored or remapped values). Without a
    dataset file or ``--classes``, a checkpoint's ``recorded`` spec (how its run read the
    masks: remap and ignore label included) reads them, else its ``class_names``."""
    if config.spec and not Path(config.spec).is_file():
        raise ValueError(f"--spec {config.spec}: no such file; expected a dataset file (YAML or "
                         f"JSON with classes, colours, ignore_index, remap)")
    spec_file = Path(config.spec) if config.spec else find_spec_file(root)
    if spec_file is not None:
        if config.classes:       # two sources of class names: refuse rather than pick one
            remove = "--spec" if config.spec else "the file"
            raise ValueError(f"--classes {','.join(config.classes)} but {spec_file} names the "
                             f"classes; remove --classes or {remove}")
        values = read_spec_file(spec_file)
        declared = any(key in values for key in LABEL_KEYS)
        return DatasetSpec.from_dict(values, str(spec_file)), str(spec_file), declared
    if not config.classes and recorded is not None:
        return recorded, RECORDED, True
    names, origin = (config.classes, "--classes") if config.classes else (
        class_names, "the checkpoint's classes")
    if not names:
        raise ValueError(f"{root}: no dataset file (dataset.yaml or dataset.json) and no "
                         f"--classes; expected one of them to name the classes")
    try:
        return DatasetSpec(class_names=tuple(names)), origin, False
    except ValueError as error:
        raise ValueError(f"{origin} {','.join(map(str, names))}: {error}") from None


def _split_file(root: Path, listing: str) -> Path:
    path = Path(listing) if Path(listing).is_absolute() else root / listing
    if not path.is_file():
        raise ValueError(f"split file {path} does not exist")
    return path


def _listed(path: Path, root: Path, by_stem: dict) -> Pairs:
    """The pairs a split file names (SegNet-style lines work: the first path's stem counts)."""
    stems = read_split_file(path)
    unknown = [stem for stem in stems if stem not in by_stem]
    if unknown:
        raise ValueError(f"{path} names {len(unknown)} image(s) not in {root / 'images'}, for "
                         f"example {unknown[:3]}")
    if not stems:
        raise ValueError(f"{path} lists no images")
    return [by_stem[stem] for stem in stems]


def _listed_splits(root: Path, config: DataConfig, by_stem: dict) -> tuple[Pairs, Pairs]:
    """The pairs --train-list and --val-list name; an image in both is refused, since it would
    be trained on and then scored as if unseen."""
    if not (config.train_list and config.val_list):
        raise ValueError("give both --train-list and --val-list, or neither")
    train_file, val_file = _split_file(root, config.train_list), _split_file(root, config.val_list)
    train, val = _listed(train_file, root, by_stem), _listed(val_file, root, by_stem)
    shared = sorted({image.stem for image, _ in train} & {image.stem for image, _ in val})
    if shared:
        raise ValueError(f"{train_file} and {val_file} both name {len(shared)} image(s), for "
                         f"example {shared[:3]}; list each image in one split file only")
    return train, val


def _folder_splits(root: Path, config: DataConfig, notices: list[str]) -> tuple[Pairs, ...]:
    """(train, val, every pair) of a folder source. A ``train/`` folder without ``val/`` (an
    official train/test layout) gives its validation pairs by ``val_ratio``: ``test/`` is kept
    for `test_pairs` and never chooses anything."""
    if (root / "train").is_dir():
        train = match_pairs(root / "train" / "images", root / "train" / "masks", notices)
        val_root = Path(config.val) if config.val else root / "val"
        if config.val or val_root.is_dir() or not (root / "test").is_dir():
            val = match_pairs(val_root / "images", val_root / "masks", notices)
            return train, val, train + val
        return (*_carved(train, config, root / "train", notices), train)
    pairs = match_pairs(root / "images", root / "masks", notices)
    if config.val:
        val_root = Path(config.val)
        return pairs, match_pairs(val_root / "images", val_root / "masks", notices), pairs
    by_stem = {p[0].stem: p for p in pairs}
    if config.train_list or config.val_list:
        return (*_listed_splits(root, config, by_stem), pairs)
    return (*_carved(pairs, config, root, notices), pairs)


def _carved(pairs: Pairs, config: DataConfig, where: Path, notices: list[str]) -> tuple[Pairs, ...]:
    """(train, val) carved from ``pairs`` by ``val_ratio``. A single pair (one large scene,
    say) both trains and validates, and a notice says that its scores are not held out."""
    if len(pairs) == 1:
        notices.append(f"{where}: one image, so it both trains and validates: validation "
                       f"scores are not held out and the best checkpoint is chosen on the "
                       f"training image; give a validation folder (--val) for honest ones")
        return pairs, pairs
    by_stem = {p[0].stem: p for p in pairs}
    train, val = split_by_ratio(sorted(by_stem), config.val_ratio, config.seed)
    return [by_stem[s] for s in train], [by_stem[s] for s in val]


def _source(config: DataConfig, class_names: tuple[str, ...] | None = None,
            recorded: DatasetSpec | None = None) -> Source:
    notices: list[str] = []
    if config.source in PRESET_SOURCES:
        root = Path(config.root)
        if config.source == "camvid":
            train, val = camvid_pairs(root, notices)
        else:
            train, val = isbi_pairs(root, config.val_ratio, config.seed, notices)
        spec = CAMVID if config.source == "camvid" else ISBI
        return Source(train, val, train + val, spec, f"the {config.source} preset", True,
                      notices)
    root = Path(config.source)
    if not root.exists():
        raise ValueError(f"--data {config.source}: no such folder; expected 'synthetic', "
                         f"'binary', 'camvid', 'isbi' or a folder with images/ and masks/")
    spec, origin, declared = _folder_spec(root, config, class_names, recorded)
    if origin == RECORDED:
        notices.append(f"{root} has no dataset file: its masks are read as the checkpoint's "
                       f"run read them ({_mapping(spec)})")
    train, val, every = _folder_splits(root, config, notices)
    return Source(train, val, every, spec, origin, declared, notices)


# ---------------------------------------------------------------- what the masks hold

def _mask_folders(pairs: Pairs) -> str:
    folders = sorted({str(mask.parent) for _, mask in pairs})
    more = f" and {len(folders) - 2} more folders" if len(folders) > 2 else ""
    return " and ".join(folders[:2]) + more


def binary_value(num_classes: int, values: Iterable[int]) -> int | None:
    """v, when masks of 2 classes hold only 0 and one value v > 1 (0/255 above all): then,
    unless a dataset file declares what is ignored or remapped, v can only mean class 1. The
    one statement of that rule, for true masks (`mask_reading`) and predicted ones alike."""
    stored = sorted(values)
    if num_classes != 2 or len(stored) != 2 or stored[0] != 0 or stored[1] <= 1:
        return None
    return stored[1]


def _binary_notice(spec: DatasetSpec, v: int, pairs: Pairs) -> str:
    names = spec.class_names
    note = (f"{_mask_folders(pairs)}: masks hold only the values 0 and {v} for 2 classes "
            f"({names[0]}, {names[1]}): {v} is read as class 1 ({names[1]})")
    if v == spec.ignore_index:
        return (f"{note}, not as ignore; declare ignore_index: {v} in a dataset file if {v} "
                f"marks pixels to ignore")
    return f"{note}; give a remap in a dataset file if {v} means something else"


def _unused_remap_keys(origin: str, spec: DatasetSpec, values: dict[int, int],
                       pairs: Pairs) -> list[str]:
    stored = sorted(values)
    shown = ", ".join(map(str, stored[:10])) + (", ..." if len(stored) > 10 else "")
    return [f"{origin}: remap key {key} never occurs in the {len(pairs)} masks (their values: "
            f"{shown}), so nothing is remapped from {key}; check what the masks store (a "
            f"1-bit PNG reads as 0 and 1, not 0 and 255) or remove the key"
            for key in spec.remap if key not in values]


def _summed(first: dict[int, int], second: dict[int, int]) -> dict[int, int]:
    """Pixels per stored value over two sets of masks."""
    return {value: first.get(value, 0) + second.get(value, 0) for value in {*first, *second}}


def mask_reading(spec: DatasetSpec, declared: bool, origin: str, values: dict[int, int],
                 pairs: Pairs) -> tuple[DatasetSpec, list[str]]:
    """The one rule by which train, evaluate, check and inspect read masks: ``spec`` (from
    ``origin``; ``declared`` when it says what is ignored or remapped), completed from the
    stored ``values`` of the masks of ``pairs`` (pixels per value, over the whole dataset,
    before any value is ignored), and the notices a user must read about it. Masks of two
    classes holding only 0 and one other value (0/255) read that value as class 1."""
    notices = []
    v = None if declared else binary_value(spec.num_classes, values)
    if v is not None:
        spec = replace(spec, remap={v: 1})
        notices.append(_binary_notice(spec, v, pairs))
    return spec, notices + _unused_remap_keys(origin, spec, values, pairs)


def _resolve_spec(
    source: Source, values: dict[int, int], pairs: Pairs,
) -> tuple[DatasetSpec, list[str]]:
    """`mask_reading` for a data source."""
    return mask_reading(source.spec, source.labels_declared, source.origin, values, pairs)


def _training_warnings(train: FolderDataset) -> list[str]:
    """Classes the training masks never hold, and a large share of ignored pixels."""
    spec, where = train.spec, _mask_folders(train.pairs)
    notes = [f"class {name!r} never occurs in the {len(train)} training masks: no pixel of "
             f"{where} is labelled {c}; check the value its pixels are stored as (a remap in "
             f"the dataset file maps stored values to classes), or leave the class out"
             for c, name in enumerate(spec.class_names) if train.class_pixels[c] == 0]
    total = int(train.class_pixels.sum()) + train.ignored_pixels
    share = train.ignored_pixels / total if total else 0.0
    if share > IGNORED_SHARE_WARNING:
        ignore = spec.ignore_index
        if spec.ignore_colour is not None:         # RGB masks: a colour is what is ignored
            colour = list(spec.ignore_colour)
            notes.append(f"{share:.1%} of the training pixels are ignore_colour {colour} "
                         f"({where}) and count nowhere; if {colour} marks a class rather than "
                         f"unlabelled pixels, name that class and give it {colour} in "
                         f"'colours' instead of ignore_colour")
        else:
            notes.append(f"{share:.1%} of the training pixels are ignore_index {ignore} "
                         f"({where}) and count nowhere; if {ignore} marks a class rather than "
                         f"unlabelled pixels, name that class and map {ignore} to it in a "
                         f"dataset file (remap: {{{ignore}: CLASS_INDEX}})")
    return notes


def _summary(train: FolderDataset | None, train_images: int, val_images: int,
             notices: list[str]) -> dict[str, Any]:
    """`Datasets.summary`; ``train`` None where pixels are not counted."""
    classes, ignored_share = {}, 0.0
    if train is not None:
        total = max(int(train.class_pixels.sum()) + train.ignored_pixels, 1)
        classes = {name: {"pixels": int(train.class_pixels[c]),
                          "share": round(int(train.class_pixels[c]) / total, 6),
                          "images": int(train.class_images[c])}
                   for c, name in enumerate(train.class_names)}
        ignored_share = round(train.ignored_pixels / total, 6)
    return {"classes": classes, "ignored_share": ignored_share, "train_images": train_images,
            "val_images": val_images, "notices": list(notices)}


# ---------------------------------------------------------------- building the datasets

# Validation and test draws use seeds far from the training ones (and from each other), so
# the sets never share a sample.
SEED_OFFSETS = {"train": 0, "val": 1_000_003, "test": 2_000_003}
SPLITS = (*SEED_OFFSETS, "all")


def _synthetic(
    config: DataConfig, length: int, seed: int,
    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
) -> SyntheticShapes:
    if config.source == "binary":
        return BinaryShapes(length, config.size, config.foreground, seed, mean, std)
    return SyntheticShapes(length, config.size, seed, mean, std)


def _normalise(config: DataConfig, stats: ChannelStats, *datasets: Dataset) -> tuple[tuple, tuple]:
    """Mean and std from the training statistics (or the config), set on every dataset."""
    mean, std = stats.mean_std()
    if config.mean is not None and config.std is not None:
        mean, std = tuple(config.mean), tuple(config.std)
    for dataset in datasets:
        dataset.mean, dataset.std = mean, std
    return mean, std


def _synthetic_datasets(config: DataConfig) -> Datasets:
    train = _synthetic(config, config.train_samples, config.seed)
    val = _synthetic(config, config.val_samples, config.seed + SEED_OFFSETS["val"])
    mean, std = _normalise(config, train.channel_stats(), train, val)
    return Datasets(train, val, DatasetSpec(class_names=train.class_names), train.in_channels,
                    mean, std, None, summary=_summary(None, len(train), len(val), []))


def _check_rescale_applies(scale_min: float, items) -> None:
    """Refuse a ``--scale-min`` that shrinks the smallest training image under one pixel (the
    augmentation would fail on it mid-epoch with an OpenCV error), naming the image."""
    smallest = min(items, key=lambda item: min(item.size), default=None)
    if smallest is None or min(smallest.size) * scale_min >= 1:
        return
    height, width = smallest.size
    raise ValueError(f"--scale-min {scale_min}: the smallest training image, "
                     f"{smallest.pair[0]} ({height} x {width}), would be rescaled to under one "
                     f"pixel; expected --scale-min >= {1 / min(smallest.size):.3g}, or "
                     f"--no-augment")


def _focus(config: DataConfig, spec: DatasetSpec) -> tuple[int, ...]:
    """The class indices of ``--focus-classes``, refusing a name the dataset does not have."""
    names = config.focus_classes or ()
    unknown = [name for name in names if name not in spec.class_names]
    if unknown:
        raise ValueError(f"--focus-classes {','.join(names)}: {', '.join(unknown)} is not a "
                         f"class of this dataset ({', '.join(spec.class_names)})")
    return tuple(spec.class_names.index(name) for name in names)


# Decoded training pairs kept in memory: a share of the memory available, at most CACHE_MAX.
# Only without DataLoader workers: `fit` makes a loader, and so new worker processes, each
# epoch, and a worker's cache would go with it.
CACHE_SHARE, CACHE_MAX = 0.25, 4 * 2**30


def _cache_budget(config: DataConfig) -> int:
    from ..memory import available_bytes

    available = available_bytes(torch.device("cpu"))
    if config.workers or not config.augment or available is None:
        return 0
    return int(min(CACHE_SHARE * available, CACHE_MAX))


def build_datasets(config: DataConfig) -> Datasets:
    """Train and validation datasets with normalisation from the training set (or the config),
    and the notices a user must read before training on them (`Datasets`)."""
    if config.synthetic:
        return _synthetic_datasets(config)
    source = _source(config)
    scans = [FolderScan(pairs, source.spec, config.skip_bad, split)
             for pairs, split in ((source.train, "training"), (source.val, "validation"))]
    # The 0/255 question is about every mask of the dataset, so both splits answer it.
    values = _summed(scans[0].raw_values(), scans[1].raw_values())
    spec, notices = _resolve_spec(source, values, [i.pair for s in scans for i in s.items])
    from .transforms import TrainTransform  # albumentations and cv2: only when used

    if config.augment:
        _check_rescale_applies(config.scale_min, scans[0].items)
    transform = TrainTransform(config.size, (config.scale_min, config.scale_max),
                               spec.ignore_index, focus=_focus(config, spec),
                               focus_share=config.focus_share) if config.augment else None
    train = FolderDataset(scans[0], spec, transform, seed=config.seed, skip_bad=config.skip_bad,
                          cache_bytes=_cache_budget(config))
    val = FolderDataset(scans[1], spec, skip_bad=config.skip_bad)
    if val.in_channels != train.in_channels:
        raise ValueError(f"training images have {train.in_channels} channels (for example "
                         f"{train.pairs[0][0]}) but validation images {val.in_channels} "
                         f"({val.pairs[0][0]}); expected the same")
    notices = source.notices + notices + _training_warnings(train)
    mean, std = _normalise(config, train.channel_stats(), train, val)
    return Datasets(train, val, spec, train.in_channels, mean, std, train.class_pixels.tolist(),
                    train.skipped + val.skipped, notices,
                    _summary(train, len(train), len(val), notices))


def stored_mask_values(config: DataConfig) -> dict[int, int]:
    """Pixels per stored mask value over every readable mask of a folder source, as stored
    (before any remap): what `unetseg check` shows when the datasets cannot be built (no
    class names, a value that is no class), so that the fix can be read off the masks.
    Unreadable masks are left out; a folder whose pairs cannot be listed holds none."""
    if config.synthetic or config.source in PRESET_SOURCES:
        return {}
    root = Path(config.source)
    try:
        spec = _folder_spec(root, config, None)[0]
    except ValueError:                  # no class names: grey masks still read as stored
        spec = DatasetSpec(class_names=("a", "b"))
    try:
        every = _folder_splits(root, config, [])[2]
    except (ValueError, OSError):
        return {}
    return raw_mask_values(every, spec, skip_bad=True)


def has_test_folder(config: DataConfig) -> bool:
    """A folder source laid out as train/ and test/ (and no val/): its test/ is held out."""
    root = Path(config.source)
    return (not config.synthetic and config.source not in PRESET_SOURCES
            and (root / "train").is_dir() and (root / "test").is_dir()
            and not (root / "val").is_dir())


def build_eval_dataset(
    config: DataConfig, mean: tuple[float, ...], std: tuple[float, ...], split: str = "val",
    class_names: tuple[str, ...] | list[str] | None = None,
    recorded: DatasetSpec | None = None,
) -> tuple[Dataset, DatasetSpec]:
    """One split, normalised with known statistics (a checkpoint's), without augmentation.

    ``split`` is ``"train"`` or ``"val"``: the same images the run trained or validated on; or
    ``"all"``: every pair of a folder (``train/`` and ``val/`` together, or all of ``images/`` +
    ``masks/``; both splits of a preset), for scoring a whole test folder. ``"test"`` is
    CamVid's held-out test/ + testannot/, and for synthetic data a draw from seeds that
    neither of the others uses.

    A folder that has neither a dataset file nor ``--classes`` is read with ``recorded`` (a
    checkpoint's mask mapping: classes, remap, ignore label) where given, else with
    ``class_names`` (a checkpoint's). Masks are read as `build_datasets` reads them (the
    0/255 question is answered over the training and validation masks together); a folder
    dataset's ``notices`` say how.
    """
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, found {split!r}")
    if config.synthetic:
        if split == "all":
            raise ValueError(f"--split all scores every pair of a folder; --data "
                             f"{config.source} has train, val and test")
        length = config.train_samples if split == "train" else config.val_samples
        dataset = _synthetic(config, length, config.seed + SEED_OFFSETS[split], mean, std)
        return dataset, DatasetSpec(class_names=dataset.class_names)
    if split == "test" and not (config.source in PRESET_SOURCES or has_test_folder(config)):
        raise ValueError(f"--split test is for synthetic data, CamVid, ISBI and folders with "
                         f"train/ and test/; --data {config.source} has train, val and all "
                         f"(point --data or --val at a test folder)")
    source = _source(config, tuple(class_names) if class_names else None, recorded)
    if split == "test" and config.source == "camvid":
        pairs = camvid_test_pairs(config.root, source.notices)
    elif split == "test" and config.source == "isbi":
        pairs = isbi_test_pairs(config.root, source.notices)
    elif split == "test":
        test = Path(config.source) / "test"
        pairs = match_pairs(test / "images", test / "masks", source.notices)
    else:
        pairs = {"train": source.train, "val": source.val, "all": source.every}[split]
    scan = FolderScan(pairs, source.spec)
    values, decided_over = scan.raw_values(), [item.pair for item in scan.items]
    if not source.labels_declared and source.spec.num_classes == 2:
        # The 0/255 question is answered as training answered it: over both splits' masks.
        chosen = set(pairs)
        others = [pair for pair in source.train + source.val if pair not in chosen]
        values = _summed(values, raw_mask_values(others, source.spec, config.skip_bad))
        decided_over += others
    spec, notices = _resolve_spec(source, values, decided_over)
    dataset = FolderDataset(scan, spec, mean=mean, std=std)
    dataset.notices = source.notices + notices
    return dataset, spec
