"""`unetseg.data.png`: a PNG whose pixel data ends before its last row is found, not read as
black rows; whole PNGs of every mode pass."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from unetseg.data.io import read_raw_image
from unetseg.data.png import missing_rows


def short_png(path, width: int = 32, height: int = 32, rows: int = 16) -> None:
    """A well-formed RGB PNG (chunks and checksums in order) whose zlib stream holds only the
    first ``rows`` scanlines: Pillow decodes it, the missing rows black."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    pixels = b"".join(b"\x00" + bytes([200]) * (width * 3) for _ in range(rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("array,mode", [
    (np.arange(37 * 51 * 3).reshape(37, 51, 3) % 256, "RGB"),
    (np.arange(37 * 51).reshape(37, 51) % 256, "L"),
    (np.arange(37 * 51).reshape(37, 51) * 31 % 65536, "I;16"),
    (np.arange(37 * 51).reshape(37, 51) % 4, "P"),
    (np.arange(37 * 51).reshape(37, 51) % 2 * 255, "1"),
])
def test_a_whole_png_of_any_mode_misses_no_rows(tmp_path, array, mode):
    dtype = np.uint16 if mode == "I;16" else np.uint8
    image = Image.fromarray(array.astype(dtype))
    image = image.convert(mode) if mode in ("P", "1") else image
    image.save(tmp_path / "whole.png")
    assert missing_rows(tmp_path / "whole.png") == 0


def test_pixel_data_that_ends_early_is_counted_and_refused_naming_the_file(tmp_path):
    short_png(tmp_path / "short.png", rows=16)
    with Image.open(tmp_path / "short.png") as image:       # what Pillow alone makes of it
        assert np.asarray(image)[16:].max() == 0
    assert missing_rows(tmp_path / "short.png") == 16
    with pytest.raises(ValueError, match=r"short.png: cannot be read as an image \(its pixel "
                                         r"data ends early: 16 of its 32 rows are missing\)"):
        read_raw_image(tmp_path / "short.png")


def test_a_file_that_is_no_png_is_left_to_other_readers(tmp_path):
    (tmp_path / "a.png").write_bytes(b"GIF89a not a png")
    assert missing_rows(tmp_path / "a.png") == 0
