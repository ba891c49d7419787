"""Whether a PNG holds all the pixel data its header promises.

Pillow decodes a PNG whose compressed pixel data (IDAT) ends before the last row as if the
missing rows were black, without a word: the file's chunks and checksums are all in order, only
the zlib stream is short. `missing_rows` inflates that stream a megabyte at a time, counting
its bytes against what the header's size, colour type, bit depth and interlacing require.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

__all__ = ["missing_rows"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Samples per pixel by colour type: grey, RGB, palette, grey + alpha, RGBA.
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7's seven passes: (x0, y0, dx, dy).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
STEP = 1 << 20                     # inflated bytes held at once


def _row_bytes(width: int, bits_per_pixel: int) -> int:
    """One scanline: its filter byte and its pixels, packed to whole bytes."""
    return 1 + math.ceil(width * bits_per_pixel / 8)


def _expected_bytes(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    if not interlaced:
        return height * _row_bytes(width, bits_per_pixel)
    total = 0
    for x0, y0, dx, dy in ADAM7:
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            total += rows * _row_bytes(columns, bits_per_pixel)
    return total


def missing_rows(path: str | Path) -> int:
    """How many rows' worth of pixel data the PNG at ``path`` lacks (0 when it is whole, or
    when the file is no PNG: other readers judge those). Reads the file once, chunk by chunk;
    never holds more than a megabyte of inflated data."""
    with open(path, "rb") as file:
        if file.read(8) != SIGNATURE:
            return 0
        inflate, inflated, header = zlib.decompressobj(), 0, None
        while True:
            head = file.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", file.read(13))
                file.seek(length - 13 + 4, 1)                  # the rest, and the checksum
            elif kind == b"IDAT":
                data = file.read(length)
                file.seek(4, 1)
                while data and not inflate.eof:
                    try:
                        inflated += len(inflate.decompress(data, STEP))
                    except zlib.error:
                        return _rows(header, inflated)
                    data = inflate.unconsumed_tail
            elif kind == b"IEND":
                break
            else:
                file.seek(length + 4, 1)
    return _rows(header, inflated)


def _rows(header: tuple | None, inflated: int) -> int:
    """The rows ``inflated`` bytes leave out, by the header (none without one)."""
    if header is None:
        return 0
    width, height, depth, colour, _, _, interlace = header
    bits = depth * SAMPLES.get(colour, 1)
    missing = _expected_bytes(width, height, bits, interlace == 1) - inflated
    return 0 if missing <= 0 else math.ceil(missing / _row_bytes(width, bits))
