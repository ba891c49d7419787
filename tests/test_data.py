"""The data package: reading image/mask folders, splits, errors that name the file, joint
augmentation, synthetic shapes through ``build_datasets``, and the ISBI/CamVid presets.

Every expectation is written here by hand (the arrays saved to disk, counts and statistics
computed with numpy from those arrays), never taken from the loader's own output.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets, build_eval_dataset
from unetseg.data.folder import (
    DatasetSpec,
    FolderDataset,
    match_pairs,
    read_split_file,
    split_by_ratio,
)
from unetseg.data.presets import CAMVID, ISBI, camvid_pairs, isbi_pairs
from unetseg.data.synthetic import SyntheticShapes
from unetseg.data.transforms import TrainTransform

# The shared copies of CamVid and ISBI live beside the checkout (../shared/datasets); a clone
# elsewhere can point UNETSEG_DATASETS at them. Tests on them skip when they are absent.
DATASETS = Path(os.environ.get("UNETSEG_DATASETS",
                               Path(__file__).resolve().parents[2] / "shared" / "datasets"))
ISBI_ROOT = DATASETS / "isbi2012-membrane"
CAMVID_ROOT = DATASETS / "camvid"

H, W = 8, 12  # every hand-built image is 8 rows x 12 columns


# ---------------------------------------------------------------- helpers: files on disk

def save(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as stored: TIFF through tifffile, anything else through Pillow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def save_palette_mask(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> Path:
    """A mode P PNG whose pixel values are ``indices`` into ``palette``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]),
                            indices.astype(np.uint8).tobytes())
    image.putpalette([v for colour in palette for v in colour])
    image.save(path)
    return path


def write_folder(root: Path, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Path:
    """``root/images/<name>`` and ``root/masks/<name>`` with the given file names."""
    for name, array in images.items():
        save(root / "images" / name, array)
    for name, array in masks.items():
        save(root / "masks" / name, array)
    return root


def grey(seed: int, shape: tuple[int, ...] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def labels(seed: int, num_classes: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=(H, W)).astype(np.uint8)


def three_class_spec() -> DatasetSpec:
    return DatasetSpec(class_names=("background", "road", "building"))


def dataset_over(root: Path, spec: DatasetSpec, **kwargs) -> FolderDataset:
    return FolderDataset(match_pairs(root / "images", root / "masks"), spec, **kwargs)


# ---------------------------------------------------------------- reading a folder

def test_index_masks_come_back_as_written_and_images_as_float32_chw(tmp_path):
    images = {f"{i}.png": grey(i) for i in range(3)}
    masks = {f"{i}.png": labels(10 + i, 3) for i in range(3)}
    masks["1.png"][0, :4] = 255                       # ignore label next to real classes
    dataset = dataset_over(write_folder(tmp_path, images, masks), three_class_spec())

    assert len(dataset) == 3 and dataset.in_channels == 1 and dataset.num_classes == 3
    for i in range(3):
        image, mask = dataset[i]
        assert image.dtype == torch.float32 and image.shape == (1, H, W)
        assert mask.dtype == torch.int64 and mask.shape == (H, W)
        np.testing.assert_allclose(image[0].numpy(), images[f"{i}.png"] / 255.0, atol=1e-6)
        assert np.array_equal(mask.numpy(), masks[f"{i}.png"])


def test_palette_mask_gives_the_palette_index_not_the_colour(tmp_path):
    indices = labels(3, 3)
    # Colours whose grey level or RGB value is nothing like the index they stand for.
    palette = [(10, 200, 30), (0, 0, 0), (255, 255, 255)]
    save(tmp_path / "images" / "a.png", grey(0))
    save_palette_mask(tmp_path / "masks" / "a.png", indices, palette)
    with Image.open(tmp_path / "masks" / "a.png") as stored:
        assert stored.mode == "P"

    _, mask = dataset_over(tmp_path, three_class_spec())[0]
    assert np.array_equal(mask.numpy(), indices)


SPEC_COLOURS = [(0, 0, 0), (128, 64, 128), (128, 0, 0)]


@pytest.mark.parametrize("spec_file", ["dataset.yaml", "dataset.json"])
def test_rgb_masks_map_through_the_dataset_file_colours(tmp_path, spec_file):
    indices = {f"{i}.png": labels(20 + i, 3) for i in range(5)}
    palette = np.asarray(SPEC_COLOURS, dtype=np.uint8)
    rgb_masks = {name: palette[idx] for name, idx in indices.items()}
    write_folder(tmp_path, {name: grey(i, (H, W, 3)) for i, name in enumerate(indices)}, rgb_masks)
    if spec_file.endswith(".json"):   # the JSON variant spells it "colors"
        text = json.dumps({"classes": ["background", "road", "building"],
                           "colors": [list(c) for c in SPEC_COLOURS], "ignore_index": 255})
    else:
        text = ("classes: [background, road, building]\n"
                "colours: [[0, 0, 0], [128, 64, 128], [128, 0, 0]]\n"
                "ignore_index: 255\n")
    (tmp_path / spec_file).write_text(text)

    data = build_datasets(DataConfig(source=str(tmp_path), augment=False, val_ratio=0.4))
    assert data.spec.class_names == ("background", "road", "building")
    assert data.spec.colours == tuple(SPEC_COLOURS)
    assert len(data.train) == 3 and len(data.val) == 2 and data.in_channels == 3
    for dataset in (data.train, data.val):
        for i, (_, mask_path) in enumerate(dataset.pairs):
            assert np.array_equal(dataset[i][1].numpy(), indices[mask_path.name])


def _u16(shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) * 577 % 65536).astype(np.uint16)


@pytest.mark.parametrize(
    "name, array, divisor, channels",
    [
        ("grey8.png", grey(1), 255.0, 1),
        ("rgb8.png", grey(2, (H, W, 3)), 255.0, 3),
        ("grey16.png", _u16((H, W)), 65535.0, 1),
        ("grey16.tif", _u16((H, W)), 65535.0, 1),
        ("rgb16.tif", _u16((H, W, 3)), 65535.0, 3),
        ("float.tif", np.linspace(0, 1.5, H * W, dtype=np.float32).reshape(H, W), 1.0, 1),
    ],
    ids=["8-bit grey PNG", "8-bit RGB PNG", "16-bit grey PNG", "16-bit grey TIFF",
         "16-bit RGB TIFF", "float TIFF kept as stored"],
)
def test_images_are_scaled_by_their_bit_depth(tmp_path, name, array, divisor, channels):
    stem = name.split(".")[0]
    save(tmp_path / "images" / name, array)
    save(tmp_path / "masks" / f"{stem}.png", labels(0, 3))
    dataset = dataset_over(tmp_path, three_class_spec())

    image = dataset[0][0].numpy()
    expected = array.astype(np.float64) / divisor
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    assert dataset.in_channels == channels and image.shape == (channels, H, W)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_isbi_style_remap_turns_stored_values_into_classes(tmp_path):
    stored = np.full((H, W), 255, dtype=np.uint8)
    stored[:, 3] = 0                                   # 8 membrane pixels
    stored[5, 6:10] = 0                                # 4 more
    save(tmp_path / "images" / "0.png", grey(0))
    save(tmp_path / "masks" / "0.png", stored)
    spec = DatasetSpec(("cell", "membrane"), remap={255: 0, 0: 1})

    dataset = dataset_over(tmp_path, spec)
    expected = np.zeros((H, W), dtype=np.int64)
    expected[:, 3] = 1
    expected[5, 6:10] = 1
    assert np.array_equal(dataset[0][1].numpy(), expected)
    assert dataset.class_pixels.tolist() == [H * W - 12, 12]


def test_remap_from_json_string_keys(tmp_path):
    save(tmp_path / "images" / "0.png", grey(0))
    save(tmp_path / "masks" / "0.png", np.array([[0, 255] * 6] * H, dtype=np.uint8))
    (tmp_path / "dataset.json").write_text(
        json.dumps({"classes": ["cell", "membrane"], "remap": {"255": 0, "0": 1}}))
    data = build_datasets(DataConfig(source=str(tmp_path), augment=False, val=str(tmp_path)))
    assert data.spec.remap == {255: 0, 0: 1}
    assert data.val[0][1].numpy().tolist() == [[1, 0] * 6] * H


@pytest.mark.parametrize("ignore_index", [255, 7])
def test_ignore_label_passes_validation_and_counts_nowhere(tmp_path, ignore_index):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[0] = ignore_index                             # 12 ignored
    mask[1, :5] = 1                                    # 5 of class 1
    save(tmp_path / "images" / "0.png", grey(0))
    save(tmp_path / "masks" / "0.png", mask)
    spec = DatasetSpec(("a", "b"), ignore_index=ignore_index)

    dataset = dataset_over(tmp_path, spec)
    assert dataset.class_pixels.tolist() == [H * W - 12 - 5, 5]
    assert (dataset[0][1][0] == ignore_index).all()


def test_class_pixels_is_the_hand_count_over_all_masks(tmp_path):
    first = np.zeros((H, W), dtype=np.uint8)
    first[:2] = 2                                      # 24 px of class 2, 72 of class 0
    second = np.zeros((H, W), dtype=np.uint8)
    second[:, 0] = 1                                   # 8 px of class 1
    second[:, 1] = 255                                 # 8 ignored, 80 of class 0
    write_folder(tmp_path, {"a.png": grey(0), "b.png": grey(1)}, {"a.png": first, "b.png": second})

    dataset = dataset_over(tmp_path, three_class_spec())
    assert dataset.class_pixels.tolist() == [72 + 80, 8, 24]


def test_channel_stats_are_numpy_mean_and_std_over_every_pixel(tmp_path):
    images = {"a.png": grey(0, (H, W, 3)), "b.png": grey(1, (H, W, 3))}
    images["b.png"][..., 2] //= 4                      # make the channels differ
    write_folder(tmp_path, images, {"a.png": labels(0, 3), "b.png": labels(1, 3)})

    mean, std = dataset_over(tmp_path, three_class_spec()).channel_stats().mean_std()
    pixels = np.concatenate([a.reshape(-1, 3) for a in images.values()]).astype(np.float64) / 255
    # the loader divides in float32 before summing in float64: agreement to float32 precision
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-6)


