"""The job behind ``unetseg check DATA``: the data doctor, run before training.

It builds the datasets exactly as ``unetseg train`` does (`build_datasets`), so the two agree on
what is an error, then reads every kept pair once more for what training does not look at:

- the class table (pixels, share, training images holding each class: `Datasets.summary`);
- the stored mask values before the remap and the labels they become after it;
- image sizes and channel counts;
- files in an images or masks folder without their partner (matched by stem);
- each class's objects in the training masks: connected components, their extents and how
  thin the class is (`unetseg.data.fingerprint`; cached, so `unetseg plan` reads none again);
- validation images that nearly duplicate a training image, by a 64-bit difference hash
  (`difference_hash`): a pair is reported when their hashes differ in at most
  `DUPLICATE_DISTANCE` of the 64 bits. Frames of one video or slices of one stack land on
  both sides of a careless split, and then validation scores measure memory, not learning.

Every bad pair is listed, not only the first: the datasets are built with ``skip_bad`` on and
each pair it leaves out becomes an error (or, when the user asked for ``--skip-bad``, a
warning), so one run of ``check`` names every file to fix. Errors (status 2) stop training;
warnings (status 1) are worth reading first; ``strict`` counts warnings as errors.

``--json FILE`` also writes the report (`write_report`). Its output policy
(`unetseg.outputs`): refuse an existing file unless ``--overwrite``, and a file inside the
data's own folders always (a ``dataset.json`` there would be read as the dataset file).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import DataConfig
from ..data.build import Datasets, build_datasets, stored_mask_values
from ..data.fingerprint import fingerprint
from ..data.folder import DatasetSpec
from ..data.io import list_images, read_raw_image, scale_to_unit
from ..files import write_json
from ..outputs import claim_file
from ..progress import progress as progress_bar

__all__ = ["DataReport", "ClassRow", "ValueRow", "SizeRow", "NearDuplicate", "ObjectRow",
           "check_data",
           "format_report", "difference_hash", "near_duplicates", "DUPLICATE_DISTANCE",
           "data_folders", "claim_report_file", "write_report"]

# Measured on CamVid: a re-encoded or lightly noised copy moves a hash by 0-4 bits, frames
# 1/15 s apart differ by about 3, 1/3 s apart by about 7; the closest unrelated training
# image to a validation image is 12 or more bits away (a train/val pair averages 28; 32, half
# of 64, is chance). 5 catches copies and near-identical frames, not different scenes.
DUPLICATE_DISTANCE = 5
SHOWN = 5                      # examples per listing in the terminal (the JSON holds all)
GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)    # ITU-R 601 luma, as Pillow's "L"
BLOCK = 1 << 22                # hash comparisons held in memory at once (4 Mi uint64: 32 MB)


# ---------------------------------------------------------------- the report

@dataclass(frozen=True)
class ClassRow:
    """One class in the training masks (after the remap)."""

    name: str
    id: int
    pixels: int
    share: float
    images: int


@dataclass(frozen=True)
class ValueRow:
    """One stored mask value over all masks, and the label the remap makes of it (the value
    itself where the datasets could not be built: no remap could be trusted)."""

    value: int
    pixels: int
    label: int


@dataclass(frozen=True)
class SizeRow:
    height: int
    width: int
    images: int


@dataclass(frozen=True)
class ObjectRow:
    """One class's connected components in the training masks (`unetseg.data.fingerprint`,
    the pass `unetseg plan` then reads from its cache): extents weighted by pixels."""

    name: str
    components: int
    extent_p50: float
    extent_p95: float
    edge_share: float                  # of its pixels within 2 px of another label


@dataclass(frozen=True)
class NearDuplicate:
    """A validation image and the closest training image, ``distance`` bits apart."""

    val: str
    train: str
    distance: int


@dataclass
class DataReport:
    """What `check_data` found. ``status``: 0 clean, 1 warnings, 2 errors (warnings too when
    ``strict``). Lists are empty where a part could not be checked (the build failed, or the
    data is built in)."""

    source: str
    root: str | None = None
    built_in: bool = False
    class_names: list[str] = field(default_factory=list)
    ignore_index: int = 255
    train_images: int = 0
    val_images: int = 0
    classes: list[ClassRow] = field(default_factory=list)
    ignored_share: float | None = None          # of the training pixels
    values: list[ValueRow] = field(default_factory=list)
    masks_read: int = 0
    sizes: list[SizeRow] = field(default_factory=list)
    channels: dict[int, int] = field(default_factory=dict)     # channel count -> images
    unpaired_images: list[str] = field(default_factory=list)
    unpaired_masks: list[str] = field(default_factory=list)
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    duplicate_distance: int = DUPLICATE_DISTANCE
    objects: list[ObjectRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    strict: bool = False

    @property
    def status(self) -> int:
        if self.errors or (self.strict and self.warnings):
            return 2
        return 1 if self.warnings else 0

    def label_pixels(self) -> dict[int, int]:
        """The mask histogram after the remap: label (class or ignore index) -> pixels."""
        total: Counter[int] = Counter()
        for row in self.values:
            total[row.label] += row.pixels
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``status`` and ``label_pixels`` are added for readers and ignored
        by `from_dict`. Integer keys become strings, as JSON requires."""
        values = asdict(self)
        values["channels"] = {str(c): n for c, n in self.channels.items()}
        return {**values, "status": self.status,
                "label_pixels": {str(k): v for k, v in self.label_pixels().items()}}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataReport:
        """The report `to_dict` gave (also after a JSON round trip)."""
        values = {k: v for k, v in values.items() if k not in ("status", "label_pixels")}
        rows = {"classes": ClassRow, "values": ValueRow, "sizes": SizeRow,
                "near_duplicates": NearDuplicate, "objects": ObjectRow}
        for key, kind in rows.items():
            values[key] = [kind(**row) for row in values.get(key, [])]
        values["channels"] = {int(c): n for c, n in values.get("channels", {}).items()}
        return cls(**values)


