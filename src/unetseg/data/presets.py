"""Named datasets over the folder loader: CamVid (SegNet layout) and ISBI-2012 membranes.

Both are research datasets the user downloads once; nothing here fetches anything.
"""

from __future__ import annotations

from pathlib import Path

from .folder import DatasetSpec, match_pairs, read_split_file, split_by_ratio

__all__ = ["CAMVID", "ISBI", "ISBI_TEST", "camvid_pairs", "camvid_test_pairs", "isbi_pairs",
           "isbi_test_pairs"]

# SegNet's 11 CamVid classes; stored value 11 is "Unlabelled" (void), remapped to ignore.
CAMVID = DatasetSpec(
    class_names=("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                 "pedestrian", "bicyclist"),
    colours=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
             (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
             (0, 128, 192)),
    ignore_index=255,
    remap={11: 255},
)

# ISBI-2012 stores 0 = membrane, 255 = cell interior; membrane is the class being traced. The
# remap states the encoding, so the 0/255 guess for undescribed 2-class folders never applies.
ISBI = DatasetSpec(
    class_names=("cell", "membrane"),
    colours=((0, 0, 0), (255, 64, 64)),
    ignore_index=255,
    remap={255: 0, 0: 1},
)

# ISBI-2012's held-out test slices: the labelled set has no test split of its own, so the last
# six of the 30 serial sections are kept aside, never trained on or used to choose anything
# (`--split test`). A contiguous block, because neighbouring sections look alike: slices drawn
# at random would each have a near twin in training; a block has one boundary.
ISBI_TEST = tuple(str(i) for i in range(24, 30))

Pairs = list[tuple[Path, Path]]


def _require(root: Path, folders: tuple[str, ...], name: str) -> None:
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise ValueError(f"{root}: not a {name} folder; expected sub-folders {list(folders)}, "
                         f"missing {missing}")


def camvid_pairs(root: str | Path, notices: list[str] | None = None) -> tuple[Pairs, Pairs]:
    """(train, val) pairs of the SegNet CamVid layout: train/, trainannot/, val/, valannot/.
    A ``train.txt``/``val.txt`` split list, when present, must name exactly the files found.
    ``notices``, when given, gets a line for each folder with non-image files left out."""
    root = Path(root)
    _require(root, ("train", "trainannot", "val", "valannot"), "CamVid (SegNet layout)")
    return _camvid_split(root, "train", notices), _camvid_split(root, "val", notices)


def camvid_test_pairs(root: str | Path, notices: list[str] | None = None) -> Pairs:
    """The held-out test pairs of the SegNet CamVid layout: test/ and testannot/ (233 images in
    SegNet's release), checked against ``test.txt`` when present. Training never reads them."""
    root = Path(root)
    if not ((root / "test").is_dir() and (root / "testannot").is_dir()):
        raise ValueError(f"--split test: {root} has no test/ and testannot/ folders; CamVid's "
                         f"SegNet layout keeps its held-out split there")
    return _camvid_split(root, "test", notices)


def _camvid_split(root: Path, split: str, notices: list[str] | None) -> Pairs:
    pairs = match_pairs(root / split, root / f"{split}annot", notices)
    listing = root / f"{split}.txt"
    if listing.is_file():
        listed, found = set(read_split_file(listing)), {p[0].stem for p in pairs}
        if listed != found:
            raise ValueError(f"{listing} lists {len(listed)} files but {root / split} holds "
                             f"{len(found)}; differences: {sorted(listed ^ found)[:5]}")
    return pairs


def _isbi(root: str | Path, notices: list[str] | None) -> dict[str, tuple[Path, Path]]:
    root = Path(root)
    _require(root, ("images", "masks"), "ISBI-2012")
    return {p[0].stem: p for p in match_pairs(root / "images", root / "masks", notices)}


def isbi_pairs(
    root: str | Path, val_ratio: float = 0.2, seed: int = 0, notices: list[str] | None = None,
) -> tuple[Pairs, Pairs]:
    """(train, val) pairs of ISBI-2012 (images/, masks/) without the `ISBI_TEST` slices, split
    by a seeded ratio: the challenge's labelled set has no validation split of its own.
    ``notices``, when given, gets a line for each folder with non-image files left out."""
    pairs = _isbi(root, notices)
    kept = sorted(stem for stem in pairs if stem not in ISBI_TEST)
    train, val = split_by_ratio(kept, val_ratio, seed)
    return [pairs[s] for s in train], [pairs[s] for s in val]


def isbi_test_pairs(root: str | Path, notices: list[str] | None = None) -> Pairs:
    """The `ISBI_TEST` slices, held out from training and from every choice."""
    pairs = _isbi(root, notices)
    missing = [stem for stem in ISBI_TEST if stem not in pairs]
    if missing:
        raise ValueError(f"{Path(root)}: the ISBI-2012 test slices {missing} are missing; "
                         f"expected images/ and masks/ 0.png to 29.png")
    return [pairs[stem] for stem in ISBI_TEST]
