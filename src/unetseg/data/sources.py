"""From a data configuration to train and validation datasets.

``source`` is ``"synthetic"`` (built in: background, circle, square), ``"binary"`` (built in:
background and objects covering ``foreground`` of each image), ``"camvid"`` or ``"isbi"``
(presets, with ``root`` the dataset folder), or the path of an image/mask folder (``images/`` +
``masks/``, or ``train/`` + ``val/`` folders each holding those, and an optional dataset file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from ..config import DataConfig
from .folder import (
    DatasetSpec,
    FolderDataset,
    find_spec_file,
    match_pairs,
    read_split_file,
    split_by_ratio,
)
from .presets import CAMVID, ISBI, camvid_pairs, isbi_pairs
from .synthetic import BinaryShapes, SyntheticShapes

__all__ = ["Datasets", "build_datasets", "build_eval_dataset", "SPLITS"]


@dataclass
class Datasets:
    train: Dataset
    val: Dataset
    spec: DatasetSpec
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_pixels: list[int] | None     # training pixels per class, where counted
    skipped: list[tuple[str, str]] = field(default_factory=list)   # bad pairs left out


def _folder_pairs(config: DataConfig) -> tuple[list, list, DatasetSpec]:
    root = Path(config.source)
    if not root.exists():
        raise ValueError(f"--data {config.source}: no such folder; expected 'synthetic', "
                         f"'binary', 'camvid', 'isbi' or a folder with images/ and masks/")
    spec_file = Path(config.spec) if config.spec else find_spec_file(root)
    if spec_file is not None:
        spec = DatasetSpec.from_file(spec_file)
    elif config.classes:
        spec = DatasetSpec(class_names=tuple(config.classes))
    else:
        raise ValueError(f"{root}: no dataset file (dataset.yaml or dataset.json) and no "
                         f"--classes; expected one of them to name the classes")
    if (root / "train").is_dir():
        train = match_pairs(root / "train" / "images", root / "train" / "masks")
        val_root = Path(config.val) if config.val else root / "val"
        return train, match_pairs(val_root / "images", val_root / "masks"), spec
    pairs = match_pairs(root / "images", root / "masks")
    if config.val:
        return pairs, match_pairs(Path(config.val) / "images", Path(config.val) / "masks"), spec
    by_stem = {p[0].stem: p for p in pairs}
    if config.train_list or config.val_list:
        if not (config.train_list and config.val_list):
            raise ValueError("give both --train-list and --val-list, or neither")
        return (_listed(root, config.train_list, by_stem), _listed(root, config.val_list, by_stem),
                spec)
    train, val = split_by_ratio(sorted(by_stem), config.val_ratio, config.seed)
    return [by_stem[s] for s in train], [by_stem[s] for s in val], spec


def _listed(root: Path, listing: str, by_stem: dict) -> list:
    """The pairs a split file names (SegNet-style lines work: the first path's stem counts)."""
    path = Path(listing) if Path(listing).is_absolute() else root / listing
    if not path.is_file():
        raise ValueError(f"split file {path} does not exist")
    stems = read_split_file(path)
    unknown = [stem for stem in stems if stem not in by_stem]
    if unknown:
        raise ValueError(f"{path} names {len(unknown)} image(s) not in {root / 'images'}, for "
                         f"example {unknown[:3]}")
    if not stems:
        raise ValueError(f"{path} lists no images")
    return [by_stem[stem] for stem in stems]


def _pairs_and_spec(config: DataConfig) -> tuple[list, list, DatasetSpec]:
    if config.source == "camvid":
        return (*camvid_pairs(Path(config.root)), CAMVID)
    if config.source == "isbi":
        return (*isbi_pairs(Path(config.root), config.val_ratio, config.seed), ISBI)
    return _folder_pairs(config)


# Validation and test draws use seeds far from the training ones (and from each other), so
# the sets never share a sample.
SEED_OFFSETS = {"train": 0, "val": 1_000_003, "test": 2_000_003}
SPLITS = tuple(SEED_OFFSETS)


def _synthetic(
    config: DataConfig, length: int, seed: int,
    mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
) -> SyntheticShapes:
    if config.source == "binary":
        return BinaryShapes(length, config.size, config.foreground, seed, mean, std)
    return SyntheticShapes(length, config.size, seed, mean, std)


def build_datasets(config: DataConfig) -> Datasets:
    """Train and validation datasets with normalisation from the training set (or the config)."""
    if config.synthetic:
        train = _synthetic(config, config.train_samples, config.seed)
        val = _synthetic(config, config.val_samples, config.seed + SEED_OFFSETS["val"])
        stats, class_pixels, skipped = train.channel_stats(), None, []
        spec = DatasetSpec(class_names=train.class_names)
    else:
        train_pairs, val_pairs, spec = _pairs_and_spec(config)
        from .transforms import TrainTransform  # albumentations and cv2: only when used

        transform = TrainTransform(config.size, (config.scale_min, config.scale_max),
                                   spec.ignore_index) if config.augment else None
        train = FolderDataset(train_pairs, spec, transform, seed=config.seed,
                              skip_bad=config.skip_bad)
        val = FolderDataset(val_pairs, spec, skip_bad=config.skip_bad)
        if val.in_channels != train.in_channels:
            raise ValueError(f"training images have {train.in_channels} channels (for example "
                             f"{train.pairs[0][0]}) but validation images {val.in_channels} "
                             f"({val.pairs[0][0]}); expected the same")
        stats, class_pixels = train.channel_stats(), train.class_pixels.tolist()
        skipped = train.skipped + val.skipped
    mean, std = stats.mean_std()
    if config.mean is not None and config.std is not None:
        mean, std = tuple(config.mean), tuple(config.std)
    for dataset in (train, val):
        dataset.mean, dataset.std = mean, std
    return Datasets(train, val, spec, train.in_channels, mean, std, class_pixels, skipped)


def build_eval_dataset(
    config: DataConfig, mean: tuple[float, ...], std: tuple[float, ...], split: str = "val",
) -> tuple[Dataset, DatasetSpec]:
    """One split, normalised with known statistics (a checkpoint's), without augmentation.

    ``split`` is ``"train"`` or ``"val"``: the same images the run trained or validated on.
    Synthetic data also has ``"test"``, a draw from seeds that neither of the others uses.
    """
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, found {split!r}")
    if config.synthetic:
        length = config.train_samples if split == "train" else config.val_samples
        dataset = _synthetic(config, length, config.seed + SEED_OFFSETS[split], mean, std)
        return dataset, DatasetSpec(class_names=dataset.class_names)
    if split == "test":
        raise ValueError(f"--split test is for synthetic data; --data {config.source} has "
                         f"train and val splits (point --data or --val at a test folder)")
    train_pairs, val_pairs, spec = _pairs_and_spec(config)
    pairs = train_pairs if split == "train" else val_pairs
    return FolderDataset(pairs, spec, mean=mean, std=std), spec
