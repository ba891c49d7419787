"""Finding and reading images and masks on disk, with errors that name the file.

`list_images` is the one way a folder's images are found (training data, ``check``,
``inspect``, ``predict``): one set of suffixes, dot-files and the files operating systems drop
into folders left out, sorted by name.

Images become float32 (H, W, C) arrays in [0, 1] (8-bit divided by 255, 16-bit by 65535; float
TIFFs are kept as stored). Masks become int64 (H, W) arrays of raw values: the value of a mode L
or I;16 PNG, the palette index of a mode P PNG, or, for RGB masks, the index of the colour in
the class palette (a declared void colour gives the ignore label). Grey + alpha (LA) reads as
grey: alpha carries no image content.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .png import missing_rows

__all__ = ["IMAGE_SUFFIXES", "JUNK_FILES", "ImageListing", "is_image_name", "is_system_file",
           "list_images",
           "images_by_stem", "read_image", "read_raw_image", "scale_to_unit", "read_mask",
           "image_size", "image_header", "no_pixel_limit"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
# Files that operating systems drop into folders; never images, whatever their suffix.
JUNK_FILES = ("thumbs.db", "desktop.ini")
# What the decoders raise on a damaged or lying file: Pillow (OSError, SyntaxError for a broken
# PNG, its decompression-bomb error), tifffile (TiffFileError is a ValueError; a header cut
# short raises struct.error) and both on arrays that make no sense (IndexError). Each becomes
# a ValueError naming the file.
UNREADABLE = (OSError, ValueError, IndexError, SyntaxError, EOFError, struct.error,
              UnidentifiedImageError, Image.DecompressionBombError)
# Pillow modes an image keeps as one grey channel (LA too: its alpha is dropped); any other
# mode (palette, RGBA, CMYK, 1-bit) is read as RGB.
GREY_MODES = ("L", "LA", "I", "I;16", "F")


class ImageListing(NamedTuple):
    images: list[Path]             # the image files, sorted by name
    skipped: list[str]             # the names of the other files (not folders), sorted


def is_system_file(name: str) -> bool:
    """Whether a file called ``name`` is the operating system's, never the user's: a dot-file
    (.DS_Store, macOS's ._0001.png twins) or one of `JUNK_FILES`."""
    return name.startswith(".") or name.lower() in JUNK_FILES


def is_image_name(name: str) -> bool:
    """Whether a file called ``name`` is read as an image: one of `IMAGE_SUFFIXES` (any case),
    and not a system file (`is_system_file`)."""
    return not is_system_file(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path) -> ImageListing:
    """The image files of ``folder`` (`is_image_name`), not recursing, and the other files.

    Raises:
        ValueError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a folder of images")
    # scandir knows which entries are folders without a stat per file (10,000 images: 0.3 s).
    with os.scandir(folder) as listing:
        names = sorted(entry.name for entry in listing if not entry.is_dir())
    return ImageListing([folder / name for name in names if is_image_name(name)],
                        [name for name in names if not is_image_name(name)])


def images_by_stem(folder: str | Path) -> tuple[dict[str, Path], list[str]]:
    """`list_images` by file stem, the way images and masks are matched, and the names of the
    other files.

    Raises:
        ValueError: ``folder`` is not a folder, or two images share a stem (``a.png`` and
            ``a.jpg``): which one pairs with ``a``'s mask would be a guess.
    """
    images, skipped = list_images(folder)
    files: dict[str, Path] = {}
    for path in images:
        if path.stem in files:
            raise ValueError(f"{path} and {files[path.stem]} share the stem {path.stem!r}; "
                             f"keep one of them (files are matched by stem)")
        files[path.stem] = path
    return files, skipped


@contextmanager
def no_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit (about 179 Mpx) inside the block only.

    Large scenes are what tiled prediction is for, so the images a user asks to predict may
    exceed it; everywhere else (training data, masks) the check stays on.
    """
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _read_array(path: Path, keep_modes: tuple[str, ...]) -> np.ndarray:
    """Decode a file: tifffile for TIFF (16-bit RGB, float), Pillow otherwise, converting any
    Pillow mode not in ``keep_modes`` to RGB, except grey + alpha (LA), which stays grey."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            array = np.asarray(tifffile.imread(path))
            if array.size == 0:
                raise ValueError("the file holds no pixels")
            return array
        with Image.open(path) as image:
            image.load()
            if image.format == "PNG" and missing_rows(path):
                raise ValueError(f"its pixel data ends early: {missing_rows(path)} of its "
                                 f"{image.height} rows are missing")
            if image.mode == "LA":
                # Grey with alpha is grey: converting it to RGB would triple one channel.
                return np.asarray(image.getchannel("L"))
            return np.asarray(image if image.mode in keep_modes else image.convert("RGB"))
    except UNREADABLE as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error


def scale_to_unit(array: np.ndarray, path: str | Path = "image") -> np.ndarray:
    """Pixel values as float32 in [0, 1]: 8-bit / 255, 16-bit / 65535, floats as stored."""
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind in "iu" and array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"{path}: pixel values outside 0..65535 in a {array.dtype} image; "
                         f"expected 8- or 16-bit data")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{path}: pixel type {array.dtype} is not supported; expected 8- or "
                         f"16-bit integers or floats")
    unit = array.astype(np.float32)
    unit /= 255.0 if array.dtype == np.uint8 else 65535.0     # in place: no second copy
    return unit


def read_image(path: str | Path) -> np.ndarray:
    """An image as float32 (H, W, C) in [0, 1] (floats as stored), C = 1 (grey) or 3 (RGB)."""
    return scale_to_unit(read_raw_image(path), path)


def read_raw_image(path: str | Path) -> np.ndarray:
    """An image as (H, W, C) in its stored type (uint8, uint16 or float), C = 1 or 3.

    For large images: a 8192 x 8192 RGB PNG is 200 MB as uint8 but 800 MB as float32, so
    prediction keeps it raw and scales one band of rows at a time (`scale_to_unit`).
    """
    path = Path(path)
    # A palette or RGBA image becomes RGB; grey (also grey + alpha) and 16-bit stay as stored.
    array = _read_array(path, keep_modes=(*GREY_MODES, "RGB"))
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]                          # alpha carries no image content
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: expected a grey or RGB image, found an array of shape "
                         f"{array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{path}: image has no pixels (shape {array.shape})")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{path}: image holds NaN or infinite values")
    if array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.uint16):
        if array.min() < 0 or array.max() > 65535:
            raise ValueError(f"{path}: pixel values outside 0..65535 in a {array.dtype} image; "
                             f"expected 8- or 16-bit data")
        array = array.astype(np.uint16)                # Pillow's mode "I" for 16-bit PNGs
    return array


def read_mask(
    path: str | Path, colours: np.ndarray | None = None,
    ignore_colour: tuple[int, int, int] | None = None, ignore_index: int = 255,
) -> np.ndarray:
    """A mask as int64 (H, W) of raw values.

    Single-channel masks (PNG mode 1, L, LA, P or I;16) give their stored values (for mode P,
    the palette index; a 1-bit PNG gives 0 and 1). A 3-channel mask is mapped colour by colour
    through ``colours``, an int (C, 3) array whose row c is the RGB colour of class c; pixels of
    ``ignore_colour`` become ``ignore_index``; any other colour is an error.
    """
    path = Path(path)
    # Mode P keeps its palette indices: they are the class values of a palette mask.
    array = _read_array(path, keep_modes=("1", "L", "P", "I", "I;16", "RGB"))
    if array.ndim == 2:
        if array.dtype.kind not in "iub":
            raise ValueError(f"{path}: mask must hold integer class values, found {array.dtype}")
        return array.astype(np.int64)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        if colours is None:
            raise ValueError(f"{path}: RGB mask but the dataset gives no class colours; "
                             f"add 'colours' to the dataset file or store class indices")
        colours = np.asarray(colours)
        if ignore_colour is None:
            return _colours_to_indices(array[..., :3], colours, path)
        # The void colour is one more palette row, whose index then becomes the ignore label.
        palette = np.concatenate([colours, np.asarray([ignore_colour])]).astype(np.int64)
        indices = _colours_to_indices(array[..., :3], palette, path)
        indices[indices == len(colours)] = ignore_index
        return indices
    raise ValueError(f"{path}: expected a single-channel or RGB mask, found shape {array.shape}")


def _colours_to_indices(rgb: np.ndarray, colours: np.ndarray, path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    colours = colours.astype(np.int64)
    palette = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    order = np.argsort(palette)
    position = np.searchsorted(palette[order], codes).clip(0, len(palette) - 1)
    found = palette[order][position] == codes
    if not found.all():
        unknown = np.unique(codes[~found])[:5]
        listed = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown)
        raise ValueError(f"{path}: {int((~found).sum())} pixels have colours not in the class "
                         f"palette, for example {listed}")
    return order[position].astype(np.int64)


def image_header(path: str | Path) -> tuple[int, int, int]:
    """(height, width, channels) of the array `read_raw_image` would return, from the file header
    without decoding the pixels: channels is 1 for grey (`GREY_MODES`, or a 2-D TIFF), else 3.

    A PNG's chunk checksums are verified too (Pillow's ``verify``: half the cost of a header
    read, a fraction of a decoding), so a truncated or damaged PNG is found here; damage past
    the header of other formats is only found by decoding. Raises ValueError naming the file if
    the file cannot be read, or if it describes an array `read_raw_image` refuses (a TIFF that
    is neither grey nor RGB).
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        try:
            with Image.open(path) as image:
                (width, height), mode = image.size, image.mode
                image.verify()                   # a no-op for formats without checksums
        except UNREADABLE as error:
            raise ValueError(f"{path}: cannot be read as an image ({error})") from error
        return height, width, 1 if mode in GREY_MODES else 3
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)        # what tifffile.imread returns
    except UNREADABLE as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) != 3 or shape[-1] not in (1, 3, 4):
        raise ValueError(f"{path}: expected a grey or RGB image, found an array of shape {shape}")
    return shape[0], shape[1], 1 if shape[-1] == 1 else 3


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
        except UNREADABLE as error:
            raise ValueError(f"{path}: cannot be read as an image ({error})") from error
        return int(shape[0]), int(shape[1])
    try:
        with Image.open(path) as image:
            width, height = image.size
    except UNREADABLE as error:
        raise ValueError(f"{path}: cannot be read as an image ({error})") from error
    return height, width