def test_constant_channel_gets_std_one_instead_of_zero(tmp_path):
    write_folder(tmp_path, {"a.png": np.full((H, W), 51, np.uint8)}, {"a.png": labels(0, 3)})
    mean, std = dataset_over(tmp_path, three_class_spec()).channel_stats().mean_std()
    assert mean == pytest.approx((0.2,)) and std == (1.0,)


def test_mean_and_std_normalise_images_in_getitem(tmp_path):
    image = grey(4, (H, W, 3))
    write_folder(tmp_path, {"a.png": image}, {"a.png": labels(0, 3)})
    mean, std = (0.5, 0.25, 0.1), (0.25, 0.5, 2.0)

    out = dataset_over(tmp_path, three_class_spec(), mean=mean, std=std)[0][0].numpy()
    expected = (image / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), atol=1e-5)


def test_build_datasets_normalises_with_training_statistics_only(tmp_path):
    train_images = {"t0.png": grey(0), "t1.png": grey(1)}
    val_images = {"v0.png": np.full((H, W), 255, np.uint8)}   # would move the mean if counted
    write_folder(tmp_path / "train", train_images, {k: labels(0, 2) for k in train_images})
    write_folder(tmp_path / "val", val_images, {k: labels(1, 2) for k in val_images})
    config = DataConfig(source=str(tmp_path), classes=("a", "b"), augment=False)

    data = build_datasets(config)
    pixels = np.stack(list(train_images.values())).astype(np.float64) / 255
    assert data.mean == pytest.approx((pixels.mean(),), rel=1e-6)
    assert data.std == pytest.approx((pixels.std(),), rel=1e-6)
    expected = (1.0 - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(data.val[0][0].numpy(), expected, rtol=1e-5)

    fixed = build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b"), augment=False,
                                      mean=(0.5,), std=(0.5,)))
    assert (fixed.mean, fixed.std) == ((0.5,), (0.5,))
    np.testing.assert_allclose(fixed.val[0][0].numpy(), 1.0, atol=1e-6)


def test_hidden_files_and_subfolders_are_skipped(tmp_path):
    write_folder(tmp_path, {"a.png": grey(0)}, {"a.png": labels(0, 3)})
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "masks" / "thumbnails").mkdir()
    pairs = match_pairs(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.png")]


def test_image_and_mask_pair_by_stem_across_suffixes(tmp_path):
    save(tmp_path / "images" / "x.jpg", grey(0, (H, W, 3)))
    save(tmp_path / "masks" / "x.png", labels(0, 3))
    save(tmp_path / "images" / "y.tif", grey(1, (H, W, 3)))
    save(tmp_path / "masks" / "y.png", labels(1, 3))
    pairs = match_pairs(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("x.jpg", "x.png"), ("y.tif", "y.png")]


# ---------------------------------------------------------------- splits

def test_split_by_ratio_is_seeded_disjoint_and_covers_every_stem():
    stems = [f"s{i:02d}" for i in range(20)]
    train, val = split_by_ratio(stems, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert not set(train) & set(val) and sorted(train + val) == stems
    assert (train, val) == split_by_ratio(stems, 0.25, seed=3)
    other_vals = {tuple(split_by_ratio(stems, 0.25, seed=s)[1]) for s in range(10)}
    assert len(other_vals) >= 8                        # C(20, 5) = 15504 possible splits


@pytest.mark.parametrize("ratio", [0.01, 0.99])
def test_split_by_ratio_keeps_one_sample_on_each_side(ratio):
    assert sorted(map(len, split_by_ratio(["a", "b"], ratio, seed=0))) == [1, 1]


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1])
def test_split_by_ratio_refuses_ratios_outside_zero_one(ratio):
    with pytest.raises(ValueError, match=r"val_ratio must be in \(0, 1\)"):
        split_by_ratio(["a", "b", "c"], ratio, seed=0)


