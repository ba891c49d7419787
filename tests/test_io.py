"""Finding images in a folder (`unetseg.data.io.list_images`): one rule for every verb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetseg.data.folder import match_pairs
from unetseg.data.io import images_by_stem, list_images
from unetseg.jobs.check import _image_stems
from unetseg.jobs.inspect import _mask_files
from unetseg.jobs.predict import expand_inputs

IMAGES = ["A.PNG", "b.jpg", "c.jpeg", "d.tif", "e.TIFF", "f.bmp"]
OTHERS = [".DS_Store", "._A.PNG", "Thumbs.db", "desktop.ini", "notes.txt", "scan.tif.bak"]


def folder_of_everything(folder: Path) -> Path:
    folder.mkdir()
    for name in IMAGES:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / name)
    for name in OTHERS:
        (folder / name).write_bytes(b"not an image")
    (folder / "sub.png").mkdir()                          # a folder is never an image
    return folder


def test_images_are_listed_by_suffix_in_any_case_sorted_and_the_rest_named(tmp_path):
    images, skipped = list_images(folder_of_everything(tmp_path / "f"))
    assert [path.name for path in images] == IMAGES
    assert skipped == sorted(OTHERS)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere: expected a folder of images"):
        list_images(tmp_path / "nowhere")


def test_two_images_with_one_stem_are_refused_by_name(tmp_path):
    folder_of_everything(tmp_path / "f")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "f" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png and .*b\.jpg share the stem 'b'"):
        images_by_stem(tmp_path / "f")


def test_training_check_inspect_and_predict_find_the_same_images(tmp_path):
    """Each listed a folder its own way: predict took macOS's ._A.PNG twin for an image."""
    folder = folder_of_everything(tmp_path / "f")
    expected = [folder / name for name in IMAGES]
    assert expand_inputs([str(folder)]).images == expected
    assert list(_image_stems(folder).values()) == expected
    assert list(_mask_files(folder, "--truth", predictions=False).values()) == expected
    masks = folder_of_everything(tmp_path / "m")
    assert [image for image, _ in match_pairs(folder, masks)] == expected
