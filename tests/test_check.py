"""`unetseg check`: the data doctor (`unetseg.jobs.check`).

Folders are built by hand in tmp_path, so every expected count is known before the check runs;
the hashing and duplicate search are checked against a brute-force oracle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetseg.config import DataConfig
from unetseg.data.io import read_raw_image
from unetseg.jobs.check import (
    DUPLICATE_DISTANCE,
    ClassRow,
    DataReport,
    ObjectRow,
    SizeRow,
    ValueRow,
    check_data,
    difference_hash,
    format_report,
    near_duplicates,
)

# As in tests/test_data.py: the shared datasets beside the checkout, or UNETSEG_DATASETS.
DATASETS = Path(os.environ.get("UNETSEG_DATASETS",
                               Path(__file__).resolve().parents[2] / "shared" / "datasets"))
ISBI_ROOT = DATASETS / "isbi2012-membrane"
CAMVID_ROOT = DATASETS / "camvid"
needs_isbi = pytest.mark.skipif(not (ISBI_ROOT / "images").is_dir(),
                                reason=f"ISBI-2012 dataset absent ({ISBI_ROOT})")
needs_camvid = pytest.mark.skipif(not (CAMVID_ROOT / "val").is_dir(),
                                  reason=f"CamVid dataset absent ({CAMVID_ROOT})")

S = 32  # hand-built images are S x S


# ---------------------------------------------------------------- helpers: files on disk

def scene(seed: int) -> np.ndarray:
    """A smooth random grey image (a 4 x 4 grid of random levels, bilinearly enlarged): its
    difference hash is stable under small noise, and unrelated to another seed's."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(4, 4), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((S, S), Image.Resampling.BILINEAR))


def noised(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 2, size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def halves(top: int, bottom: int) -> np.ndarray:
    mask = np.full((S, S), top, dtype=np.uint8)
    mask[S // 2:] = bottom
    return mask


def split_folder(root: Path, train: dict, val: dict, classes: list[str]) -> Path:
    """``root/{train,val}/{images,masks}/NAME.png`` from {name: (image, mask)}, and a
    dataset.yaml naming ``classes``."""
    for split, pairs in (("train", train), ("val", val)):
        for name, (image, mask) in pairs.items():
            save(root / split / "images" / f"{name}.png", image)
            save(root / split / "masks" / f"{name}.png", mask)
    (root / "dataset.yaml").write_text(f"classes: [{', '.join(classes)}]\n")
    return root


def flat_folder(root: Path, pairs: dict) -> Path:
    for name, (image, mask) in pairs.items():
        save(root / "images" / f"{name}.png", image)
        save(root / "masks" / f"{name}.png", mask)
    return root


def clean_folder(root: Path) -> Path:
    """Two training pairs, one validation pair; classes a, b, c all in the training masks."""
    corner = np.zeros((S, S), dtype=np.uint8)
    corner[:, :8] = 2                                   # 256 px of c, 768 of a
    return split_folder(root, {"t1": (scene(1), halves(0, 1)),     # 512 a, 512 b
                               "t2": (scene(2), corner)},
                        {"v1": (scene(3), halves(1, 0))}, ["a", "b", "c"])


def round_trip(report: DataReport) -> DataReport:
    return DataReport.from_dict(json.loads(json.dumps(report.to_dict())))


# ---------------------------------------------------------------- the hash and the search

def test_difference_hash_sets_a_bit_where_the_right_neighbour_is_brighter():
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))[..., None]   # brighter rightwards
    assert difference_hash(ramp) == 2**64 - 1
    assert difference_hash(ramp[:, ::-1]) == 0
    assert difference_hash(np.full((20, 20, 3), 7, np.uint8)) == 0
    # Row 0 is the most significant byte: brighter rightwards above, darker below.
    halves_image = np.concatenate([ramp, ramp[:, ::-1]])               # (96, 64, 1)
    assert difference_hash(halves_image) == 0xFFFFFFFF_00000000
    assert difference_hash(np.concatenate([ramp[:, ::-1], ramp])) == 0x00000000_FFFFFFFF


