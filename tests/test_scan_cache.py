"""The construction scan of an image/mask folder (`unetseg.data.folder.FolderScan`): images are
read from their headers, masks decoded once, an even sample of images decoded for the
statistics, and what was found is indexed under the cache folder so that the next scan of
unchanged files reads none of them.

Expectations come from the arrays saved to disk (numpy counts and statistics), or from a
construction with an empty cache; never from the index itself.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from unetseg.config import DataConfig
from unetseg.data import folder
from unetseg.data.build import build_datasets, build_eval_dataset
from unetseg.data.folder import DatasetSpec, FolderDataset, FolderScan, match_pairs
from unetseg.data.io import image_header, read_raw_image

H, W = 10, 14                     # every image here is 10 rows x 14 columns
SPEC = DatasetSpec(class_names=("background", "road", "building"))
AN_HOUR_NS = 3600 * 10**9


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def rgb(seed: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def labels(seed: int, top: int = 3) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, top, size=(H, W)).astype(np.uint8)


def age(root: Path) -> None:
    """Date every file under ``root`` an hour back, as in a folder nobody is writing to: the
    index leaves out files changed in the seconds before a scan
    (`unetseg.data.scan_cache.RECENT_NS`)."""
    old = time.time_ns() - AN_HOUR_NS
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))


def make_folder(root: Path, n: int = 5, masks: dict[int, np.ndarray] | None = None) -> Path:
    """``n`` RGB images with 3-class masks (``masks`` replaces some), dated an hour back."""
    for i in range(n):
        save(root / "images" / f"p{i}.png", rgb(i))
        save(root / "masks" / f"p{i}.png", (masks or {}).get(i, labels(i)))
    age(root)
    return root


def dataset(root: Path, **kwargs) -> FolderDataset:
    return FolderDataset(match_pairs(root / "images", root / "masks"), SPEC, **kwargs)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder per test, so no test sees another's index."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """``FOLDER/NAME`` of each file whose pixels are decoded from now on, once per decoding."""
    names: list[str] = []
    load = ImageFile.ImageFile.load

    def counting(image):
        if image.tile:                     # pixels still to decode: this call decodes them
            path = Path(image.filename)
            names.append(f"{path.parent.name}/{path.name}")
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return names


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every file Pillow opens from now on, header reads included."""
    names: list[str] = []
    original = Image.open

    def recording(path, *args, **kwargs):
        names.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording)
    return names


def summary(data: FolderDataset) -> dict:
    """Everything construction computes, in comparable form."""
    mean, std = data.channel_stats().mean_std()
    return {"pairs": data.pairs, "class_pixels": data.class_pixels.tolist(),
            "class_images": data.class_images.tolist(), "ignored": data.ignored_pixels,
            "sizes": data.sizes, "in_channels": data.in_channels, "mean": mean, "std": std,
            "skipped": data.skipped}


# ---------------------------------------------------------------- reading each file once

def test_first_construction_decodes_every_mask_and_each_sampled_image_once(tmp_path, decoded):
    root = make_folder(tmp_path / "data", n=6)
    dataset(root)
    # A small folder: every image is in the sample.
    assert sorted(decoded) == [f"{kind}/p{i}.png" for kind in ("images", "masks")
                               for i in range(6)]


def test_only_the_sampled_images_are_decoded_and_the_statistics_are_theirs(
        tmp_path, decoded, monkeypatch):
    monkeypatch.setattr(folder, "STATS_SAMPLES", 3)
    root = make_folder(tmp_path / "data", n=7)
    data = dataset(root)
    images = [name for name in decoded if name.startswith("images/")]
    assert images == ["images/p0.png", "images/p3.png", "images/p6.png"]    # spread evenly
    assert sorted(set(decoded) - set(images)) == [f"masks/p{i}.png" for i in range(7)]
    assert len(decoded) == 7 + 3
    pixels = np.concatenate([rgb(i).reshape(-1, 3) / 255.0 for i in (0, 3, 6)])
    mean, std = data.channel_stats().mean_std()
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-6)
    # Class counts still cover every mask.
    expected = np.bincount(np.concatenate([labels(i).ravel() for i in range(7)]), minlength=3)
    assert data.class_pixels.tolist() == expected.tolist()


