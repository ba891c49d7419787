"""What earlier scans of an image/mask folder found, so the next scan reads no unchanged file.

A scan (`unetseg.data.folder.FolderScan`) needs, per pair, the image's size and channels and
the mask's stored values and their pixel counts. Reading them costs a header and a mask decode
per pair: seconds for 10,000 pairs, on every DDP rank and every run. `FolderIndex` keeps them
as JSON under `unetseg.files.cache_dir()` (never in the data folder), keyed by file name with
the file's size and mtime, so a file is read again only when it changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ..files import cache_dir, write_json
from .io import image_header, read_image
from .spec import DatasetSpec
from .tensors import ChannelStats

__all__ = ["FolderIndex", "FolderIndexes", "value_counts", "INDEX_VERSION"]


def value_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a mask and how many pixels hold each."""
    flat = mask.ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 1 << 16:
        counts = np.bincount(flat)                  # a millisecond where np.unique sorts
        values = np.flatnonzero(counts)
        return values.astype(np.int64), counts[values].astype(np.int64)
    values, counts = np.unique(flat, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


# What an index entry holds and how files were read to fill it; any change bumps it.
INDEX_VERSION = 1
# Files changed this little before a scan are not indexed: file systems stamp times from a
# coarse clock (a jiffy; seconds on some), so a rewrite within one tick would keep the time.
RECENT_NS = 2_000_000_000
Stamp = tuple[int, int]                 # a file's size in bytes and its mtime_ns


def _stamp(path: Path) -> Stamp | None:
    """What tells a changed file (None if the file cannot be looked at: it is then read, and
    the reading says what is wrong)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _sums(stats: ChannelStats) -> list | None:
    return [stats.count, stats.total.tolist(), stats.squares.tolist()] if stats.count else None


def _recalled_image(entry: object,
                    stamp: Stamp | None) -> tuple[int, int, int, ChannelStats] | None:
    """(height, width, channels, pixel sums) from an index entry; None if the file changed
    or the entry is malformed."""
    if stamp is None or not isinstance(entry, list) or entry[:2] != list(stamp):
        return None
    try:
        height, width, channels, sums = entry[2:]
        stats = ChannelStats()
        if sums is not None:
            stats.count = int(sums[0])
            stats.total, stats.squares = (np.asarray(s, np.float64) for s in sums[1:])
        found = int(height), int(width), int(channels), stats
    except (TypeError, ValueError, LookupError):
        return None
    sums_fit = sums is None or stats.total.shape == stats.squares.shape == (found[2],)
    return found if found[2] in (1, 3) and sums_fit else None


def _recalled_mask(entry: object, stamp: Stamp | None) -> tuple[tuple[int, int], np.ndarray,
                                                                np.ndarray] | None:
    """((height, width), values, counts) from an index entry; None if the file changed or
    the entry is malformed."""
    if stamp is None or not isinstance(entry, list) or entry[:2] != list(stamp):
        return None
    try:
        height, width, values, counts = entry[2:]
        found = (int(height), int(width)), np.asarray(values, np.int64), np.asarray(counts,
                                                                                 np.int64)
    except (TypeError, ValueError, LookupError):
        return None
    return found if found[1].ndim == 1 and found[1].shape == found[2].shape else None


class FolderIndex:
    """What earlier scans found in one images folder and one masks folder (masks decoded with
    one spec's colours, ignore colour and label), kept as JSON under `cache_dir()`.

    Per image file name ``[bytes, mtime_ns, height, width, channels, sums]``, ``sums`` being
    ``[pixels, per-channel sums, sums of squares]`` for an image decoded for the statistics,
    else null; per mask file name ``[bytes, mtime_ns, height, width, values, counts]``. A file
    is recalled only while it keeps its recorded size and time; files changed less than
    `RECENT_NS` before the scan began are not recorded. A missing, unreadable or malformed
    index reads as an empty one, and a malformed entry as a file to read.
    """

    def __init__(self, image_dir: Path, mask_dir: Path, spec: DatasetSpec) -> None:
        self.image_dir, self.mask_dir, self.spec = image_dir, mask_dir, spec
        self.started_ns = time.time_ns()
        # Through JSON once, so that it compares equal to the header read back from the file.
        self.header = json.loads(json.dumps(
            {"version": INDEX_VERSION, "image_folder": str(image_dir.resolve()),
             "mask_folder": str(mask_dir.resolve()),
             "decoding": [spec.colours, spec.ignore_colour, spec.ignore_index]}))
        name = hashlib.sha256(json.dumps(self.header).encode()).hexdigest()[:32]
        try:
            self.path: Path | None = cache_dir() / "folders" / f"{name}.json"
        except RuntimeError:             # no home folder (nor $UNETSEG_CACHE_DIR): no index
            self.path = None
        self.images, self.masks = self._read()
        self.changed = False

    def _read(self) -> tuple[dict[str, list], dict[str, list]]:
        if self.path is None:
            return {}, {}
        try:
            found = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}, {}
        if (not isinstance(found, dict) or any(found.get(key) != value
                                               for key, value in self.header.items())
                or not isinstance(found.get("images"), dict)
                or not isinstance(found.get("masks"), dict)):
            return {}, {}
        return found["images"], found["masks"]

    def _record(self, table: dict[str, list], path: Path, stamp: Stamp | None,
                facts: list) -> None:
        if stamp is not None and stamp[1] < self.started_ns - RECENT_NS:
            table[path.name] = [*stamp, *facts]
            self.changed = True

    def image(self, path: Path, sampled: bool) -> tuple[int, int, int, ChannelStats]:
        """(height, width, channels, pixel sums) of an image: as recorded while the file is
        unchanged, else from its header; a ``sampled`` image's pixels are decoded for their
        sums unless they were recorded. ValueError naming the file if it cannot be read."""
        stamp = _stamp(path)
        found = _recalled_image(self.images.get(path.name), stamp)
        if found is not None and (found[3].count or not sampled):
            return found
        height, width, channels, stats = found or (*image_header(path), ChannelStats())
        if sampled:
            stats.add(read_image(path))
        self._record(self.images, path, stamp, [height, width, channels, _sums(stats)])
        return height, width, channels, stats

    def mask(self, path: Path) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        """((height, width), distinct stored values, pixels holding each) of a mask: as
        recorded while the file is unchanged, else decoded. ValueError naming the file."""
        stamp = _stamp(path)
        found = _recalled_mask(self.masks.get(path.name), stamp)
        if found is not None:
            return found
        decoded = self.spec.decode_mask(path)
        values, counts = value_counts(decoded)
        self._record(self.masks, path, stamp, [*decoded.shape, values.tolist(), counts.tolist()])
        return decoded.shape, values, counts

    def save(self) -> None:
        """Write the index if this scan recorded something, leaving out files that are gone.
        A cache that cannot be written costs the next scan a reading, nothing more."""
        if not self.changed or self.path is None:
            return
        try:
            for table, folder in ((self.images, self.image_dir), (self.masks, self.mask_dir)):
                present = set(os.listdir(folder))
                for name in [name for name in table if name not in present]:
                    del table[name]
            write_json(self.path, {**self.header, "images": self.images, "masks": self.masks},
                       indent=None)
        except OSError:
            pass


class FolderIndexes(dict):
    """The `FolderIndex` of each (images folder, masks folder) a list of pairs spans."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        self.spec = spec

    def of(self, pair: tuple[Path, Path]) -> FolderIndex:
        folders = (pair[0].parent, pair[1].parent)
        if folders not in self:
            self[folders] = FolderIndex(*folders, self.spec)
        return self[folders]

    def save(self) -> None:
        for index in self.values():
            index.save()
