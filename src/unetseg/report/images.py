"""Pictures made of pixels: class colours, palette masks, overlays and side-by-side panels.

Every PNG the toolkit writes is encoded here (`png_bytes`, `palette_png`), so there is one
encoder and one palette rule: class ``c`` is drawn in ``colours[c]``; labels outside the palette
(the ignore label, say) are black.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = ["png_bytes", "palette", "palette_png", "colourise", "overlay", "to_rgb8",
           "side_by_side", "side_by_side_array", "stacked", "grey_rgb", "confidence_grey"]

Colours = Sequence[Sequence[int]]


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, 3) array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def confidence_grey(confidence: np.ndarray) -> np.ndarray:
    """A (H, W) confidence in [0, 1] as 8-bit grey: 255 is 1.0, rounded to the nearest."""
    return np.rint(np.clip(confidence, 0.0, 1.0) * 255).astype(np.uint8)


def palette(colours: Colours, dtype=np.uint8) -> np.ndarray:
    """(256, 3) lookup table: row ``c`` is class ``c``'s colour, the rest black."""
    table = np.zeros((256, 3), dtype=dtype)
    table[: len(colours)] = np.asarray(colours, dtype=dtype)
    return table


def palette_png(mask: np.ndarray, colours: Colours) -> bytes:
    """A mode-P PNG whose pixel values are the class indices and whose palette is the class
    colours: viewers show colours, programs read indices."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette(colours).reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def colourise(mask: np.ndarray, colours: Colours) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; labels outside the palette are black."""
    return palette(colours)[np.clip(mask, 0, 255)]


def overlay(image: np.ndarray, mask: np.ndarray, colours: Colours, alpha: float = 0.45,
            rows: int = 512) -> np.ndarray:
    """uint8 (H, W, 3): the image ((H, W, C), uint8, uint16 or float in [0, 1]) blended with
    its class colours, ``rows`` rows at a time so a large image never needs a float copy."""
    table = palette(colours, np.float32)
    scale = 255.0 / (255.0 if image.dtype == np.uint8 else
                     65535.0 if image.dtype == np.uint16 else 1.0)
    out = np.empty((*mask.shape, 3), dtype=np.uint8)
    for top in range(0, mask.shape[0], rows):
        part = image[top:top + rows].astype(np.float32) * scale
        if part.shape[-1] == 1:
            part = np.repeat(part, 3, axis=-1)
        blended = (1 - alpha) * part + alpha * table[mask[top:top + rows]]
        out[top:top + rows] = blended.clip(0, 255).astype(np.uint8)
    return out


def grey_rgb(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] as uint8 (H, W, 3) grey, 1 white."""
    grey = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """An image ((H, W), (H, W, C); uint8, or float in [0, 1]) as uint8 (H, W, 3)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def side_by_side(parts: Sequence[np.ndarray], min_height: int = 160) -> bytes:
    """(H, W, 3) uint8 pictures of one size as one PNG, with white gaps between them.

    Pictures shorter than ``min_height`` are enlarged by an integer factor with nearest
    neighbours, so a 64 x 64 sample stays readable and every pixel stays a sharp block.
    """
    return png_bytes(side_by_side_array(parts, min_height))


def side_by_side_array(parts: Sequence[np.ndarray], min_height: int = 160) -> np.ndarray:
    """`side_by_side` as a uint8 (H, W, 3) array."""
    zoom = max(1, min_height // parts[0].shape[0])
    parts = [np.repeat(np.repeat(p, zoom, axis=0), zoom, axis=1) for p in parts]
    gap = np.full((parts[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = [parts[0]]
    for part in parts[1:]:
        row += [gap, part]
    return np.concatenate(row, axis=1)


def stacked(rows: Sequence[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 pictures one above the other, left-aligned on white, 4-pixel gaps."""
    width = max(row.shape[1] for row in rows)
    sheet = []
    for row in rows:
        padded = np.full((row.shape[0], width, 3), 255, dtype=np.uint8)
        padded[:, :row.shape[1]] = row
        sheet += [padded, np.full((4, width, 3), 255, dtype=np.uint8)]
    return np.concatenate(sheet[:-1], axis=0)