def test_read_split_file_takes_stems_from_segnet_lines(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text(
        "/SegNet/CamVid/train/0001TP_006690.png /SegNet/CamVid/trainannot/0001TP_006690.png\n"
        "\n"
        "# a comment\n"
        "/SegNet/CamVid/train/Seq05VD_f00000.png /SegNet/CamVid/trainannot/Seq05VD_f00000.png\n"
        "plain_name.png\n")
    assert read_split_file(listing) == ["0001TP_006690", "Seq05VD_f00000", "plain_name"]


def test_build_datasets_uses_train_and_val_folders(tmp_path):
    write_folder(tmp_path / "train", {f"t{i}.png": grey(i) for i in range(3)},
                 {f"t{i}.png": labels(i, 2) for i in range(3)})
    write_folder(tmp_path / "val", {"v0.png": grey(9)}, {"v0.png": labels(9, 2)})
    data = build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b"), augment=False))
    assert [p[0].name for p in data.train.pairs] == ["t0.png", "t1.png", "t2.png"]
    assert [p[0].name for p in data.val.pairs] == ["v0.png"]
    assert data.class_pixels == [sum(int((labels(i, 2) == c).sum()) for i in range(3))
                                 for c in range(2)]


def test_build_datasets_uses_a_separate_val_folder(tmp_path):
    write_folder(tmp_path / "data", {f"t{i}.png": grey(i) for i in range(4)},
                 {f"t{i}.png": labels(i, 2) for i in range(4)})
    write_folder(tmp_path / "held_out", {"v0.png": grey(9), "v1.png": grey(8)},
                 {"v0.png": labels(9, 2), "v1.png": labels(8, 2)})
    data = build_datasets(DataConfig(source=str(tmp_path / "data"), val=str(tmp_path / "held_out"),
                                     classes=("a", "b"), augment=False))
    assert [p[0].stem for p in data.train.pairs] == ["t0", "t1", "t2", "t3"]
    assert [p[0].stem for p in data.val.pairs] == ["v0", "v1"]


def test_build_datasets_splits_one_folder_by_ratio_and_counts_training_pixels(tmp_path):
    masks = {f"{i}.png": labels(30 + i, 3) for i in range(10)}
    write_folder(tmp_path, {name: grey(i) for i, name in enumerate(masks)}, masks)
    data = build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b", "c"),
                                     val_ratio=0.2, seed=1, augment=False))
    train = [p[1].name for p in data.train.pairs]
    val = [p[1].name for p in data.val.pairs]
    assert len(train) == 8 and len(val) == 2 and sorted(train + val) == sorted(masks)
    assert data.class_pixels == [sum(int((masks[n] == c).sum()) for n in train) for c in range(3)]


# ---------------------------------------------------------------- errors name the file

def test_image_without_mask_is_named(tmp_path):
    write_folder(tmp_path, {"a.png": grey(0), "lonely.png": grey(1)}, {"a.png": labels(0, 3)})
    with pytest.raises(ValueError, match=r"images without a mask in .*masks: \['lonely'\]"):
        match_pairs(tmp_path / "images", tmp_path / "masks")


def test_mask_without_image_is_named(tmp_path):
    write_folder(tmp_path, {"a.png": grey(0)}, {"a.png": labels(0, 3), "stray.png": labels(1, 3)})
    with pytest.raises(ValueError, match=r"masks without an image in .*images: \['stray'\]"):
        build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b", "c")))


def test_non_image_file_in_the_folder_is_skipped_and_named(tmp_path):
    write_folder(tmp_path, {"a.png": grey(0)}, {"a.png": labels(0, 3)})
    (tmp_path / "images" / "notes.txt").write_text("taken on tuesday")
    notices: list[str] = []
    pairs = match_pairs(tmp_path / "images", tmp_path / "masks", notices)
    assert [image.name for image, _ in pairs] == ["a.png"]
    assert len(notices) == 1 and "skipped 1 non-image file" in notices[0]
    assert "notes.txt" in notices[0]


def test_two_files_with_one_stem_are_named(tmp_path):
    write_folder(tmp_path, {"dup.png": grey(0), "dup.jpg": grey(1)}, {"dup.png": labels(0, 3)})
    with pytest.raises(ValueError,
                       match=r"dup\.(png|jpg) and .*dup\.(png|jpg) share the stem 'dup'"):
        match_pairs(tmp_path / "images", tmp_path / "masks")


def test_image_and_mask_of_different_sizes_are_named(tmp_path):
    write_folder(tmp_path, {"odd.png": grey(0, (H, 10))}, {"odd.png": labels(0, 3)})
    with pytest.raises(ValueError,
                       match=r"mask .*masks/odd\.png is 12x8 but image .*images/odd\.png is 10x8"):
        dataset_over(tmp_path, three_class_spec())


def test_mask_values_beyond_the_classes_are_named(tmp_path):
    mask = labels(0, 3)
    mask[2, 2], mask[3, 3] = 3, 7
    write_folder(tmp_path, {"a.png": grey(0), "bad.png": grey(1)},
                 {"a.png": labels(1, 3), "bad.png": mask})
    with pytest.raises(ValueError, match=r"bad\.png: values \[3, 7\] are not classes 0\.\.2 "
                       r"\(background, road, building\) nor the ignore label 255"):
        dataset_over(tmp_path, three_class_spec())


def test_rgb_mask_colour_outside_the_palette_is_named(tmp_path):
    rgb = np.asarray(SPEC_COLOURS, dtype=np.uint8)[labels(0, 3)]
    rgb[4, 4] = (1, 2, 3)
    write_folder(tmp_path, {"odd.png": grey(0)}, {"odd.png": rgb})
    spec = DatasetSpec(("background", "road", "building"), colours=tuple(SPEC_COLOURS))
    with pytest.raises(ValueError, match=r"odd\.png: 1 pixels have colours not in the class "
                                         r"palette, for example \(1, 2, 3\)"):
        dataset_over(tmp_path, spec)