def test_difference_hash_ignores_bit_depth_and_small_noise():
    image = scene(5)
    sixteen = image.astype(np.uint16) * 257
    assert difference_hash(image[..., None]) == difference_hash(sixteen[..., None])
    assert difference_hash(np.repeat(image[..., None], 3, axis=2)) == difference_hash(
        image[..., None])                                # RGB with equal channels: its grey
    # Floats are stretched from their minimum to their maximum before the 8-bit levels.
    floats = image.astype(np.float32) * 0.01 + 5.0
    stretched = np.rint((image - image.min()) / float(image.max() - image.min()) * 255)
    assert difference_hash(floats[..., None]) == difference_hash(
        stretched.astype(np.uint8)[..., None])
    assert difference_hash(np.full((9, 9, 1), 0.5, np.float32)) == 0
    distance = bin(difference_hash(image[..., None])
                   ^ difference_hash(noised(image, 0)[..., None])).count("1")
    assert distance <= 2
    unrelated = bin(difference_hash(image[..., None])
                    ^ difference_hash(scene(6)[..., None])).count("1")
    assert unrelated > DUPLICATE_DISTANCE


def test_near_duplicates_match_a_brute_force_search():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    val = rng.integers(0, 2**63, size=25, dtype=np.uint64)
    val[3] = train[7] ^ np.uint64(0b1011)               # 3 bits off train 7
    val[9] = train[0]                                     # an exact copy
    val[12] = train[39] ^ np.uint64(0b111111)           # 6 bits off: too far
    expected = []
    for j, v in enumerate(val.tolist()):
        distances = [bin(v ^ t).count("1") for t in train.tolist()]
        if min(distances) <= 5:
            expected.append((j, distances.index(min(distances)), min(distances)))
    assert expected == [(3, 7, 3), (9, 0, 0)]
    assert near_duplicates(train, val, 5) == expected
    # Blocks of validation columns give the same answer as one matrix.
    import unetseg.jobs.check as check_module
    block = check_module.BLOCK
    check_module.BLOCK = 40 * 2                            # two columns at a time
    try:
        assert near_duplicates(train, val, 5) == expected
    finally:
        check_module.BLOCK = block
    assert near_duplicates(train[:0], val) == [] and near_duplicates(train, val[:0]) == []


# ---------------------------------------------------------------- folders

def test_a_clean_folder_is_status_0_with_the_class_table_counted_by_hand(tmp_path):
    report = check_data(DataConfig(source=str(clean_folder(tmp_path))))
    assert report.errors == [] and report.warnings == [] and report.status == 0
    assert (report.train_images, report.val_images) == (2, 1)
    # Training masks: a 512 + 768, b 512, c 256 of 2048 pixels; a in both, b and c in one.
    assert report.classes == [ClassRow("a", 0, 1280, 0.625, 2), ClassRow("b", 1, 512, 0.25, 1),
                              ClassRow("c", 2, 256, 0.125, 1)]
    assert report.ignored_share == 0.0
    # All three masks, as stored and (no remap) as labels.
    assert report.values == [ValueRow(0, 1280 + 512, 0), ValueRow(1, 512 + 512, 1),
                             ValueRow(2, 256, 2)]
    assert report.sizes == [SizeRow(S, S, 3)] and report.channels == {1: 3}
    assert report.unpaired_images == report.unpaired_masks == report.near_duplicates == []
    text = format_report(report)
    assert "b              1           512  25.00%      1 of 2" in text
    assert "near-duplicates" in text and text.endswith("status 0: clean")