# ---------------------------------------------------------------- pure numerics

def difference_hash(image: np.ndarray) -> int:
    """The 64-bit difference hash of an image (H, W, C), C = 1 or 3, 8- or 16-bit or float.

    The image is made 8-bit grey (ITU-R 601 weights; 16-bit divided by 257, floats stretched
    from their minimum to their maximum) and resized to 9 x 8 with Pillow's Lanczos filter,
    as the common ``imagehash.dhash`` does; bit ``63 - (8 r + c)`` (row 0 in the most
    significant byte) is set where pixel (r, c + 1) is brighter than pixel (r, c). 8-bit grey
    levels keep flat areas flat (in floats, rounding sets bits there at random). A constant
    image hashes to 0.

    On CamVid, Lanczos separated unrelated images best of box, bilinear and Lanczos (nearest
    train/val distance 12 bits, against 8 and 9) while a JPEG re-encode (quality 85), noise
    (sigma 3) or a 2x downscale moved a hash by at most 1, 4 and 3 bits.
    """
    unit = scale_to_unit(image)
    grey = unit[..., 0] if unit.shape[-1] == 1 else unit[..., :3] @ GREY
    if image.dtype.kind == "f":
        low, high = float(grey.min()), float(grey.max())
        grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    grey8 = np.rint(np.clip(grey, 0.0, 1.0) * 255).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(grey8).resize((9, 8), Image.Resampling.LANCZOS))
    bits = pixels[:, 1:] > pixels[:, :-1]                   # (8, 8)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def near_duplicates(
    train: np.ndarray, val: np.ndarray, max_distance: int = DUPLICATE_DISTANCE,
) -> list[tuple[int, int, int]]:
    """(val index, nearest train index, distance) for each validation hash within
    ``max_distance`` bits of some training hash; ties go to the first training image.

    ``train`` and ``val`` are uint64 arrays of hashes. All pairs are compared at once as a
    (n_train, block) matrix of XOR popcounts, in blocks of validation columns so memory stays
    bounded. Empty inputs give an empty list.
    """
    train, val = np.asarray(train, np.uint64), np.asarray(val, np.uint64)
    found: list[tuple[int, int, int]] = []
    if not len(train):
        return found
    step = max(1, BLOCK // len(train))
    for start in range(0, len(val), step):
        distances = np.bitwise_count(train[:, None] ^ val[None, start:start + step])
        nearest = distances.argmin(axis=0)
        closest = distances[nearest, np.arange(distances.shape[1])]
        for j in np.flatnonzero(closest <= max_distance).tolist():
            found.append((start + j, int(nearest[j]), int(closest[j])))
    return found


# ---------------------------------------------------------------- files

def _pair_folders(config: DataConfig) -> list[tuple[Path, Path]]:
    """(images folder, masks folder) of each split, as `build_datasets` lays them out."""
    if config.source == "camvid":
        root = Path(config.root)
        return [(root / split, root / f"{split}annot") for split in ("train", "val")]
    if config.source == "isbi":
        return [(Path(config.root) / "images", Path(config.root) / "masks")]
    root = Path(config.source)
    roots = [root / "train", Path(config.val) if config.val else root / "val"] \
        if (root / "train").is_dir() else [root] + ([Path(config.val)] if config.val else [])
    return [(folder / "images", folder / "masks") for folder in roots]


def data_folders(config: DataConfig) -> set[Path]:
    """The folders the data lives in: the dataset folder (a separate validation folder too)
    and its image and mask folders; none for built-in data."""
    if config.synthetic:
        return set()
    roots = [config.root] if config.root else [config.source, config.val]
    return ({Path(root) for root in roots if root}
            | {folder for pair in _pair_folders(config) for folder in pair})


def claim_report_file(path: str | Path, config: DataConfig, overwrite: bool) -> Path:
    """``--json``'s file, checked before any data is read: never inside `data_folders`, and
    not an existing file unless ``overwrite``."""
    return claim_file(path, overwrite, "--json", data_folders(config))


def write_report(report: DataReport, path: str | Path) -> None:
    """The report as JSON (`DataReport.to_dict`), atomically; claim the path first
    (`claim_report_file`)."""
    write_json(path, report.to_dict())


def _image_stems(folder: Path) -> dict[str, Path]:
    """Image files by stem, as the loader finds them; an absent folder has none, and of two
    files with one stem the last counts (the build names both)."""
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in list_images(folder).images}