@pytest.mark.parametrize("where", ["images", "masks"])
@pytest.mark.parametrize("damage", ["garbage after the signature", "truncated"])
def test_corrupt_png_is_named(tmp_path, where, damage):
    write_folder(tmp_path, {"a.png": grey(0), "broken.png": grey(1, (64, 64))},
                 {"a.png": labels(0, 3), "broken.png": np.zeros((64, 64), np.uint8)})
    target = tmp_path / where / "broken.png"
    data = target.read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.write_bytes(data[:8] + b"not a png chunk" * 8)
    with pytest.raises(ValueError, match=rf"{where}/broken\.png: cannot be read as an image"):
        dataset_over(tmp_path, three_class_spec())


@pytest.mark.parametrize("content", [b"hello, not a tiff at all" * 4, b"II*\x00" + b"\xff" * 40],
                         ids=["not a TIFF", "TIFF header, bad first-page offset"])
def test_corrupt_tiff_is_named(tmp_path, content):
    write_folder(tmp_path, {"a.tif": grey(0)}, {"a.png": labels(0, 3)})
    save(tmp_path / "masks" / "broken.png", labels(1, 3))
    (tmp_path / "images" / "broken.tif").write_bytes(content)
    with pytest.raises(ValueError, match=r"images/broken\.tif: cannot be read as an image"):
        dataset_over(tmp_path, three_class_spec())


def test_mixed_grey_and_rgb_images_are_named(tmp_path):
    write_folder(tmp_path, {"grey.png": grey(0), "rgb.png": grey(1, (H, W, 3))},
                 {"grey.png": labels(0, 3), "rgb.png": labels(1, 3)})
    with pytest.raises(ValueError, match=r"images mix channel counts \(.*grey\.png has 1, "
                                         r".*rgb\.png has 3\); expected all grey or all RGB"):
        dataset_over(tmp_path, three_class_spec())


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"images: no images found"):
        build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b")))
    with pytest.raises(ValueError, match="the dataset is empty"):
        FolderDataset([], three_class_spec())


def test_missing_images_folder_is_named(tmp_path):
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"images: expected a folder of images"):
        build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b")))


def test_folder_without_dataset_file_or_classes_is_refused(tmp_path):
    write_folder(tmp_path, {"a.png": grey(0)}, {"a.png": labels(0, 2)})
    with pytest.raises(ValueError, match=r"no dataset file \(dataset\.yaml or dataset\.json\) "
                                         r"and no --classes"):
        build_datasets(DataConfig(source=str(tmp_path)))
    with pytest.raises(ValueError, match=r"nowhere: no such folder"):
        build_datasets(DataConfig(source=str(tmp_path / "nowhere")))


def test_explicit_spec_file_is_used(tmp_path):
    write_folder(tmp_path / "data", {"a.png": grey(0)}, {"a.png": np.full((H, W), 2, np.uint8)})
    spec_file = tmp_path / "meaning.yml"
    spec_file.write_text("classes: [sky, road, car]\nignore_index: 9\n")
    data = build_datasets(DataConfig(source=str(tmp_path / "data"), spec=str(spec_file),
                                     val=str(tmp_path / "data"), augment=False))
    assert data.spec.class_names == ("sky", "road", "car") and data.spec.ignore_index == 9
    assert data.class_pixels == [0, 0, H * W]


@pytest.mark.parametrize(
    "text, message",
    [
        ("ignore_index: 255\n", r"dataset\.yaml: needs 'classes'"),
        ("classes: [a, b]\nweights: [1, 2]\n", r"dataset\.yaml: unknown keys \['weights'\]"),
        ("classes: [a, b]\ncolours: [[0, 0, 0]]\n", r"2 class names but 1 colours"),
        ("classes: []\n", r"at least one class name"),
        ("- a\n- b\n", r"dataset\.yaml: expected a mapping with 'classes'"),
    ],
    ids=["no classes", "unknown key", "colour count", "empty classes", "not a mapping"],
)
def test_bad_dataset_file_is_explained(tmp_path, text, message):
    write_folder(tmp_path, {"a.png": grey(0)}, {"a.png": labels(0, 2)})
    (tmp_path / "dataset.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        build_datasets(DataConfig(source=str(tmp_path)))


def test_train_and_val_with_different_channel_counts_are_refused(tmp_path):
    write_folder(tmp_path / "train", {"t.png": grey(0)}, {"t.png": labels(0, 2)})
    write_folder(tmp_path / "val", {"v.png": grey(1, (H, W, 3))}, {"v.png": labels(1, 2)})
    with pytest.raises(ValueError, match=r"training images have 1 channels \(for example "
                                         r".*t\.png\) but validation images 3 \(.*v\.png\)"):
        build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b"), augment=False))


# ---------------------------------------------------------------- augmentation

# One colour per class, none black (padding is black) and no channel below 0.2, so a bilinear
# blend of class colours is never mistaken for padding.
CLASS_COLOURS = np.array([[0.9, 0.2, 0.2], [0.2, 0.9, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.3]],
                         dtype=np.float32)


def blocks_image() -> tuple[np.ndarray, np.ndarray]:
    """A 40x56 mask of four large flat class regions, and an image of their class colours."""
    mask = np.zeros((40, 56), dtype=np.int64)
    mask[:, 20:] = 1
    mask[18:, :30] = 2
    mask[25:, 40:] = 3
    return CLASS_COLOURS[mask], mask


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood, inside the crop, holds one mask value."""
    padded = np.pad(mask, 1, constant_values=-1)
    same = np.ones(mask.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]] == mask
    return same


def test_augmented_image_colour_matches_the_mask_class():
    image, mask = blocks_image()
    transform = TrainTransform(32, scale=(0.5, 2.0), ignore_index=255, jitter=0)
    agree = checked = 0
    for seed in range(150):
        out_image, out_mask = transform(image, mask, seed)
        inside = interior(out_mask) & (out_mask != 255)
        colour = out_image[inside]
        own = np.abs(colour - CLASS_COLOURS[out_mask[inside]]).max(-1) < 1e-5
        agree += int(own.sum())
        checked += int(inside.sum())
        # A pixel painted purely in another class's colour would be a mislabelled pixel.
        pure = np.abs(colour[:, None, :] - CLASS_COLOURS[None]).max(-1) < 1e-5
        assert not (pure.any(1) & ~own).any(), f"seed {seed}: mask moved apart from image"
    assert checked > 100_000
    assert agree / checked >= 0.99


def _resized(image: np.ndarray, mask: np.ndarray, factor: float):
    """The oracle: the whole image rescaled by cv2.resize (bilinear; the mask by the nearest
    pixel centre), as the transform describes its crop."""
    import cv2

    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    whole = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], -1)
    return whole, cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST_EXACT)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("factor", [0.6, 1.7])
def test_the_crop_first_equals_a_window_of_the_whole_image_rescaled(dtype, factor):
    """Cropping first and scaling only the crop gives a window of what rescaling the whole
    image (cv2.resize) and then cropping gave: found among every window of the oracle."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (61, 83, 3)).astype(dtype)
    if dtype == np.float32:
        image /= 255
    mask = rng.integers(0, 5, (61, 83)).astype(np.uint8)
    whole, whole_mask = _resized(image, mask, factor)
    transform = TrainTransform(24, scale=(factor, factor))
    tolerance = 1 if dtype == np.uint8 else 1e-5            # cv2's fixed-point rounding
    for seed in range(4):
        crop, labels = transform.scaled_crop(image, mask, np.random.default_rng(seed))
        assert crop.dtype == dtype and labels.shape == (24, 24)
        matches = [(top, left) for top in range(whole.shape[0] - 23)
                   for left in range(whole.shape[1] - 23)
                   if np.array_equal(whole_mask[top:top + 24, left:left + 24], labels)
                   and np.abs(whole[top:top + 24, left:left + 24].astype(np.float64)
                              - crop).max() <= tolerance]
        assert matches, f"seed {seed}: the crop is no window of the rescaled image"


def test_an_image_smaller_than_the_crop_is_the_rescaled_image_padded_in_the_centre():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (13, 9, 1)).astype(np.uint8)
    mask = rng.integers(0, 3, (13, 9)).astype(np.uint8)
    whole, whole_mask = _resized(image, mask, 1.5)                 # 20 x 14
    crop, labels = TrainTransform(32, scale=(1.5, 1.5), ignore_index=255).scaled_crop(
        image, mask, np.random.default_rng(0))
    top, left = (32 - 20) // 2, (32 - 14) // 2
    assert np.array_equal(labels[top:top + 20, left:left + 14], whole_mask)
    assert np.abs(crop[top:top + 20, left:left + 14].astype(int) - whole).max() <= 1
    padding = np.ones((32, 32), bool)
    padding[top:top + 20, left:left + 14] = False
    assert (labels[padding] == 255).all() and (crop[padding] == 0).all()