def test_the_objects_of_each_class_are_counted_by_hand(tmp_path):
    """Training masks of clean_folder: a is the top half of t1 and columns 8-31 of t2 (two
    components), b the bottom half of t1, c columns 0-7 of t2; every component spans 32 px.
    Within 2 px of another label: 2 rows or columns of each (64 px), the image border not."""
    report = check_data(DataConfig(source=str(clean_folder(tmp_path))))
    assert report.objects == [ObjectRow("a", 2, 32, 32, 128 / 1280),
                              ObjectRow("b", 1, 32, 32, 64 / 512),
                              ObjectRow("c", 1, 32, 32, 64 / 256)]
    assert round_trip(report).objects == report.objects
    assert "c                     1         32     32          25%" in format_report(report)


def test_0_255_masks_with_two_classes_warn_with_the_mapping(tmp_path):
    root = flat_folder(tmp_path, {f"p{i}": (scene(i), halves(0, 255)) for i in range(5)})
    report = check_data(DataConfig(source=str(root), classes="a,b"))
    assert report.status == 1 and report.errors == []
    assert any("0 and 255" in w and "255 is read as class 1 (b)" in w for w in report.warnings)
    # The value table shows the mapping training uses: 255 -> 1, not the ignore label.
    half = S * S // 2 * 5
    assert report.values == [ValueRow(0, half, 0), ValueRow(255, half, 1)]
    assert "  255" in format_report(report) and "->   1 b" in format_report(report)


def test_every_unreadable_mask_is_an_error_naming_its_file(tmp_path):
    root = flat_folder(tmp_path, {f"p{i}": (scene(i), halves(0, 1)) for i in range(5)})
    for name in ("p1.png", "p3.png"):
        (root / "masks" / name).write_bytes(b"not a png")
    report = check_data(DataConfig(source=str(root), classes="a,b"))
    assert report.status == 2 and len(report.errors) == 2
    assert all("cannot be read as an image" in e for e in report.errors)
    assert [Path(e.split(":")[0]).name for e in report.errors] == ["p1.png", "p3.png"]
    assert "p1.png" in format_report(report) and "status 2: errors" in format_report(report)
    # With --skip-bad training leaves them out: the same lines become warnings.
    skipping = check_data(DataConfig(source=str(root), classes="a,b", skip_bad=True))
    assert skipping.status == 1 and skipping.errors == []
    assert sum("--skip-bad leaves" in w for w in skipping.warnings) == 2
    assert skipping.train_images + skipping.val_images == 3


def test_a_folder_that_cannot_be_built_is_an_error_not_a_traceback(tmp_path):
    report = check_data(DataConfig(source=str(tmp_path / "nowhere"), classes="a,b"))
    assert report.status == 2 and "no such folder" in report.errors[0]
    assert "could not be built" in format_report(report)


def test_unpaired_files_are_all_listed(tmp_path):
    root = flat_folder(tmp_path, {f"p{i}": (scene(i), halves(0, 1)) for i in range(4)})
    save(root / "images" / "extra.png", scene(9))
    save(root / "images" / "extra2.png", scene(10))
    save(root / "masks" / "lonely.png", halves(1, 0))
    (root / "masks" / "notes.txt").write_text("not an image: not a partner either")
    report = check_data(DataConfig(source=str(root), classes="a,b"))
    assert report.unpaired_images == [str(root / "images" / "extra.png"),
                                      str(root / "images" / "extra2.png")]
    assert report.unpaired_masks == [str(root / "masks" / "lonely.png")]
    assert any(w.startswith("2 images in") and "extra.png, extra2.png" in w
               and "add their masks" in w for w in report.warnings)
    assert any(w.startswith("1 mask in") and "add their images" in w for w in report.warnings)
    # Training refuses them today (match_pairs), so the check says so too.
    assert report.status == 2
    assert "unpaired files: 3" in format_report(report)


def near_duplicate_folder(root: Path) -> Path:
    """Training t0..t3; validation: a noised copy of t2 and an unrelated image."""
    train = {f"t{i}": (scene(10 + i), halves(0, 1)) for i in range(4)}
    val = {"copy": (noised(scene(12), 1), halves(0, 1)), "other": (scene(30), halves(1, 0))}
    return split_folder(root, train, val, ["a", "b"])


