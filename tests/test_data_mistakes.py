"""A user's data mistake never yields a silent wrong answer: each case here is either refused
with a message naming the file and the fix, or read the way it was meant and reported in
`Datasets.notices`.

Expectations are written by hand from the arrays saved to disk, never taken from the loader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets, build_eval_dataset
from unetseg.data.folder import DatasetSpec
from unetseg.data.io import read_image, read_mask

H, W = 8, 12


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def grey(seed: int, shape: tuple[int, ...] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_pairs(root: Path, masks: dict[str, np.ndarray]) -> Path:
    """``root/images/NAME.png`` (grey noise) and ``root/masks/NAME.png`` for each mask."""
    for i, (stem, mask) in enumerate(masks.items()):
        save(root / "images" / f"{stem}.png", grey(i))
        save(root / "masks" / f"{stem}.png", mask)
    return root


def stripes(value: int, rows: int, seed: int = 0) -> np.ndarray:
    """A mask of 0 with ``rows`` (rolled by ``seed``) rows set to ``value``."""
    mask = np.zeros((H, W), np.uint8)
    mask[:rows] = value
    return np.roll(mask, seed, axis=0)


def found(notices: list[str], pattern: str) -> list[str]:
    return [n for n in notices if re.search(pattern, n)]


def config(root: Path, **kwargs) -> DataConfig:
    return DataConfig(source=str(root), augment=False, **kwargs)


# ---------------------------------------------------------------- 1. masks saved as 0/255

@pytest.mark.parametrize("value", [255, 128])
@pytest.mark.parametrize("named_by", ["--classes", "dataset file"])
def test_masks_saved_as_0_255_read_as_class_1_with_a_notice(tmp_path, value, named_by):
    masks = {f"m{i}": stripes(value, i + 1, seed=i) for i in range(5)}
    write_pairs(tmp_path, masks)
    if named_by == "dataset file":
        (tmp_path / "dataset.yaml").write_text("classes: [background, membrane]\n")
        data = build_datasets(config(tmp_path, val_ratio=0.4))
    else:
        data = build_datasets(config(tmp_path, classes=("background", "membrane"),
                                     val_ratio=0.4))

    train = [mask_path.stem for _, mask_path in data.train.pairs]
    foreground = sum((i + 1) * W for i in range(5) if f"m{i}" in train)
    assert data.class_pixels == [len(train) * H * W - foreground, foreground]
    for i, (_, mask_path) in enumerate(data.val.pairs):
        assert np.array_equal(data.val[i][1].numpy(), masks[mask_path.stem] == value)
    message = (rf"masks: masks hold only the values 0 and {value} for 2 classes \(background, "
               rf"membrane\): {value} is read as class 1 \(membrane\)")
    if value == 255:
        message += (r", not as ignore; declare ignore_index: 255 in a dataset file if 255 "
                    r"marks pixels to ignore")
    assert len(found(data.notices, message)) == 1, data.notices
    assert found(data.summary["notices"], message)


def test_masks_saved_as_0_255_stay_ignored_when_the_file_says_ignore_index(tmp_path):
    write_pairs(tmp_path, {f"m{i}": stripes(255, 3, seed=i) for i in range(4)})
    (tmp_path / "dataset.yaml").write_text("classes: [background, membrane]\n"
                                           "ignore_index: 255\n")
    data = build_datasets(config(tmp_path, val_ratio=0.25))

    assert data.class_pixels == [3 * (H - 3) * W, 0]
    assert not found(data.notices, "masks hold only")
    # ... but the cost of that choice is in plain sight.
    assert found(data.notices, r"class 'membrane' never occurs in the 3 training masks")
    assert found(data.notices, r"37\.5% of the training pixels are ignore_index 255")


def test_masks_saved_as_0_255_are_read_alike_by_build_eval_dataset(tmp_path):
    # The validation masks alone hold only 255: the decision must cover the whole dataset,
    # or evaluation would read them as all ignored while training read them as class 1.
    write_pairs(tmp_path / "train", {"t0": stripes(255, 2), "t1": stripes(255, 5)})
    write_pairs(tmp_path / "val", {"v0": np.full((H, W), 255, np.uint8)})
    settings = config(tmp_path, classes=("background", "membrane"))
    data = build_datasets(settings)
    assert (data.val[0][1] == 1).all()

    for split, expected in (("val", [np.ones((H, W))]),
                            ("all", [stripes(1, 2), stripes(1, 5), np.ones((H, W))])):
        dataset, spec = build_eval_dataset(settings, (0.5,), (0.5,), split)
        assert spec.remap == {255: 1}
        assert [dataset[i][1].numpy().tolist() for i in range(len(dataset))] == \
            [e.tolist() for e in expected]
        assert found(dataset.notices, r"masks hold only the values 0 and 255")


def test_isbi_preset_keeps_its_own_encoding(tmp_path):
    stored = {f"{i}": np.where(stripes(1, 2, seed=i) == 1, 0, 255).astype(np.uint8)
              for i in range(5)}
    write_pairs(tmp_path, stored)
    data = build_datasets(DataConfig(source="isbi", root=str(tmp_path), augment=False))

    assert data.spec.remap == {255: 0, 0: 1}
    assert data.class_pixels == [len(data.train) * (H - 2) * W, len(data.train) * 2 * W]
    for i, (_, mask_path) in enumerate(data.val.pairs):     # membrane = stored 0
        assert np.array_equal(data.val[i][1].numpy(), stored[mask_path.stem] == 0)
    assert data.notices == []


# ---------------------------------------------------------------- 2. warnings before training

def test_class_that_never_occurs_in_training_is_a_notice(tmp_path):
    write_pairs(tmp_path / "train", {f"t{i}": stripes(1, i + 1) for i in range(4)})
    write_pairs(tmp_path / "val", {"v": stripes(2, 1)})
    data = build_datasets(config(tmp_path, classes=("road", "car", "bus")))

    notes = found(data.notices, r"^class 'bus' never occurs in the 4 training masks: no pixel "
                                r"of .*train/masks is labelled 2; check the value")
    assert len(notes) == 1 and len(data.notices) == 1, data.notices
    assert data.summary["classes"]["bus"] == {"pixels": 0, "share": 0.0, "images": 0}


def test_mostly_ignored_training_pixels_are_a_notice(tmp_path):
    mask = stripes(1, 1)
    mask[-3:] = 255                                  # 3 of 8 rows unlabelled: 37.5%
    write_pairs(tmp_path, {"a": mask, "b": mask})
    data = build_datasets(config(tmp_path, classes=("road", "car"), val=str(tmp_path)))
    assert found(data.notices, r"^37\.5% of the training pixels are ignore_index 255 \(.*masks\) "
                               r"and count nowhere; if 255 marks a class")
    assert data.summary["ignored_share"] == 0.375

    mask[-3:] = 0                                    # nothing ignored: nothing to say
    write_pairs(tmp_path, {"a": mask, "b": mask})
    assert build_datasets(config(tmp_path, classes=("road", "car"), val=str(tmp_path))
                          ).notices == []


# ---------------------------------------------------------------- 3. dataset-file schema

@pytest.mark.parametrize(
    "text, message",
    [
        ("classes: cell, membrane\n",
         r"classes is the text 'cell, membrane', not a list; write a list, e\.g\. "
         r"classes: \[cell, membrane\]"),
        ("classes: [road, car, road]\n", r"classes name 'road' more than once"),
        ("classes: [road, '']\n", r"classes\[1\] is ''; expected a non-empty name"),
        ("classes: [yes, no]\n", r"classes\[0\] is True; expected a non-empty name \(quote"),
        ("classes: [a, b]\ncolours: red\n", r"colours is 'red'; expected a list"),
        ("classes: [a, b]\ncolours: [[0, 0, 0], [300, 0, 0]]\n",
         r"colours\[1\] is \[300, 0, 0\]; expected \[r, g, b\], three whole numbers 0\.\.255"),
        ("classes: [a, b]\ncolours: [[0, 0], [1, 1, 1]]\n", r"colours\[0\] is \[0, 0\]"),
        ("classes: [a, b]\ncolours: [[0, 0, 0]]\n", r"2 class names but 1 colours"),
        ("classes: [a, b]\nignore_index: '255'\n",
         r"ignore_index is '255'; expected a whole number"),
        ("classes: [a, b]\nignore_index: 1\n", r"ignore_index 1 is the label of class 'b'"),
        ("classes: [a, b]\nremap: {255: 3}\n",
         r"remap \{255: 3\}: 3 is not a class 0\.\.1 or ignore_index 255"),
        ("classes: [a, b]\nremap: {void: 1}\n", r"remap 'void': 1 must map a whole number"),
        ("classes: [a, b]\nremap: [255, 1]\n", r"remap is \[255, 1\]; expected a mapping"),
        ("classes: [a, b]\nignore_colour: [0, 0]\n", r"ignore_colour is \[0, 0\]"),
    ],
    ids=["classes as text", "duplicate class", "empty name", "yes/no names", "colours text",
         "colour out of range", "colour of two values", "colour count", "ignore_index text",
         "ignore_index a class", "remap target", "remap key", "remap not a mapping",
         "ignore_colour"],
)
def test_dataset_file_schema_errors_name_the_file_and_key(tmp_path, text, message):
    write_pairs(tmp_path, {"a": stripes(1, 2), "b": stripes(1, 3)})
    (tmp_path / "dataset.yaml").write_text(text)
    with pytest.raises(ValueError, match=r"dataset\.yaml: " + message):
        build_datasets(config(tmp_path))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("dataset.yaml", "classes: [a, b\nremap: {1: 2}\n",
         r"dataset\.yaml: not valid YAML at line 2, column 6: expected ',' or '\]'"),
        ("dataset.json", '{"classes": ["a",\n "b",]}',
         r"dataset\.json: not valid JSON at line 2, column 6: Expecting value"),
    ],
    ids=["YAML", "JSON"],
)
def test_malformed_dataset_file_names_the_line(tmp_path, name, text, message):
    write_pairs(tmp_path, {"a": stripes(1, 2), "b": stripes(1, 3)})
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        build_datasets(config(tmp_path))


def test_missing_spec_file_is_named(tmp_path):
    write_pairs(tmp_path / "data", {"a": stripes(1, 2), "b": stripes(1, 3)})
    with pytest.raises(ValueError, match=r"--spec .*nowhere\.yaml: no such file"):
        build_datasets(config(tmp_path / "data", spec=str(tmp_path / "nowhere.yaml")))


# ---------------------------------------------------------------- 4. remap keys that match nothing

def test_remap_key_that_never_occurs_is_a_notice(tmp_path):
    # 1-bit PNGs read as 0/1, so a remap written for 0/255 masks remaps nothing.
    for i in range(5):
        save(tmp_path / "images" / f"{i}.png", grey(i))
        save(tmp_path / "masks" / f"{i}.png", stripes(1, i + 1).astype(bool), mode="1")
    with Image.open(tmp_path / "masks" / "0.png") as stored:
        assert stored.mode == "1"
    (tmp_path / "dataset.yaml").write_text("classes: [background, object]\nremap: {255: 1}\n")
    data = build_datasets(config(tmp_path))

    assert found(data.notices, r"dataset\.yaml: remap key 255 never occurs in the 5 masks "
                               r"\(their values: 0, 1\), so nothing is remapped from 255")


# ---------------------------------------------------------------- 5. --classes beside a file

def test_classes_flag_beside_a_dataset_file_is_refused(tmp_path):
    write_pairs(tmp_path, {"a": stripes(1, 2), "b": stripes(1, 3)})
    (tmp_path / "dataset.yaml").write_text("classes: [background, road]\n")
    with pytest.raises(ValueError, match=r"--classes a,b but .*dataset\.yaml names the "
                                         r"classes; remove --classes or the file"):
        build_datasets(config(tmp_path, classes=("a", "b")))


# ---------------------------------------------------------------- 6. overlapping split files

def test_split_files_naming_the_same_image_are_refused(tmp_path):
    write_pairs(tmp_path, {stem: stripes(1, 2) for stem in "abcdefg"})
    (tmp_path / "train.txt").write_text("a.png\nb.png\nc.png\nd.png\ne.png\nf.png\n")
    (tmp_path / "val.txt").write_text("c.png\nd.png\ne.png\nf.png\ng.png\n")
    with pytest.raises(ValueError, match=r"train\.txt and .*val\.txt both name 4 image\(s\), "
                                         r"for example \['c', 'd', 'e'\]; list each image in "
                                         r"one split file only"):
        build_datasets(config(tmp_path, classes=("bg", "fg"), train_list="train.txt",
                              val_list="val.txt"))


# ---------------------------------------------------------------- 7. junk files

def test_junk_files_are_skipped_with_a_notice(tmp_path):
    write_pairs(tmp_path, {"a": stripes(1, 2), "b": stripes(1, 3)})
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt"):
        (tmp_path / "images" / name).write_bytes(b"\0junk")
    (tmp_path / "masks" / "._a.png").write_bytes(b"\0AppleDouble")   # macOS metadata twin
    data = build_datasets(config(tmp_path, classes=("bg", "fg")))

    assert sorted(p[0].name for p in data.train.pairs + data.val.pairs) == ["a.png", "b.png"]
    assert found(data.notices, r"^skipped 4 non-image files in .*images \(\.DS_Store, "
                               r"Thumbs\.db, desktop\.ini, \.\.\.\)")
    assert found(data.notices, r"^skipped 1 non-image file in .*masks \(\._a\.png\)")


# ---------------------------------------------------------------- 8. a void colour in RGB masks

COLOURS = [(128, 64, 128), (128, 0, 0)]


def test_ignore_colour_marks_void_pixels_of_rgb_masks(tmp_path):
    labels = stripes(1, 3)
    rgb = np.asarray(COLOURS, np.uint8)[labels]
    rgb[:, :2] = 0                                   # 16 void (black) pixels
    save(tmp_path / "images" / "a.png", grey(0, (H, W, 3)))
    save(tmp_path / "masks" / "a.png", rgb)
    (tmp_path / "dataset.yaml").write_text(
        "classes: [road, building]\ncolours: [[128, 64, 128], [128, 0, 0]]\n"
        "ignore_colour: [0, 0, 0]\n")
    data = build_datasets(config(tmp_path, val=str(tmp_path)))

    expected = labels.astype(np.int64)
    expected[:, :2] = 255
    assert np.array_equal(data.train[0][1].numpy(), expected)
    assert data.class_pixels == [(H - 3) * (W - 2), 3 * (W - 2)]
    assert data.spec.ignore_colour == (0, 0, 0)


def test_rgb_masks_mostly_ignore_colour_get_a_hint_about_colours_not_a_remap(tmp_path):
    """Issue 22: the warning said to map 255 to a class with a remap, which RGB masks with an
    ignore_colour cannot use: the colour is what would become the class."""
    rgb = np.asarray(COLOURS, np.uint8)[stripes(1, 3)]
    rgb[:, :6] = 0                                   # half the pixels void (black)
    save(tmp_path / "images" / "a.png", grey(0, (H, W, 3)))
    save(tmp_path / "masks" / "a.png", rgb)
    (tmp_path / "dataset.yaml").write_text(
        "classes: [road, building]\ncolours: [[128, 64, 128], [128, 0, 0]]\n"
        "ignore_colour: [0, 0, 0]\n")
    notices = build_datasets(config(tmp_path, val=str(tmp_path))).notices
    assert found(notices, r"^50\.0% of the training pixels are ignore_colour \[0, 0, 0\] .*give "
                          r"it \[0, 0, 0\] in 'colours' instead of ignore_colour$")
    assert not found(notices, "remap")


def test_ignore_colour_of_a_class_is_refused(tmp_path):
    write_pairs(tmp_path, {"a": stripes(1, 2)})
    (tmp_path / "dataset.yaml").write_text(
        "classes: [road, building]\ncolours: [[128, 64, 128], [128, 0, 0]]\n"
        "ignore_colour: [128, 0, 0]\n")
    with pytest.raises(ValueError, match=r"dataset\.yaml: ignore_colour \[128, 0, 0\] is the "
                                         r"colour of class 'building'"):
        build_datasets(config(tmp_path))


# ---------------------------------------------------------------- 9. grey + alpha

def test_grey_alpha_image_is_read_as_grey(tmp_path):
    la = np.stack([grey(1), np.full((H, W), 200, np.uint8)], axis=-1)
    save(tmp_path / "images" / "a.png", la, mode="LA")
    save(tmp_path / "masks" / "a.png", np.stack([stripes(1, 2), la[..., 1]], -1), mode="LA")
    image = read_image(tmp_path / "images" / "a.png")

    assert image.shape == (H, W, 1)
    np.testing.assert_allclose(image[..., 0], grey(1) / 255.0, atol=1e-6)
    assert np.array_equal(read_mask(tmp_path / "masks" / "a.png"), stripes(1, 2))
    data = build_datasets(config(tmp_path, classes=("bg", "fg"), val=str(tmp_path)))
    assert data.in_channels == 1


# ---------------------------------------------------------------- 10. Datasets for the toolkit

def test_datasets_summary_counts_the_training_masks(tmp_path):
    first = np.zeros((H, W), np.uint8)
    first[:2] = 2                                    # 24 px of class 2, 72 of class 0
    second = np.zeros((H, W), np.uint8)
    second[:, 0] = 1                                 # 8 px of class 1
    second[:, 1] = 255                               # 8 ignored, 80 of class 0
    write_pairs(tmp_path / "train", {"a": first, "b": second})
    write_pairs(tmp_path / "val", {"v": first})
    data = build_datasets(config(tmp_path, classes=("sky", "road", "car")))

    total = 2 * H * W
    assert data.summary == {
        "classes": {"sky": {"pixels": 152, "share": round(152 / total, 6), "images": 2},
                    "road": {"pixels": 8, "share": round(8 / total, 6), "images": 1},
                    "car": {"pixels": 24, "share": round(24 / total, 6), "images": 1}},
        "ignored_share": round(8 / total, 6), "train_images": 2, "val_images": 1,
        "notices": []}
    assert json.loads(json.dumps(data.summary)) == data.summary


def test_synthetic_datasets_have_no_notices_and_a_summary():
    data = build_datasets(DataConfig(source="synthetic", size=16, train_samples=6,
                                     val_samples=3))
    assert data.notices == []
    assert data.summary == {"classes": {}, "ignored_share": 0.0, "train_images": 6,
                            "val_images": 3, "notices": []}


def test_eval_dataset_falls_back_to_the_checkpoint_class_names(tmp_path):
    write_pairs(tmp_path, {f"m{i}": stripes(1, i + 1) for i in range(4)})
    settings = config(tmp_path)
    with pytest.raises(ValueError, match=r"no dataset file \(dataset\.yaml or dataset\.json\) "
                                         r"and no --classes"):
        build_eval_dataset(settings, (0.5,), (0.5,), "val")
    dataset, spec = build_eval_dataset(settings, (0.5,), (0.5,), "val",
                                       class_names=["bg", "fg"])
    assert spec.class_names == ("bg", "fg") and len(dataset) == 1


def test_eval_split_all_is_every_pair_of_the_folder(tmp_path):
    write_pairs(tmp_path / "flat", {f"m{i}": stripes(1, i + 1) for i in range(5)})
    dataset, _ = build_eval_dataset(config(tmp_path / "flat", classes=("bg", "fg")),
                                    (0.5,), (0.5,), "all")
    assert [p[0].stem for p in dataset.pairs] == [f"m{i}" for i in range(5)]

    write_pairs(tmp_path / "split" / "train", {"t0": stripes(1, 1), "t1": stripes(1, 2)})
    write_pairs(tmp_path / "split" / "val", {"v0": stripes(1, 3)})
    dataset, _ = build_eval_dataset(config(tmp_path / "split", classes=("bg", "fg")),
                                    (0.5,), (0.5,), "all")
    assert [p[0].stem for p in dataset.pairs] == ["t0", "t1", "v0"]

    with pytest.raises(ValueError, match=r"--split all scores every pair of a folder; --data "
                                         r"synthetic has train, val and test"):
        build_eval_dataset(DataConfig(), (0.5,) * 3, (0.5,) * 3, "all")


def test_spec_built_in_python_is_checked_too():
    with pytest.raises(ValueError, match=r"classes name 'a' more than once"):
        DatasetSpec(class_names=("a", "b", "a"))
    with pytest.raises(ValueError, match=r"remap \{7: 5\}: 5 is not a class 0\.\.1"):
        DatasetSpec(class_names=("a", "b"), remap={7: 5})