def _find_unpaired(report: DataReport, config: DataConfig) -> None:
    for image_dir, mask_dir in _pair_folders(config):
        images, masks = _image_stems(image_dir), _image_stems(mask_dir)
        lonely_images = [images[s] for s in sorted(set(images) - set(masks))]
        lonely_masks = [masks[s] for s in sorted(set(masks) - set(images))]
        report.unpaired_images += [str(p) for p in lonely_images]
        report.unpaired_masks += [str(p) for p in lonely_masks]
        for lonely, kind, other, fix in (
                (lonely_images, "image", mask_dir, "add their masks or move them out"),
                (lonely_masks, "mask", image_dir, "add their images or move them out")):
            if lonely:
                report.warnings.append(
                    f"{_count(len(lonely), kind)} in {lonely[0].parent} without a partner in "
                    f"{other} ({_examples(p.name for p in lonely)}): {fix}")


def _count(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _examples(names: Any, count: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:count]) + (f", ... ({len(names)} in all)"
                                       if len(names) > count else "")


@dataclass
class _FileScan:
    """What one more pass over the files finds: per-split hashes, sizes, channels, values."""

    hashes: dict[str, list[int]] = field(default_factory=lambda: {"train": [], "val": []})
    sizes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    values: Counter = field(default_factory=Counter)
    masks: int = 0