def test_a_noised_copy_across_the_split_is_a_near_duplicate_and_other_images_are_not(tmp_path):
    root = near_duplicate_folder(tmp_path)
    report = check_data(DataConfig(source=str(root)))
    assert len(report.near_duplicates) == 1
    found = report.near_duplicates[0]
    assert (found.val, found.train) == (str(root / "val" / "images" / "copy.png"),
                                        str(root / "train" / "images" / "t2.png"))
    assert found.distance <= DUPLICATE_DISTANCE
    assert report.warnings == [
        "1 validation image has a near-duplicate in training (e.g. copy.png ~ t2.png): "
        "validation scores will be inflated; split by sequence or scene"]
    assert report.status == 1
    assert "copy.png ~ t2.png" in format_report(report)


def test_strict_counts_warnings_as_errors(tmp_path):
    root = near_duplicate_folder(tmp_path / "dup")
    assert check_data(DataConfig(source=str(root))).status == 1
    strict = check_data(DataConfig(source=str(root)), strict=True)
    assert strict.status == 2 and strict.errors == []
    assert "strict: warnings count as errors" in format_report(strict)
    clean = check_data(DataConfig(source=str(clean_folder(tmp_path / "clean"))), strict=True)
    assert clean.status == 0


def test_the_report_survives_a_json_round_trip(tmp_path):
    report = check_data(DataConfig(source=str(near_duplicate_folder(tmp_path))))
    values = report.to_dict()
    assert values["status"] == 1 and values["label_pixels"] == {"0": 3072, "1": 3072}
    back = round_trip(report)
    assert back == report and format_report(back) == format_report(report)
    failed = check_data(DataConfig(source=str(tmp_path / "nowhere"), classes="a,b"))
    assert round_trip(failed) == failed


def test_built_in_data_says_so_and_skips_the_file_checks():
    report = check_data(DataConfig(source="synthetic", size=16, train_samples=8,
                                   val_samples=4))
    assert report.built_in and report.status == 0
    assert report.values == [] and report.near_duplicates == []
    assert report.sizes == [SizeRow(16, 16, 12)] and report.channels == {3: 12}
    assert "built-in data" in format_report(report)


# ---------------------------------------------------------------- real data

@needs_isbi
def test_isbi_is_clean_and_its_raw_values_are_the_readme_counts():
    """check reads the 24 training and validation slices; with the 6 test slices, counted
    here with numpy, they make the README's counts."""
    report = check_data(DataConfig(source="isbi", root=str(ISBI_ROOT)))
    assert report.status == 0, format_report(report)
    test = [np.asarray(Image.open(ISBI_ROOT / "masks" / f"{i}.png")) for i in range(24, 30)]
    membrane_in_test = sum(int((mask == 0).sum()) for mask in test)
    # README: over all 30 masks 0 (membrane) -> 1,727,250 px, 255 (cell) -> 6,137,070 px.
    assert report.values == [ValueRow(0, 1_727_250 - membrane_in_test, 1),
                             ValueRow(255, 6_137_070 - (6 * 512 * 512 - membrane_in_test), 0)]
    assert [row.name for row in report.classes] == ["cell", "membrane"]
    assert sum(row.pixels for row in report.classes) == 19 * 512 * 512
    assert all(row.images == 19 for row in report.classes)
    assert report.sizes == [SizeRow(512, 512, 24)] and report.channels == {1: 24}


