"""Image/mask folders: ``images/`` and ``masks/`` matched by file stem, described by a small
dataset file (`unetseg.data.spec`).

Files in the folders that are not images (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, any
dot-file, any suffix other than an image's) are left out and counted in a notice. Every pair is
checked once when the dataset is built (`FolderScan`: the image's size and channels from its
header, the raw values of the decoded mask, pixel sums of an even sample of images), and
checked against the spec from those numbers, so a bad file stops the run before training with
its name and what was expected, not hours later. What a scan found is kept in an index under
`unetseg.files.cache_dir()`, never in the data folder, so that the next scan of unchanged
files (another DDP rank, a resumed run) reads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import IMAGE_SUFFIXES, images_by_stem, read_image, read_raw_image
from .scan_cache import FolderIndex, FolderIndexes
from .spec import DATASET_FILES, DatasetSpec, default_colours, find_spec_file, read_spec_file
from .tensors import ChannelStats, label_type, to_tensors

# DatasetSpec, default_colours, find_spec_file and read_spec_file live in .spec; they are
# imported here for the code that reads folders with them.
__all__ = ["FolderDataset", "FolderScan", "PairScan", "match_pairs", "raw_mask_values",
           "read_split_file", "split_by_ratio", "DatasetSpec", "default_colours",
           "find_spec_file", "read_spec_file", "DATASET_FILES"]

Pairs = list[tuple[Path, Path]]
# (image HWC float32, mask HW int64, seed) -> (image, mask): a joint augmentation.
JointTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _junk_notice(folder: Path, junk: list[str]) -> str:
    shown = ", ".join(junk[:3]) + (", ..." if len(junk) > 3 else "")
    return (f"skipped {len(junk)} non-image file{'s' if len(junk) > 1 else ''} in {folder} "
            f"({shown}); images are {', '.join(IMAGE_SUFFIXES)}")


def match_pairs(image_dir: Path, mask_dir: Path, notices: list[str] | None = None) -> Pairs:
    """(image, mask) pairs matched by stem; an image without mask or the reverse is an error.

    Non-image files are left out; ``notices``, when given, gets one line per folder that had
    some (so a user sees that ``scan.tif.bak`` was not used).
    """
    images, image_junk = images_by_stem(image_dir)
    masks, mask_junk = images_by_stem(mask_dir)
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


# ---------------------------------------------------------------- what a scan finds per pair

# Images decoded for the normalisation statistics, spread evenly over a scan's pairs (all of
# them in a folder of up to this many); the others are checked from their headers.
STATS_SAMPLES = 256


def _all_bad(skipped: list[tuple[str, str]], split: str) -> ValueError:
    """The error when ``skip_bad`` left a split with no pair: it names the split, since the
    other split may be fine (1 bad pair of 6 can be the whole validation split)."""
    count = "the only pair" if len(skipped) == 1 else f"all {len(skipped)} pairs"
    where = f" of the {split} split" if split else ""
    return ValueError(f"{count}{where} {'is' if len(skipped) == 1 else 'are'} bad, and a split "
                      f"needs one good pair; the first: {skipped[0][1]}")


@dataclass
class PairScan:
    """One pair as the construction pass found it: all a check against a spec needs."""

    pair: tuple[Path, Path]
    size: tuple[int, int]          # (H, W), the image's header and the decoded mask alike
    channels: int                  # the image's, as `read_raw_image` would return it
    stats: ChannelStats            # the image's pixel sums if it was sampled, else empty
    values: np.ndarray             # distinct stored mask values, before remap (int64)
    counts: np.ndarray             # pixels holding each of them (int64)


def _spread(n: int) -> list[int]:
    """Up to `STATS_SAMPLES` positions spread evenly over ``range(n)``; all when n is fewer."""
    return np.linspace(0, n - 1, min(n, STATS_SAMPLES)).round().astype(int).tolist()


def _add_counts(total: dict[int, int], values: np.ndarray, counts: np.ndarray) -> None:
    for value, count in zip(values.tolist(), counts.tolist()):
        total[value] = total.get(value, 0) + count


# ---------------------------------------------------------------- one pass over every pair

def _scan_pair(pair: tuple[Path, Path], index: FolderIndex, sampled: bool) -> PairScan:
    """Check one pair on its own from the image's header and the decoded mask, decoding the
    image too if ``sampled`` (for its pixel sums), each file as ``index`` recalls it if it is
    unchanged; ValueError naming the file if bad."""
    image_path, mask_path = pair
    height, width, channels, stats = index.image(image_path, sampled)
    mask_size, values, counts = index.mask(mask_path)
    if mask_size != (height, width):
        raise ValueError(
            f"mask {mask_path} is {mask_size[1]}x{mask_size[0]} but image {image_path} is "
            f"{width}x{height} (width x height); expected the same size")
    return PairScan(pair, (height, width), channels, stats, values, counts)


class FolderScan:
    """Every pair checked once: sizes, channel counts, the stored mask values, and pixel sums
    of up to `STATS_SAMPLES` images spread evenly over the pairs.

    Masks are decoded (their values are counted); images are read from their headers (PNG
    checksums verified, `image_header`), except the sampled ones. What was found is kept in
    an index (`unetseg.data.scan_cache`), so the next scan of the same
    files (another DDP rank, the next run) reads none of them, only their sizes and times.

    What the values *mean* is decided afterwards (`FolderDataset` checks them against a spec),
    so a question about the whole dataset, such as whether masks stored as 0/255 mean two
    classes, is answered from the raw values before anything is refused or ignored.

    Args:
        pairs: (image path, mask path) pairs.
        spec: how masks are decoded (``colours``, ``ignore_colour``); its remap is not applied.
        skip_bad: leave out unreadable or inconsistent pairs (listed in ``skipped``).
        split: which split the pairs are ("training", "validation"), for messages.
    """

    def __init__(self, pairs: Pairs, spec: DatasetSpec, skip_bad: bool = False,
                 split: str = "") -> None:
        if not pairs:
            raise ValueError("the dataset is empty: no (image, mask) pairs")
        self.spec, self.split = spec, split
        self.items: list[PairScan] = []
        self.skipped: list[tuple[str, str]] = []          # (image path, why), with skip_bad
        channels: dict[int, Path] = {}
        sampled, indexes = set(_spread(len(pairs))), FolderIndexes(spec)
        for position, pair in enumerate(pairs):
            try:
                item = _scan_pair(pair, indexes.of(pair), position in sampled)
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
        indexes.save()
        if not self.items:
            raise _all_bad(self.skipped, split)
        self.in_channels = next(iter(channels))

    def raw_values(self) -> dict[int, int]:
        """Pixels per stored mask value (before remap) over every scanned pair."""
        total: dict[int, int] = {}
        for item in self.items:
            _add_counts(total, item.values, item.counts)
        return total


def raw_mask_values(pairs: Pairs, spec: DatasetSpec, skip_bad: bool = False) -> dict[int, int]:
    """Pixels per stored mask value over the masks of ``pairs``, reading no image: for a
    decision about the whole dataset when only one of its splits is being built. Masks are
    recalled from, and recorded in, the index `FolderScan` keeps."""
    total: dict[int, int] = {}
    indexes = FolderIndexes(spec)
    for pair in pairs:
        try:
            _, values, counts = indexes.of(pair).mask(pair[1])
        except ValueError:
            if not skip_bad:
                raise
            continue
        _add_counts(total, values, counts)
    indexes.save()
    return total


class FolderDataset(Dataset):
    """Pairs of image and mask files as ``(image float32 (C, H, W), mask int64 (H, W))``.

    Images are in [0, 1] before ``mean``/``std`` normalisation; masks hold class indices in
    [0, num_classes) or ``spec.ignore_index``. The whole dataset is checked on construction
    (`FolderScan`): every image's header is readable and gives its mask's size, every mask
    decodes and its values (after ``remap``) are classes or the ignore label, and all images
    have the same channel count. Images are decoded only for the statistics (up to
    `STATS_SAMPLES` of them; all in a smaller folder); a PNG's checksums are verified without
    decoding, but damage past the header of another format (a truncated JPEG) in an image left
    out of the sample is reported, with its name, when it is first loaded. The check
    also counts, over the kept pairs, pixels per class (``class_pixels``), masks holding each
    class (``class_images``) and ignored pixels (``ignored_pixels``), for class weights,
    warnings and reports.

    Args:
        pairs: (image path, mask path) pairs, or their `FolderScan` when the caller has already
            scanned them (with a spec that decodes masks as ``spec`` does).
        spec: what the mask values mean.
        transform: optional joint augmentation ``(image HWC as stored, labels HW, seed) ->
            (image float32 HWC in [0, 1], mask)`` (`unetseg.data.transforms.TrainTransform`).
        mean, std: per-channel normalisation; None leaves images in [0, 1].
        seed: base of the per-sample augmentation seeds (with ``epoch`` and the index).
        skip_bad: drop unreadable or inconsistent pairs (listed in ``skipped``) instead of
            raising on the first one.
        cache_bytes: with a ``transform``, keep decoded pairs (the image as stored, the labels
            as uint8 or uint16) in memory up to this many bytes, so that later epochs decode
            only the pairs that did not fit (0: decode every sample).
    """

    def __init__(
        self, pairs: Pairs | FolderScan, spec: DatasetSpec,
        transform: JointTransform | None = None,
        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
        seed: int = 0, skip_bad: bool = False, cache_bytes: int = 0,
    ) -> None:
        scan = pairs if isinstance(pairs, FolderScan) else FolderScan(pairs, spec, skip_bad)
        decoding = (spec.colours, spec.ignore_colour, spec.ignore_index)
        if (scan.spec.colours, scan.spec.ignore_colour, scan.spec.ignore_index) != decoding:
            raise ValueError("the FolderScan decoded masks with other colours or ignore label "
                             "than this spec; scan the pairs with this spec")
        self.spec, self.transform = spec, transform
        self.mean, self.std = mean, std
        self.seed, self.epoch = seed, 0
        self.skip_bad, self.split = skip_bad, scan.split
        self.skipped = list(scan.skipped)                  # (image path, why), with skip_bad
        self.notices: list[str] = []     # what a user should read first; set by its builder
        self.in_channels = scan.in_channels
        self.cache_bytes, self._cached, self._cached_bytes = cache_bytes, {}, 0
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
        """Per-channel statistics of the kept pairs' sampled images (`STATS_SAMPLES` spread
        evenly over the scanned pairs: every image of a smaller folder), gathered on
        construction."""
        return self._stats

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, index), so resumed runs redraw the same ones."""
        self.epoch = epoch

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 (H, W, C) in [0, 1] and mask int64 (H, W), before any transform."""
        image_path, mask_path = self.pairs[index]
        return read_image(image_path), self.spec.apply_remap(self.spec.decode_mask(mask_path))

    def stored(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, C) as stored (uint8, uint16 or float) and labels (H, W) as uint8 (or
        uint16 beyond 255), before any transform: the training transform's input, kept in
        memory while ``cache_bytes`` allows."""
        pair = self._cached.get(index)
        if pair is None:
            image_path, mask_path = self.pairs[index]
            labels = self.spec.apply_remap(self.spec.decode_mask(mask_path))
            largest = max(self.num_classes - 1, self.spec.ignore_index)
            pair = read_raw_image(image_path), labels.astype(label_type(largest))
            size = pair[0].nbytes + pair[1].nbytes
            if self._cached_bytes + size <= self.cache_bytes:
                self._cached[index], self._cached_bytes = pair, self._cached_bytes + size
        return pair

    def raw(self, index: int) -> np.ndarray:
        """Image ``index`` before normalisation: float32 (H, W, C) in [0, 1]."""
        return read_image(self.pairs[index][0])

    def name(self, index: int) -> str:
        return self.pairs[index][0].name

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.transform is None:
            image, mask = self.load(index)
        else:      # the transform crops the stored image first and scales only the crop
            sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, index])
                              .generate_state(1)[0])
            image, mask = self.transform(*self.stored(index), sample_seed)
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
            raise _all_bad(self.skipped, self.split)
        if not self._stats.count:
            # skip_bad left out every sampled pair (their labels were bad): sample the kept.
            for position in _spread(len(self.pairs)):
                self._stats.add(read_image(self.pairs[position][0]))