def test_an_ignore_label_over_255_and_an_rgba_view_go_through_the_crop():
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (10, 12, 4)).astype(np.uint8)
    mask = rng.integers(0, 3, (10, 12))
    image, labels = TrainTransform(24, scale=(1.0, 1.0), ignore_index=300, jitter=0)(
        rgba[..., :3], mask, 0)
    assert image.shape == (24, 24, 3) and set(np.unique(labels)) <= {0, 1, 2, 300}
    assert (labels == 300).sum() == 24 * 24 - 10 * 12


def test_decoded_training_pairs_are_kept_while_the_budget_allows(tmp_path, monkeypatch):
    """A second epoch decodes only the pairs the cache could not hold, and gives what decoding
    gives."""
    import unetseg.data.folder as folder

    names = [f"{i}.png" for i in range(4)]
    write_folder(tmp_path, {n: grey(i, (20, 20, 3)) for i, n in enumerate(names)},
                 {n: np.random.default_rng(i).integers(0, 3, (20, 20)).astype(np.uint8)
                  for i, n in enumerate(names)})
    pairs = match_pairs(tmp_path / "images", tmp_path / "masks")
    decoded = []
    real = folder.read_raw_image
    monkeypatch.setattr(folder, "read_raw_image", lambda path: decoded.append(path) or real(path))
    pair_bytes = 20 * 20 * 3 + 20 * 20                          # uint8 image and labels
    cached = FolderDataset(pairs, three_class_spec(), TrainTransform(16),
                           cache_bytes=2 * pair_bytes)
    plain = FolderDataset(pairs, three_class_spec(), TrainTransform(16))
    for epoch in range(2):
        for dataset in (cached, plain):
            dataset.set_epoch(epoch)
        decoded.clear()
        for i in range(4):
            a, b = cached[i], plain[i]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert len(decoded) == (8 if epoch == 0 else 6)       # 2 of 4 kept: plain decodes 4
    image, stored_labels = cached.stored(0)
    assert image.dtype == np.uint8 and stored_labels.dtype == np.uint8


def test_padding_gets_the_ignore_label_and_content_stays_a_scaled_rectangle():
    image = CLASS_COLOURS[labels(5, 4)]                # 8x12: always smaller than the crop
    mask = labels(5, 4).astype(np.int64)
    transform = TrainTransform(32, scale=(0.5, 2.0), ignore_index=255, jitter=0)
    sides = []
    for seed in range(60):
        out_image, out_mask = transform(image, mask, seed)
        assert out_image.shape == (32, 32, 3) and out_mask.shape == (32, 32)
        padding = out_mask == 255
        assert np.array_equal(padding, (out_image == 0).all(-1))
        rows, cols = np.nonzero(~padding)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert (~padding).sum() == height * width      # the content is one full rectangle
        short, long = sorted((height, width))          # a 90-degree turn swaps the sides
        assert 4 <= short <= 16 and 6 <= long <= 24
        assert abs(long - 1.5 * short) <= 1.5          # 8:12 kept up to rounding
        sides.append(short)
    assert min(sides) <= 5 and max(sides) >= 15        # the scale range 0.5..2.0 is used


@pytest.mark.parametrize("channels", [1, 3])
def test_augmented_output_has_the_crop_size_and_types(channels):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (50, 70, channels)).astype(np.float32)
    mask = rng.integers(0, 3, (50, 70))
    for seed in range(5):
        out_image, out_mask = TrainTransform(24, ignore_index=255)(image, mask, seed)
        assert out_image.shape == (24, 24, channels) and out_image.dtype == np.float32
        assert out_mask.shape == (24, 24) and out_mask.dtype == np.int64
        assert set(np.unique(out_mask)) <= {0, 1, 2, 255}


def test_same_seed_gives_the_same_augmentation_and_other_seeds_differ():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    mask = rng.integers(0, 4, (40, 40))
    transform = TrainTransform(24)
    again = TrainTransform(24)
    differ = 0
    for seed in range(20):
        a_image, a_mask = transform(image, mask, seed)
        b_image, b_mask = again(image, mask, seed)
        assert np.array_equal(a_image, b_image) and np.array_equal(a_mask, b_mask)
        c_image, c_mask = transform(image, mask, seed + 1000)
        differ += not (np.array_equal(a_image, c_image) and np.array_equal(a_mask, c_mask))
    assert differ >= 18