def test_an_image_recorded_from_its_header_is_decoded_once_it_is_sampled(
        tmp_path, decoded, monkeypatch):
    root = make_folder(tmp_path / "data")
    monkeypatch.setattr(folder, "STATS_SAMPLES", 2)     # p0 and p4
    dataset(root)
    monkeypatch.setattr(folder, "STATS_SAMPLES", 3)     # p0, p2 and p4
    decoded.clear()
    data = dataset(root)
    assert decoded == ["images/p2.png"]
    pixels = np.concatenate([rgb(i).reshape(-1, 3) / 255.0 for i in (0, 2, 4)])
    np.testing.assert_allclose(data.channel_stats().mean_std()[0], pixels.mean(0), rtol=1e-6)


def test_second_construction_opens_no_image_or_mask(tmp_path, opened):
    root = make_folder(tmp_path / "data")
    first = summary(dataset(root))
    assert opened                                       # the first did read the files
    opened.clear()
    second = summary(dataset(root))
    assert opened == []
    assert second == first


def test_the_index_lives_in_the_cache_folder_never_in_the_data_folder(tmp_path, own_cache):
    root = make_folder(tmp_path / "data")
    listing = sorted(p.relative_to(root) for p in root.rglob("*"))
    dataset(root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == listing
    written = list((own_cache / "folders").glob("*.json"))
    assert len(written) == 1 and len(json.loads(written[0].read_text())["masks"]) == 5


def test_results_are_the_same_with_and_without_the_index(tmp_path, own_cache, opened):
    """0/255 masks for two classes: the notice, counts and statistics of `build_datasets`."""
    masks = {i: (labels(i, 2) * 255).astype(np.uint8) for i in range(8)}
    root = make_folder(tmp_path / "data", n=8, masks=masks)
    config = DataConfig(source=str(root), classes=("background", "object"), augment=False)
    cold = build_datasets(config)
    opened.clear()
    cached = build_datasets(config)
    assert opened == []
    assert any("0 and 255" in notice for notice in cached.notices)
    assert cached.notices == cold.notices and cached.summary == cold.summary
    assert (cached.mean, cached.std, cached.class_pixels) == (cold.mean, cold.std,
                                                              cold.class_pixels)
    for split in ("train", "val"):
        assert summary(getattr(cached, split)) == summary(getattr(cold, split))
    expected = sum(int((masks[i] == 255).sum()) for i in range(8)
                   if root / "images" / f"p{i}.png" in {p[0] for p in cold.train.pairs})
    assert cold.class_pixels[1] == expected
    # Scoring reads the other split's masks for the 0/255 question: from the index too.
    opened.clear()
    evaluation, _ = build_eval_dataset(config, cold.mean, cold.std, split="val")
    assert opened == [] and summary(evaluation) == summary(cold.val)


# ---------------------------------------------------------------- when the index is stale

def test_a_rewritten_mask_is_read_again_and_its_new_values_counted(tmp_path, decoded):
    root = make_folder(tmp_path / "data")
    dataset(root)
    changed = np.full((H, W), 2, np.uint8)
    save(root / "masks" / "p3.png", changed)
    decoded.clear()
    data = dataset(root)
    assert decoded == ["masks/p3.png"]
    expected = np.bincount(np.concatenate([labels(i).ravel() for i in (0, 1, 2, 4)]
                                          + [changed.ravel()]), minlength=3)
    assert data.class_pixels.tolist() == expected.tolist()


def test_a_touched_image_is_read_again(tmp_path, decoded):
    root = make_folder(tmp_path / "data")
    dataset(root)
    os.utime(root / "images" / "p1.png")                # same bytes, a new time
    decoded.clear()
    dataset(root)
    assert decoded == ["images/p1.png"]                 # (sampled: it is a small folder)


def test_files_changed_just_before_a_scan_are_not_indexed(tmp_path, decoded):
    """A rewrite within one tick of the file system clock could keep the recorded time."""
    root = make_folder(tmp_path / "data")
    save(root / "masks" / "p2.png", labels(2))          # dated now
    dataset(root)
    decoded.clear()
    dataset(root)
    assert decoded == ["masks/p2.png"]


@pytest.mark.parametrize("content", [b"\x00\xff not json", b'{"version": 1, "pairs": [}',
                                     b'{"images": {"p0.png": 7}, "masks": {}}', b"[]"],
                         ids=["binary", "truncated JSON", "another header", "a list"])
def test_a_corrupt_index_is_ignored_and_replaced(tmp_path, own_cache, opened, content):
    root = make_folder(tmp_path / "data")
    expected = summary(dataset(root))
    (index,) = (own_cache / "folders").glob("*.json")
    index.write_bytes(content)
    assert summary(dataset(root)) == expected
    opened.clear()
    assert summary(dataset(root)) == expected and opened == []   # rewritten, valid again


def test_malformed_entries_are_read_again(tmp_path, own_cache, decoded):
    root = make_folder(tmp_path / "data")
    expected = summary(dataset(root))
    (index,) = (own_cache / "folders").glob("*.json")
    record = json.loads(index.read_text())
    images, masks = record["images"], record["masks"]
    masks["p0.png"] = masks["p0.png"][:5]                   # cut short
    masks["p1.png"][4] = [0, 1, 2, 3]                       # more values than counts
    images["p2.png"][4] = 4                                 # 4 channels
    images["p3.png"][5] = [1, [0.5], [0.25]]                # sums of 1 channel
    images["p4.png"][5] = {"sums": 1}
    index.write_text(json.dumps(record))
    decoded.clear()
    assert summary(dataset(root)) == expected
    assert sorted(decoded) == ["images/p2.png", "images/p3.png", "images/p4.png",
                               "masks/p0.png", "masks/p1.png"]


def test_an_unwritable_cache_folder_only_costs_the_index(tmp_path, monkeypatch, decoded):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(blocker))
    root = make_folder(tmp_path / "data")
    expected = summary(dataset(root))
    decoded.clear()
    assert summary(dataset(root)) == expected and len(decoded) == 10