@needs_camvid
def test_camvid_values_sizes_and_neighbouring_frames(tmp_path):
    """SegNet's CamVid layout, on every 40th training frame (10, all 11 classes among them)
    and the first 6 validation frames linked into a copy of it (the whole set takes seconds to
    decode, twice on a fresh scan cache): the stored values with their labels
    (11, void, is ignored), the ignored share of the training pixels and the sizes, against
    numpy over the same masks; the validation frames, a block of the video 31 and more frames
    from the training ones, are no near-duplicates, while neighbouring frames are."""
    root, masks = tmp_path / "camvid", {}
    for split, every, count in (("train", 40, 10), ("val", 1, 6)):
        frames = sorted((CAMVID_ROOT / split).glob("*.png"))[::every][:count]
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            for frame in frames:
                (root / folder / frame.name).symlink_to(CAMVID_ROOT / folder / frame.name)
        masks[split] = np.stack([np.asarray(Image.open(CAMVID_ROOT / f"{split}annot" / f.name))
                                 for f in frames])
    report = check_data(DataConfig(source="camvid", root=str(root)))
    assert (report.train_images, report.val_images) == (10, 6)
    values, pixels = np.unique(np.concatenate([masks["train"], masks["val"]]),
                               return_counts=True)
    assert [(row.value, row.pixels) for row in report.values] == list(zip(values.tolist(),
                                                                           pixels.tolist()))
    assert [row.label for row in report.values] == [255 if v == 11 else v for v in values]
    assert report.ignored_share == pytest.approx((masks["train"] == 11).mean(), abs=5e-7)
    assert report.sizes == [SizeRow(360, 480, 16)] and report.channels == {3: 16}
    assert report.near_duplicates == [] and report.status == 0, format_report(report)
    # The hash itself does see neighbouring frames of the video as near-duplicates.
    val = CAMVID_ROOT / "val"
    a, b = (difference_hash(read_raw_image(val / f"0016E5_{n}.png")) for n in ("07959", "07961"))
    assert bin(a ^ b).count("1") <= DUPLICATE_DISTANCE


# ------------------------------------------------------- each data mistake, as check sees it

def plain_folder(root: Path, masks: list[np.ndarray], dataset_yaml: str | None) -> Path:
    """``root/{images,masks}`` of scenes with the given masks, and an optional dataset file."""
    for i, mask in enumerate(masks):
        save(root / "images" / f"{i}.png", scene(i))
        save(root / "masks" / f"{i}.png", mask)
    if dataset_yaml is not None:
        (root / "dataset.yaml").write_text(dataset_yaml)
    return root


@pytest.mark.parametrize("case,masks,dataset_yaml,extra,status,message", [
    ("classes as a YAML string", [halves(0, 1)] * 5, "classes: cell, membrane\n", {}, 2,
     "not a list"),
    ("--classes beside a dataset file", [halves(0, 1)] * 5, "classes: [a, b]\n",
     {"classes": ("a", "b")}, 2, "remove --classes"),
    ("a remap key that never occurs", [halves(0, 1)] * 5,
     "classes: [a, b]\nremap: {255: 1}\n", {}, 1, "remap key 255 never occurs"),
    ("a class that never occurs", [halves(0, 1)] * 5, "classes: [a, b, c]\n", {}, 1,
     "class 'c' never occurs"),
    ("most pixels ignored", [halves(0, 255)] * 5, "classes: [a, b]\nignore_index: 255\n", {},
     1, "of the training pixels are ignore_index 255"),
    ("0/255 masks", [halves(0, 255)] * 5, None, {"classes": ("a", "b")}, 1,
     "255 is read as class 1 (b)"),
])
def test_each_data_mistake_is_reported_with_its_severity(tmp_path, case, masks, dataset_yaml,
                                                        extra, status, message):
    root = plain_folder(tmp_path / "data", masks, dataset_yaml)
    report = check_data(DataConfig(source=str(root), val_ratio=0.4, **extra))
    assert report.status == status, format_report(report)
    assert message in format_report(report)