@pytest.mark.parametrize("share", [0.0, 1 / 3, 0.8])
def test_focused_crops_hold_a_rare_object_at_the_share_asked_for(share):
    """A 4 x 4 object in a 400 x 400 image: a uniform 64-pixel crop holds it in about 0.3% of
    draws, so the crops holding it are, within sampling error, the focused ones. Image and mask
    still move together."""
    mask = np.zeros((400, 400), np.int64)
    mask[10:14, 380:384] = 1
    image = np.repeat((mask == 1)[..., None], 3, axis=2).astype(np.float32)
    transform = TrainTransform(64, scale=(1.0, 1.0), jitter=0, focus=(1,), focus_share=share)
    draws = 600
    holding = 0
    for seed in range(draws):
        out_image, out_mask = transform(image, mask, seed)
        assert np.array_equal(out_image[..., 0] == 1, out_mask == 1)
        holding += bool((out_mask == 1).any())
    spread = 3 * (share * (1 - share) / draws) ** 0.5 + 0.01      # 3 sigma, and the 0.3%
    assert abs(holding / draws - share) <= spread


def test_focus_classes_must_be_classes_of_the_data(tmp_path):
    root = tmp_path / "d"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(root / "masks" / f"{i}.png")
    config = DataConfig(source=str(root), classes="a,b", size=8, focus_classes="b,c",
                        focus_share=0.5)
    with pytest.raises(ValueError, match=r"--focus-classes b,c: c is not a class of this "
                                         r"dataset \(a, b\)"):
        build_datasets(config)
    with pytest.raises(ValueError, match="--focus-share 0.5 needs --focus-classes"):
        DataConfig(source=str(root), classes="a,b", focus_share=0.5)


def test_flips_and_turns_move_image_and_mask_together():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    mask = rng.integers(0, 4, (32, 32))
    # The 8 symmetries of the square: k quarter turns, then an optional left-right flip.
    def move(x, k, flip):
        x = np.rot90(x, k, axes=(0, 1))
        return x[:, ::-1] if flip else x
    symmetries = [(k, flip) for k in range(4) for flip in (False, True)]
    transform = TrainTransform(32, scale=(1.0, 1.0), jitter=0)
    seen = set()
    for seed in range(64):
        out_image, out_mask = transform(image, mask, seed)
        found = [s for s in symmetries if np.array_equal(out_image, move(image, *s))]
        assert len(found) == 1, f"seed {seed}: image is not a flip/turn of the input"
        assert np.array_equal(out_mask, move(mask, *found[0])), f"seed {seed}: mask moved apart"
        seen.add(found[0])
    missing = set(symmetries) - seen
    assert not missing, f"never drawn in 64 seeds (turn, mirror): {sorted(missing)}"


def test_jitter_changes_image_values_but_not_the_mask():
    image, mask = blocks_image()
    plain = TrainTransform(32, jitter=0)
    jittered = TrainTransform(32, jitter=0.3)
    changed = 0
    for seed in range(40):
        plain_image, plain_mask = plain(image, mask, seed)
        jitter_image, jitter_mask = jittered(image, mask, seed)
        assert np.array_equal(plain_mask, jitter_mask)
        assert jitter_image.min() >= 0.0 and jitter_image.max() <= 1.0
        if not np.array_equal(plain_image, jitter_image):
            changed += 1
            # brightness and contrast: an affine map of the values, before clipping to [0, 1]
            keep = (jitter_image > 0.01) & (jitter_image < 0.99)
            x, y = plain_image[keep].astype(np.float64), jitter_image[keep].astype(np.float64)
            if len(np.unique(x)) < 2:           # a crop inside one flat block: no line to fit
                continue
            slope, offset = np.polyfit(x, y, 1)
            np.testing.assert_allclose(slope * x + offset, y, atol=1e-5)
    assert 8 <= changed <= 32                          # applied to about half the samples


def test_folder_dataset_augmentation_follows_seed_epoch_and_index(tmp_path):
    names = [f"{i}.png" for i in range(3)]
    write_folder(tmp_path, {n: grey(i, (20, 20, 3)) for i, n in enumerate(names)},
                 {n: np.random.default_rng(i).integers(0, 3, (20, 20)).astype(np.uint8)
                  for i, n in enumerate(names)})
    pairs = match_pairs(tmp_path / "images", tmp_path / "masks")

    def make(seed):
        return FolderDataset(pairs, three_class_spec(), TrainTransform(16), seed=seed)

    def same(a, b):
        return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    first, second = make(7), make(7)
    backwards = {i: second[i] for i in (2, 1, 0)}      # loading order must not matter
    for i in range(3):
        assert same(first[i], first[i]) and same(first[i], backwards[i])
    epoch0 = [first[i] for i in range(3)]
    first.set_epoch(4)
    second.set_epoch(4)
    epoch4 = [first[i] for i in range(3)]
    assert all(same(epoch4[i], second[i]) for i in range(3))    # a resumed run redraws these
    assert sum(not same(epoch0[i], epoch4[i]) for i in range(3)) >= 2
    assert not same(epoch0[0], epoch0[1]) or not same(epoch0[1], epoch0[2])
    other_seed = make(8)
    assert sum(not same(epoch0[i], other_seed[i]) for i in range(3)) >= 2
    first.set_epoch(0)
    assert all(same(epoch0[i], first[i]) for i in range(3))


def test_build_datasets_augments_training_but_not_validation(tmp_path):
    write_folder(tmp_path / "train", {"t.png": grey(0, (20, 20))},
                 {"t.png": np.zeros((20, 20), np.uint8)})
    write_folder(tmp_path / "val", {"v.png": grey(1, (20, 20))},
                 {"v.png": np.ones((20, 20), np.uint8)})
    data = build_datasets(DataConfig(source=str(tmp_path), classes=("a", "b"), size=16,
                                     mean=(0.0,), std=(1.0,)))
    assert data.train[0][0].shape == (1, 16, 16)
    image, mask = data.val[0]
    np.testing.assert_allclose(image[0].numpy(), grey(1, (20, 20)) / 255.0, atol=1e-6)
    assert (mask == 1).all()


# ---------------------------------------------------------------- synthetic through build_datasets

def test_synthetic_train_and_val_are_reproducible_and_differ():
    config = DataConfig(source="synthetic", size=16, train_samples=6, val_samples=3, seed=5)
    data, again = build_datasets(config), build_datasets(config)
    for i in range(3):
        assert torch.equal(data.train[i][0], again.train[i][0])
        assert torch.equal(data.val[i][1], again.val[i][1])
    assert not torch.equal(data.train[0][0], data.val[0][0])
    other = build_datasets(DataConfig(source="synthetic", size=16, train_samples=6,
                                      val_samples=3, seed=6))
    assert not torch.equal(data.train[0][0], other.train[0][0])
    assert data.spec.class_names == ("background", "circle", "square") and data.in_channels == 3