def test_no_home_folder_for_a_cache_only_costs_the_index(tmp_path, monkeypatch, decoded):
    for name in ("UNETSEG_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    root = make_folder(tmp_path / "data")
    expected = summary(dataset(root))
    decoded.clear()
    assert summary(dataset(root)) == expected and len(decoded) == 10


# ---------------------------------------------------------------- checks from the headers

MISMATCH = rf"mask .*masks/p2\.png is {W}x{H} but image .*images/p2\.png is {W + 3}x{H}"


def test_an_image_whose_header_disagrees_with_its_mask_is_refused_by_name(
        tmp_path, monkeypatch, decoded):
    monkeypatch.setattr(folder, "STATS_SAMPLES", 1)     # p2's pixels are never decoded
    root = make_folder(tmp_path / "data")
    dataset(root)
    save(root / "images" / "p2.png", rgb(2, (H, W + 3)))
    decoded.clear()
    with pytest.raises(ValueError, match=MISMATCH):
        dataset(root)
    assert decoded == []                                # found from the header alone
    data = dataset(root, skip_bad=True)
    assert [Path(path).name for path, _ in data.skipped] == ["p2.png"] and len(data) == 4


def test_a_mismatch_is_refused_from_the_index_too(tmp_path, opened):
    root = make_folder(tmp_path / "data")
    save(root / "images" / "p2.png", rgb(2, (H, W + 3)))
    age(root)
    dataset(root, skip_bad=True)                        # records every file, p2's too
    opened.clear()
    with pytest.raises(ValueError, match=MISMATCH):
        dataset(root)
    assert opened == []


@pytest.mark.parametrize("damage", ["truncated", "a flipped byte"])
def test_a_damaged_png_is_refused_by_name_without_decoding_it(
        tmp_path, monkeypatch, decoded, damage):
    monkeypatch.setattr(folder, "STATS_SAMPLES", 1)     # p3's pixels are never decoded
    root = make_folder(tmp_path / "data")
    target = root / "images" / "p3.png"
    data = bytearray(target.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2] ^= 0xFF                    # inside the pixel data: a bad checksum
    target.write_bytes(bytes(data))
    decoded.clear()
    with pytest.raises(ValueError, match=r"images/p3\.png: cannot be read as an image"):
        dataset(root)
    assert decoded == ["images/p0.png", "masks/p0.png", "masks/p1.png", "masks/p2.png"]


def test_images_mixing_channels_are_refused_from_their_headers(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "STATS_SAMPLES", 1)
    root = make_folder(tmp_path / "data")
    save(root / "images" / "p3.png", rgb(3)[..., 0])
    with pytest.raises(ValueError, match=r"images mix channel counts \(.*p3\.png has 1, "
                                         r".*p0\.png has 3\)"):
        dataset(root)


def test_statistics_come_from_kept_pairs_when_every_sampled_pair_is_left_out(
        tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "STATS_SAMPLES", 1)     # samples p0 only, whose mask is bad
    root = make_folder(tmp_path / "data", n=3, masks={0: np.full((H, W), 9, np.uint8)})
    data = dataset(root, skip_bad=True)
    assert [Path(path).name for path, _ in data.skipped] == ["p0.png"]
    mean, _ = data.channel_stats().mean_std()
    np.testing.assert_allclose(mean, rgb(1).reshape(-1, 3).mean(0) / 255.0, rtol=1e-6)


@pytest.mark.parametrize("name, array, mode", [
    ("grey.png", np.zeros((H, W), np.uint8), None),
    ("grey16.png", np.full((H, W), 4000, np.uint16), None),
    ("rgb.png", rgb(0), None),
    ("rgba.png", np.zeros((H, W, 4), np.uint8), None),
    ("grey-alpha.png", np.zeros((H, W, 2), np.uint8), "LA"),
    ("palette.png", np.zeros((H, W), np.uint8), "P"),
    ("bilevel.png", np.zeros((H, W), bool), "1"),
    ("photo.jpg", rgb(1), None),
    ("grey.tif", np.zeros((H, W), np.uint16), None),
    ("rgb.tif", rgb(2), None),
    ("float.tif", np.zeros((H, W, 1), np.float32), None),
])
def test_header_shape_is_the_shape_of_the_decoded_image(tmp_path, name, array, mode):
    path = tmp_path / name
    if name.endswith(".tif"):
        tifffile.imwrite(path, array)
    else:
        image = Image.fromarray(array)
        (image.convert(mode) if mode else image).save(path)
    assert image_header(path) == read_raw_image(path).shape


def test_a_tiff_that_is_not_an_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((4, H, W), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match=r"stack\.tif: expected a grey or RGB image, found "
                                         r"an array of shape \(4, 10, 14\)"):
        image_header(path)
    with pytest.raises(ValueError, match=r"stack\.tif: expected a grey or RGB image"):
        read_raw_image(path)


def test_scan_of_a_folder_split_in_two_shares_one_index(tmp_path, own_cache, opened):
    root = make_folder(tmp_path / "data", n=6)
    pairs = match_pairs(root / "images", root / "masks")
    FolderScan(pairs[:4], SPEC)
    FolderScan(pairs[4:], SPEC)
    assert len(list((own_cache / "folders").glob("*.json"))) == 1
    opened.clear()
    scan = FolderScan(pairs, SPEC)
    assert opened == [] and len(scan.items) == 6