def test_check_on_0_127_255_masks_shows_the_stored_values_and_the_remap_that_reads_them(
        tmp_path):
    """Issue 22: check stopped at "values [127] are not classes" with neither the value
    histogram nor a remap hint. The hint, pasted into dataset.yaml, makes the folder build."""
    thirds = np.zeros((S, S), dtype=np.uint8)
    thirds[:4], thirds[S - 4:] = 127, 255                 # 4 rows of 127 and of 255 each
    root = plain_folder(tmp_path / "data", [thirds] * 5, None)
    for extra in ({}, {"classes": ("a", "b")}):
        report = check_data(DataConfig(source=str(root), val_ratio=0.4, **extra))
        assert report.status == 2
        pixels = {row.value: row.pixels for row in report.values}
        assert pixels == {0: 5 * (S - 8) * S, 127: 5 * 4 * S, 255: 5 * 4 * S}
        text = format_report(report)
        assert "mask values (train + val), as stored:" in text
        assert "'remap: {0: 0, 127: 1, 255: 2}'" in text
        assert "'remap: {0: 0, 127: 1}' (255 is the ignore label)" in text
    (root / "dataset.yaml").write_text("classes: [a, b, c]\nremap: {0: 0, 127: 1, 255: 2}\n")
    assert check_data(DataConfig(source=str(root), val_ratio=0.4)).errors == []


def test_junk_files_and_overlapping_split_files(tmp_path):
    root = plain_folder(tmp_path / "data", [halves(0, 1)] * 5, "classes: [a, b]\n")
    (root / "images" / "Thumbs.db").write_bytes(b"junk")
    report = check_data(DataConfig(source=str(root), val_ratio=0.4))
    assert report.status == 1 and "skipped 1 non-image file" in format_report(report)
    (root / "train.txt").write_text("0\n1\n2\n")
    (root / "val.txt").write_text("2\n3\n")
    report = check_data(DataConfig(source=str(root), train_list="train.txt",
                                   val_list="val.txt"))
    assert report.status == 2 and "both name 1 image(s)" in format_report(report)


# ---------------------------------------------------------------- check --json FILE

def check_json(root: Path, path: Path, *flags: str) -> int:
    from unetseg.cli import main

    return main(["check", str(root), "--quiet", "--json", str(path), *flags])


def test_check_json_writes_the_report_it_prints(tmp_path, capsys):
    root = clean_folder(tmp_path / "data")
    assert check_json(root, tmp_path / "report.json") == 0
    written = json.loads((tmp_path / "report.json").read_text())
    assert DataReport.from_dict(written) == check_data(DataConfig(source=str(root)))


def test_check_json_refuses_an_existing_file(tmp_path, capsys):
    root = clean_folder(tmp_path / "data")
    (tmp_path / "report.json").write_text("keep me")
    assert check_json(root, tmp_path / "report.json") == 2
    err = capsys.readouterr().err
    assert f"--json {tmp_path / 'report.json'} exists; choose another --json, or pass " \
           f"--overwrite to replace it" in err
    assert "status" not in err and (tmp_path / "report.json").read_text() == "keep me"
    assert check_json(root, tmp_path / "report.json", "--overwrite") == 0
    assert json.loads((tmp_path / "report.json").read_text())["status"] == 0


@pytest.mark.parametrize("inside", ["report.json", "images/report.json", "val/masks/r.json",
                                    "dataset.json"])
def test_check_json_refuses_a_path_inside_the_data(tmp_path, capsys, inside):
    """Even with --overwrite: a dataset.json there would be read as the dataset file."""
    root = clean_folder(tmp_path / "data")
    assert check_json(root, root / inside, "--overwrite") == 2
    assert f"--json {root / inside} is inside the data folder" in capsys.readouterr().err
    assert not (root / inside).exists() and (root / "dataset.yaml").is_file()


def test_check_json_refuses_a_folder(tmp_path, capsys):
    root = clean_folder(tmp_path / "data")
    (tmp_path / "reports").mkdir()
    assert check_json(root, tmp_path / "reports", "--overwrite") == 2
    assert "is a folder; expected a file name" in capsys.readouterr().err