def test_synthetic_statistics_are_numpy_mean_std_of_the_training_images():
    config = DataConfig(source="synthetic", size=16, train_samples=6, val_samples=3, seed=5)
    data = build_datasets(config)
    raw = torch.stack([SyntheticShapes(6, 16, seed=5)[i][0] for i in range(6)]).numpy()
    pixels = raw.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(data.mean, pixels.mean(1), rtol=1e-6)
    np.testing.assert_allclose(data.std, pixels.std(1), rtol=1e-5)
    expected = (raw[2] - np.array(data.mean)[:, None, None]) / np.array(data.std)[:, None, None]
    np.testing.assert_allclose(data.train[2][0].numpy(), expected, atol=1e-5)

    evaluation, _ = build_eval_dataset(config, data.mean, data.std)
    for i in range(3):
        assert torch.equal(evaluation[i][0], data.val[i][0])


def test_eval_dataset_picks_a_split_without_augmentation(tmp_path):
    write_folder(tmp_path / "train", {"t.png": grey(0, (20, 20))},
                 {"t.png": np.zeros((20, 20), np.uint8)})
    write_folder(tmp_path / "val", {"v.png": grey(1, (20, 20))},
                 {"v.png": np.ones((20, 20), np.uint8)})
    config = DataConfig(source=str(tmp_path), classes=("a", "b"), size=16)
    train, _ = build_eval_dataset(config, (0.5,), (0.5,), split="train")
    image, _ = train[0]
    np.testing.assert_allclose(image[0].numpy(), (grey(0, (20, 20)) / 255 - 0.5) / 0.5, atol=1e-5)
    with pytest.raises(ValueError, match="--split test is for synthetic data"):
        build_eval_dataset(config, (0.5,), (0.5,), split="test")


# ---------------------------------------------------------------- presets on hand-made folders

def test_presets_need_a_root_and_their_sub_folders(tmp_path):
    with pytest.raises(ValueError, match="--data camvid needs --root DIR"):
        build_datasets(DataConfig(source="camvid"))
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match=r"not a CamVid \(SegNet layout\) folder; expected sub-"
                       r"folders .* missing \['trainannot', 'val', 'valannot'\]"):
        camvid_pairs(tmp_path)
    with pytest.raises(ValueError,
                       match=r"not a ISBI-2012 folder; .* missing \['images', 'masks'\]"):
        isbi_pairs(tmp_path)


def test_camvid_split_list_must_name_the_files_found(tmp_path):
    for split in ("train", "val"):
        for stem in ("x1", "x2"):
            save(tmp_path / split / f"{split}{stem}.png", grey(0, (H, W, 3)))
            save(tmp_path / f"{split}annot" / f"{split}{stem}.png", labels(0, 11))
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/trainx1.png /SegNet/CamVid/trainannot/trainx1.png\n"
        "/SegNet/CamVid/train/trainx2.png /SegNet/CamVid/trainannot/trainx2.png\n")
    train, val = camvid_pairs(tmp_path)
    assert [(i.name, m.parent.name) for i, m in train] == [("trainx1.png", "trainannot"),
                                                            ("trainx2.png", "trainannot")]
    assert [i.name for i, _ in val] == ["valx1.png", "valx2.png"]
    (tmp_path / "val.txt").write_text("/SegNet/CamVid/val/valx1.png a\n"
                                      "/SegNet/CamVid/val/valx9.png b\n")
    with pytest.raises(ValueError, match=r"val\.txt lists 2 files but .*val holds 2; "
                                         r"differences: \['valx2', 'valx9'\]"):
        camvid_pairs(tmp_path)


# ---------------------------------------------------------------- real data (skipped when absent)

needs_isbi = pytest.mark.skipif(not (ISBI_ROOT / "images").is_dir(),
                                reason=f"ISBI-2012 dataset absent ({ISBI_ROOT})")
needs_camvid = pytest.mark.skipif(not (CAMVID_ROOT / "val").is_dir(),
                                  reason=f"CamVid dataset absent ({CAMVID_ROOT})")


@needs_isbi
def test_isbi_preset_splits_19_5_6_and_membrane_is_a_fifth_of_the_pixels():
    """Slices 24-29 are the held-out test block (--split test); the other 24 split 19/5."""
    config = DataConfig(source="isbi", root=str(ISBI_ROOT), augment=False)
    data = build_datasets(config)
    assert data.spec.class_names == ("cell", "membrane") and data.in_channels == 1
    train = {p[0].stem for p in data.train.pairs}
    val = {p[0].stem for p in data.val.pairs}
    test, _ = build_eval_dataset(config, data.mean, data.std, split="test")
    held = {p[0].stem for p in test.pairs}
    assert (len(train), len(val), held) == (19, 5, {str(i) for i in range(24, 30)})
    assert not train & val and train | val | held == {str(i) for i in range(30)}
    # README: over all 30 masks 0 (membrane) -> 1,727,250 px, 255 (cell) -> 6,137,070 px.
    total = data.train.class_pixels + data.val.class_pixels + test.class_pixels
    assert total.tolist() == [6_137_070, 1_727_250]
    assert total[1] / total.sum() == pytest.approx(0.2196, abs=5e-5)
    # README: images have mean about 126 and std about 44 (of 255).
    assert data.mean[0] * 255 == pytest.approx(126, abs=5)
    assert data.std[0] * 255 == pytest.approx(44, abs=5)


@needs_isbi
def test_isbi_masks_load_as_membrane_equals_stored_zero():
    train, _ = isbi_pairs(ISBI_ROOT)
    image_path, mask_path = train[0]
    with Image.open(mask_path) as stored:
        raw = np.asarray(stored)
    dataset = FolderDataset([(image_path, mask_path)], ISBI)
    image, mask = dataset[0]
    assert image.shape == (1, 512, 512)
    assert np.array_equal(mask.numpy(), (raw == 0).astype(np.int64))


@needs_camvid
def test_camvid_pairs_are_the_segnet_split_lists():
    train, val = camvid_pairs(CAMVID_ROOT)
    assert len(train) == 367 and len(val) == 101
    for split, pairs in (("train", train), ("val", val)):
        lines = (CAMVID_ROOT / f"{split}.txt").read_text().splitlines()
        listed = [Path(line.split()[0]).name for line in lines if line.strip()]
        assert sorted(image.name for image, _ in pairs) == sorted(listed)
        for image, mask in pairs:
            assert image.parent.name == split and mask.parent.name == f"{split}annot"
            assert image.name == mask.name