def _scan_files(split: str, pairs: list, spec: DatasetSpec, scan: _FileScan,
                enabled: bool) -> None:
    """Read each pair once: the image for its size, channels and hash, the mask (as training
    decodes it) for its stored values."""
    for image_path, mask_path in progress_bar(pairs, f"check: reading {split}", enabled,
                                              total=len(pairs), unit="pair"):
        image = read_raw_image(image_path)
        scan.sizes[image.shape[:2]] += 1
        scan.channels[image.shape[-1]] += 1
        scan.hashes[split].append(difference_hash(image))
        scan.values.update(_value_counts(spec.decode_mask(mask_path)))
        scan.masks += 1


def _value_counts(mask: np.ndarray) -> dict[int, int]:
    """Pixels per distinct value of an int64 mask."""
    flat = mask.ravel()
    if flat.size and 0 <= flat.min() and flat.max() < 1 << 16:
        counts = np.bincount(flat)                 # far faster than np.unique's sort
        values = np.flatnonzero(counts)
        return dict(zip(values.tolist(), counts[values].tolist()))
    values, counts = np.unique(flat, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


# ---------------------------------------------------------------- the check

def check_data(config: DataConfig, progress: bool = False, strict: bool = False) -> DataReport:
    """Check the data ``config`` describes, as training would read it, and say what to fix.

    Never raises for bad data: every ValueError or OSError (unreadable file, size mismatch,
    unknown mask value, missing folder) becomes one of ``report.errors``, with its message.
    ``progress`` shows a bar (or lines, outside a terminal) while files are read; ``strict``
    makes warnings count as errors in ``report.status``.
    """
    report = DataReport(source=config.source, root=config.root, built_in=config.synthetic,
                        strict=strict)
    if not config.synthetic:
        _find_unpaired(report, config)
    try:
        data = build_datasets(replace(config, skip_bad=True))
    except (ValueError, OSError) as error:
        report.errors.append(str(error))
        _explain_from_stored_values(report, config)
        return report
    _read_datasets(report, config, data)
    if config.synthetic:
        report.sizes = [SizeRow(config.size, config.size, report.train_images
                                + report.val_images)]
        report.channels = {data.in_channels: report.train_images + report.val_images}
        return report
    scan = _FileScan()
    try:
        for split, dataset in (("train", data.train), ("val", data.val)):
            _scan_files(split, dataset.pairs, data.spec, scan, progress)
    except (ValueError, OSError) as error:
        report.errors.append(str(error))
        return report
    _fill_from_scan(report, scan, data.spec, data.train.pairs, data.val.pairs)
    fp = fingerprint(data.train.pairs, data.spec, data.mean, data.std, data.in_channels,
                     progress)
    report.objects = [ObjectRow(c.name, c.components, c.extent[1], c.extent[2], c.edge_share)
                      for c in fp.classes if c.components]
    return report


def _explain_from_stored_values(report: DataReport, config: DataConfig) -> None:
    """When the datasets cannot be built, the values the masks store (no remap: none could be
    trusted) and, from them, what the dataset file should say."""
    stored = stored_mask_values(config)
    if not stored:
        return
    report.values = [ValueRow(value, pixels, value) for value, pixels in sorted(stored.items())]
    report.errors.append(_labelling_hint(sorted(stored)))


def _labelling_hint(values: list[int]) -> str:
    """What to put in a dataset file for masks storing ``values`` (sorted)."""
    listed = ", ".join(map(str, values[:SHOWN * 2])) + (", ..." if len(values) > SHOWN * 2
                                                         else "")
    found = f"the masks store {len(values)} values ({listed})"
    if len(values) > 64:
        return (f"{found}: a mask stores one value per class; this many come from a resized or "
                f"JPEG-saved mask, or an image saved as a mask")
    if values == list(range(len(values))):
        return (f"{found}, labels 0..{len(values) - 1}: name {len(values)} classes, in "
                f"that order (--classes or 'classes:' in dataset.yaml)")
    remap = ", ".join(f"{value}: {label}" for label, value in enumerate(values))
    hint = (f"{found}: if each is a class, name {len(values)} classes in dataset.yaml and map "
            f"the values to them, 'remap: {{{remap}}}'")
    kept = [value for value in values if value != 255]
    if len(kept) != len(values) and len(kept) >= 2:
        remap = ", ".join(f"{value}: {label}" for label, value in enumerate(kept))
        hint += (f"; if 255 marks pixels to leave out, name {len(kept)} classes and "
                 f"'remap: {{{remap}}}' (255 is the ignore label)")
    return hint


def _read_datasets(report: DataReport, config: DataConfig, data: Datasets) -> None:
    """The class table, counts, notices and left-out pairs of the built datasets."""
    spec = data.spec
    report.class_names, report.ignore_index = list(spec.class_names), spec.ignore_index
    report.train_images, report.val_images = len(data.train), len(data.val)
    counted = data.summary.get("classes", {})       # empty where not counted (synthetic)
    report.classes = [ClassRow(name, c, int(counted[name]["pixels"]),
                               float(counted[name]["share"]), int(counted[name]["images"]))
                      for c, name in enumerate(spec.class_names) if name in counted]
    if counted:
        report.ignored_share = float(data.summary["ignored_share"])
    for image_path, why in data.skipped:
        if config.skip_bad:
            report.warnings.append(f"{why} (--skip-bad leaves {Path(image_path).name} out; "
                                   f"fix the file to train on it)")
        else:
            report.errors.append(why)
    report.warnings += list(data.notices)


def _fill_from_scan(report: DataReport, scan: _FileScan, spec: DatasetSpec,
                    train_pairs: list, val_pairs: list) -> None:
    stored = np.array(sorted(scan.values), dtype=np.int64)
    labels = spec.apply_remap(stored).tolist()
    report.values = [ValueRow(v, scan.values[v], label)
                     for v, label in zip(stored.tolist(), labels)]
    report.masks_read = scan.masks
    report.sizes = [SizeRow(h, w, n) for (h, w), n in sorted(
        scan.sizes.items(), key=lambda item: (-item[1], item[0]))]
    report.channels = dict(sorted(scan.channels.items()))
    for v, t, distance in near_duplicates(np.array(scan.hashes["train"], np.uint64),
                                          np.array(scan.hashes["val"], np.uint64)):
        report.near_duplicates.append(
            NearDuplicate(str(val_pairs[v][0]), str(train_pairs[t][0]), distance))
    report.near_duplicates.sort(key=lambda d: (d.distance, d.val))
    if report.near_duplicates:
        first = report.near_duplicates[0]
        n = len(report.near_duplicates)
        report.warnings.append(
            f"{_count(n, 'validation image')} {'has' if n == 1 else 'have'} a near-duplicate in "
            f"training (e.g. {Path(first.val).name} ~ {Path(first.train).name}): validation "
            f"scores will be inflated; split by sequence or scene")


# ---------------------------------------------------------------- the terminal

STATUS_WORDS = {0: "clean", 1: "warnings", 2: "errors"}


def format_report(report: DataReport) -> str:
    """The report as terminal text: tables, then warnings and errors, then the status."""
    where = f" ({report.root})" if report.root else ""
    lines = [f"data: {report.source}{where}"]
    if report.errors and not report.class_names:
        lines.append("the datasets could not be built; nothing else was checked")
        lines += _value_lines(report)
    else:
        lines.append(f"{report.train_images} training and {report.val_images} validation "
                     f"images, {len(report.class_names)} classes, ignore label "
                     f"{report.ignore_index}")
        lines += (_class_lines(report) + _object_lines(report) + _value_lines(report)
                  + _image_lines(report))
    lines += _pairing_lines(report)
    for title, items in (("warnings", report.warnings), ("errors", report.errors)):
        if items:
            lines += ["", f"{title} ({len(items)}):"]
            lines += [f"  - {item}" for item in items[:20]]
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more (all in the JSON report)")
    strict = " (strict: warnings count as errors)" if report.strict and report.warnings else ""
    lines += ["", f"status {report.status}: {STATUS_WORDS[report.status]}{strict}"]
    return "\n".join(lines)


def _class_lines(report: DataReport) -> list[str]:
    if not report.classes:
        return []
    width = max(12, *(len(row.name) for row in report.classes))
    lines = ["", f"{'class':<{width}} {'id':>3} {'pixels':>13} {'share':>7} "
                 f"{'train images':>13}"]
    lines += [f"{row.name:<{width}} {row.id:>3} {row.pixels:>13,} {row.share:>7.2%} "
              f"{row.images:>6} of {report.train_images}" for row in report.classes]
    if report.ignored_share is not None:
        lines.append(f"ignored pixels (label {report.ignore_index}): "
                     f"{report.ignored_share:.2%} of the training pixels")
    return lines


def _object_lines(report: DataReport) -> list[str]:
    if not report.objects:
        return []
    width = max(12, *(len(row.name) for row in report.objects))
    lines = ["", f"{'objects':<{width}} {'components':>10} {'extent p50':>10} {'p95':>6} "
                 f"{'near an edge':>12}   (training masks; extents in px, by pixels)"]
    lines += [f"{row.name:<{width}} {row.components:>10,} {row.extent_p50:>10g} "
              f"{row.extent_p95:>6g} {row.edge_share:>12.0%}" for row in report.objects]
    return lines


def _value_lines(report: DataReport) -> list[str]:
    if report.built_in:
        return ["", "built-in data: no files, so no stored mask values, pairing or "
                    "near-duplicate checks"]
    if not report.values:
        return []
    total = sum(row.pixels for row in report.values) or 1
    if not report.class_names:           # the datasets could not be built: values as stored
        return ["", "mask values (train + val), as stored:"] + [
            f"  {row.value:>5} {row.pixels:>13,} {row.pixels / total:>7.2%}"
            for row in report.values]
    lines = ["", f"mask values in {report.masks_read} masks (train + val): stored -> after "
                 f"the remap"]
    for row in report.values:
        label = ("ignored" if row.label == report.ignore_index
                 else report.class_names[row.label] if 0 <= row.label < len(report.class_names)
                 else "not a class")
        lines.append(f"  {row.value:>5} {row.pixels:>13,} {row.pixels / total:>7.2%}  -> "
                     f"{row.label:>3} {label}")
    return lines


def _image_lines(report: DataReport) -> list[str]:
    sizes = ", ".join(f"{row.height} x {row.width}: {row.images}" for row in
                      report.sizes[:SHOWN])
    more = f", ... ({len(report.sizes)} sizes)" if len(report.sizes) > SHOWN else ""
    channels = ", ".join(f"{c} channel{'s' if c > 1 else ''}: {n}"
                         for c, n in report.channels.items())
    return ["", f"image sizes (H x W: images): {sizes}{more}", f"channels: {channels}"]


def _pairing_lines(report: DataReport) -> list[str]:
    if report.built_in:
        return []
    unpaired = report.unpaired_images + report.unpaired_masks
    if not (unpaired or report.class_names):         # the build failed before any pairing
        return []
    lines = [""]
    lines.append(f"unpaired files: {len(unpaired) or 'none'}")
    lines += [f"  {path}" for path in unpaired[:SHOWN]]
    if len(unpaired) > SHOWN:
        lines.append(f"  ... and {len(unpaired) - SHOWN} more")
    if report.masks_read:
        dups = report.near_duplicates
        lines.append(f"near-duplicates (difference hash, <= {report.duplicate_distance} of 64 "
                     f"bits): {len(dups)} of {report.val_images} validation images")
        lines += [f"  {Path(d.val).name} ~ {Path(d.train).name} (distance {d.distance})"
                  for d in dups[:SHOWN]]
        if len(dups) > SHOWN:
            lines.append(f"  ... and {len(dups) - SHOWN} more")
    return lines
