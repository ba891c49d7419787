"""Bad input gets an error that names the file and what was expected, found before any work
is done; with --skip-bad, bad training pairs are left out and listed."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetseg.cli import main
from unetseg.data.io import read_image

TINY = ["--plan", "none", "--size", "16", "--base", "4", "--batch-size", "2", "--epochs", "1",
        "--quiet", "--no-augment"]


def dataset(root, bad: bool = True):
    """Six good 16 x 16 pairs, plus (with ``bad``) a corrupt image and a mask with class 7."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, 2, (16, 16), dtype=np.uint8)).save(
            root / "masks" / f"{i}.png")
    if bad:
        (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "broken.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            root / "images" / "seven.png")
        Image.fromarray(np.full((16, 16), 7, np.uint8)).save(root / "masks" / "seven.png")
    (root / "dataset.yaml").write_text("classes: [background, object]\n")
    return root


def test_a_bad_pair_stops_training_before_the_first_epoch_naming_the_file(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), *TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "broken.png: cannot be read as an image" in err
    assert not (run / "metrics.jsonl").exists()


def test_skip_bad_leaves_bad_pairs_out_and_lists_them(tmp_path, capsys):
    data = dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), *TINY, "--skip-bad", "--val-ratio", "0.25",
                 "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count("--skip-bad: left out 2 bad pair(s):") == 2          # at start and end
    assert "broken.png: cannot be read as an image" in out
    assert "seven.png: values [7] are not classes 0..1" in out
    broken = data / "images" / "broken.png"
    assert f"{broken}: {broken}:" not in out                  # the file is not named twice


def test_nan_pixels_are_refused_naming_the_file(tmp_path):
    image = np.zeros((4, 4), np.float32)
    image[1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    with pytest.raises(ValueError, match=r"nan.tif: image holds NaN or infinite values"):
        read_image(tmp_path / "nan.tif")


def test_a_decompression_bomb_is_an_error_naming_the_file(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"big.png: cannot be read as an image"):
        read_image(tmp_path / "big.png")


def test_an_empty_image_is_refused_naming_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match=r"empty.tif: "):
        read_image(tmp_path / "empty.tif")


@pytest.mark.parametrize("header", [b"II*", b"II*\x00\x08", b"MM\x00*\x00\x00"])
def test_a_tiff_cut_short_in_its_header_is_an_error_naming_the_file(tmp_path, header):
    """Found by `make fuzz`: tifffile raised struct.error, a traceback, on a header of 3 to 6
    bytes, from every reader (the header, the size, the image and the mask)."""
    from unetseg.data.io import image_header, image_size, read_mask

    path = tmp_path / "cut.tif"
    path.write_bytes(header)
    for reader in (image_header, image_size, read_image, read_mask):
        with pytest.raises(ValueError, match=r"cut.tif: cannot be read as an image"):
            reader(path)


def test_a_checkpoint_of_another_class_count_is_refused_on_other_data(tiny_run, tmp_path,
                                                                      capsys):
    _, result = tiny_run
    data = dataset(tmp_path / "data", bad=False)
    assert main(["evaluate", str(result.run_dir / "best.safetensors"), "--data", str(data),
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert ("predicts the classes background, circle, square but the data names background, "
            "object" in err)


def test_a_grey_image_for_an_rgb_model_is_reported_by_name(tiny_run, tmp_path, capsys):
    _, result = tiny_run
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "grey.png")
    assert main(["predict", str(result.run_dir / "best.safetensors"), str(tmp_path / "grey.png"),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "grey.png" in err and "expects 3 channels, found 1" in err


# --- untrusted images in predict (issue 22, item 10) --------------------------------------------

def png_claiming(path, width: int, height: int) -> None:
    """A valid 74-byte PNG whose header claims ``width`` x ``height`` RGB pixels (a
    decompression bomb: its data decodes to nothing like that)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def test_a_png_header_claiming_60000_squared_pixels_is_refused_from_the_header(
        shapes_checkpoint, tmp_path, capsys, monkeypatch):
    """A 74-byte PNG claiming 60000 x 60000 pixels made predict run for hours at 6.4 GB: it
    is refused from its header, naming its size and --max-pixels; raised deliberately, the
    memory its arrays would take is checked before decoding."""
    png_claiming(tmp_path / "bomb.png", 60_000, 60_000)
    out = tmp_path / "out"
    assert main(["predict", str(shapes_checkpoint), str(tmp_path / "bomb.png"), "--out",
                 str(out), "--quiet"]) == 1
    assert ("bomb.png: 60000 x 60000 pixels (3,600 Mpx) is over --max-pixels 268,435,456; "
            "pass a larger --max-pixels") in capsys.readouterr().err
    monkeypatch.setattr("unetseg.memory.available_bytes", lambda device: 8 * 2**30)
    assert main(["predict", str(shapes_checkpoint), str(tmp_path / "bomb.png"), "--out",
                 str(out), "--quiet", "--overwrite", "--max-pixels", "4000000000"]) == 1
    err = capsys.readouterr().err
    assert "GiB to predict" in err and "only 8.0 GiB of RAM" in err and "60000 x 60000" in err


def test_a_png_whose_pixel_data_ends_early_is_refused_not_read_as_zeros(shapes_checkpoint,
                                                                         tmp_path, capsys):
    """A PNG whose compressed pixel data ends half-way (its chunks in order) was predicted as
    if its missing rows were black: refused, naming it; the other image is predicted."""
    from test_png import short_png

    short_png(tmp_path / "cut.png", width=64, height=64, rows=20)
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(whole)
    assert main(["predict", str(shapes_checkpoint), str(tmp_path / "cut.png"), str(whole),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cut.png: cannot be read as an image (its pixel data ends early: 44 of its 64 " \
           "rows are missing)" in err and "whole.png" not in err
    assert (tmp_path / "out" / "whole.png").is_file()        # the other image is predicted


def test_skip_bad_names_the_split_left_with_no_good_pair(tmp_path):
    """Issue 22: "--skip-bad says 'all 1 pairs are bad' when 1 of 6 is bad" (the one bad pair
    was the whole validation split)."""
    from unetseg.config import DataConfig
    from unetseg.data.build import build_datasets

    data = dataset(tmp_path / "data")
    (data / "train.txt").write_text("0\n1\n2\n3\n4\n5\n")
    (data / "val.txt").write_text("broken\n")
    config = DataConfig(source=str(data), train_list="train.txt", val_list="val.txt",
                        skip_bad=True, augment=False)
    with pytest.raises(ValueError, match=r"^the only pair of the validation split is bad, and "
                                         r"a split needs one good pair; the first: .*broken.png"):
        build_datasets(config)