@needs_camvid
def test_camvid_void_becomes_the_ignore_label():
    _, val = camvid_pairs(CAMVID_ROOT)
    dataset = FolderDataset(val[:3], CAMVID)
    assert dataset.num_classes == 11 and dataset.in_channels == 3
    image, mask = dataset[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    with Image.open(val[0][1]) as stored:
        raw = np.asarray(stored).astype(np.int64)
    assert (raw == 11).sum() > 0
    assert int((mask == 255).sum()) == int((raw == 11).sum())
    keep = raw != 11
    assert np.array_equal(mask.numpy()[keep], raw[keep])


def test_ignore_index_that_is_a_class_label_is_refused():
    with pytest.raises(ValueError, match=r"ignore_index 0 is the label of class 'a'"):
        DatasetSpec(class_names=("a", "b"), ignore_index=0)


def test_a_single_pair_cannot_be_split_into_train_and_validation():
    with pytest.raises(ValueError, match=r"cannot split 1 pair\(s\) .* at least 2"):
        split_by_ratio(["only"], 0.2, seed=0)


def test_a_folder_of_one_image_trains_and_validates_on_it_and_says_so(tmp_path,
                                                                     make_box_folder):
    """One labelled scene is a real dataset (issue 23's edge cases): rather than refuse it, it
    serves both splits, and a notice says that its validation scores are not held out."""
    root = make_box_folder(tmp_path / "one", 1, size=(32, 32))
    data = build_datasets(DataConfig(source=str(root), size=32))
    assert data.train.pairs == data.val.pairs and len(data.train.pairs) == 1
    assert any("one image, so it both trains and validates" in n for n in data.notices)


def test_split_files_choose_the_training_and_validation_pairs(tmp_path):
    root = tmp_path / "data"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for stem in "abcde":
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "masks" / f"{stem}.png")
    (root / "train.txt").write_text("a.png\n# a comment\n/any/where/c.png /x/masks/c.png\ne\n")
    (root / "val.txt").write_text("b.png\nd.png\n")
    data = build_datasets(DataConfig(source=str(root), classes=("bg", "fg"), augment=False,
                                     train_list="train.txt", val_list="val.txt"))
    assert [p[0].stem for p in data.train.pairs] == ["a", "c", "e"]
    assert [p[0].stem for p in data.val.pairs] == ["b", "d"]
    (root / "val.txt").write_text("b.png\nzz.png\n")
    with pytest.raises(ValueError, match=r"val.txt names 1 image\(s\) not in .*images, for "
                                         r"example \['zz'\]"):
        build_datasets(DataConfig(source=str(root), classes=("bg", "fg"),
                                  train_list="train.txt", val_list="val.txt"))


def test_camvid_test_split_reads_test_and_testannot_and_nothing_else(tmp_path):
    for split in ("train", "val"):
        save(tmp_path / split / f"{split}1.png", grey(0, (H, W, 3)))
        save(tmp_path / f"{split}annot" / f"{split}1.png", labels(0, 11))
    config = DataConfig(source="camvid", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"--split test: .* has no test/ and testannot/"):
        build_eval_dataset(config, (0.5,) * 3, (0.5,) * 3, split="test")
    for stem in ("a", "b"):
        save(tmp_path / "test" / f"{stem}.png", grey(1, (H, W, 3)))
        save(tmp_path / "testannot" / f"{stem}.png", labels(1, 11))
    dataset, spec = build_eval_dataset(config, (0.5,) * 3, (0.5,) * 3, split="test")
    assert [(i.parent.name, m.parent.name, i.name) for i, m in dataset.pairs] == [
        ("test", "testannot", "a.png"), ("test", "testannot", "b.png")]
    assert spec.class_names == CAMVID.class_names
    assert len(build_datasets(config).train) == 1          # training never sees test/


@pytest.mark.parametrize("shape,scale_min,smallest", [((1, 1), 0.5, "(1 x 1)"),
                                                      ((20, 20), 0.01, "(20 x 20)")])
def test_a_rescale_below_one_pixel_is_refused_naming_the_smallest_image(tmp_path, shape,
                                                                        scale_min, smallest):
    """1 x 1 images, or --scale-min 0.01 on 20 x 20 ones, failed mid-epoch with a cv2.error in
    the augmentation: refused before training, naming the smallest image and the fix."""
    images = {f"{i}.png": grey(i, (32, 32)) for i in range(4)}
    masks = {f"{i}.png": np.zeros((32, 32), np.uint8) for i in range(4)}
    val = write_folder(tmp_path / "val", dict(images), dict(masks))
    images["tiny.png"], masks["tiny.png"] = grey(9, shape), np.zeros(shape, np.uint8)
    train = write_folder(tmp_path / "train", images, masks)
    config = DataConfig(source=str(train), val=str(val), classes=("background", "thing"),
                        size=16, scale_min=scale_min)
    with pytest.raises(ValueError, match=rf"--scale-min {scale_min}: the smallest training "
                                         rf"image, .*tiny.png {re.escape(smallest)}, would be "
                                         r"rescaled "
                                         r"to under one pixel; expected --scale-min >= .*"
                                         r"or --no-augment"):
        build_datasets(config)
    assert len(build_datasets(replace(config, augment=False)).train) == 5


def test_a_train_and_test_layout_validates_on_part_of_train_and_keeps_test_aside(
        tmp_path, make_box_folder):
    """DRIVE's and the horses' layout: train/ and test/, no val/. Validation (what chooses the
    checkpoint) is carved from train/ by --val-ratio; test/ is only ever scored, by --split
    test, and is what evaluate scores when another run's folder of this layout is given."""
    root = tmp_path / "d"
    make_box_folder(root / "train", 10)
    make_box_folder(root / "test", 3, seed=7)
    (root / "dataset.yaml").write_text("classes: [background, box]\n")
    config = DataConfig(source=str(root), size=16, val_ratio=0.2)
    data = build_datasets(config)
    names = {p[0].name for p in data.train.pairs} | {p[0].name for p in data.val.pairs}
    assert (len(data.train), len(data.val)) == (8, 2) and len(names) == 10
    assert all(p[0].parent == root / "train" / "images" for p in data.train.pairs + data.val.pairs)
    test, _ = build_eval_dataset(config, data.mean, data.std, split="test")
    assert [p[0] for p in test.pairs] == sorted((root / "test" / "images").iterdir())
    with pytest.raises(ValueError, match="--split test is for synthetic data, CamVid, ISBI "
                                         "and folders with train/ and test/"):
        build_eval_dataset(DataConfig(source=str(root / "train")), data.mean, data.std,
                           split="test")
