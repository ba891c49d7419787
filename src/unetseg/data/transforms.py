"""Training augmentation, applied jointly to image and mask.

Built on albumentations (the field's default for CPU-side augmentation, in DataLoader workers):
it moves masks with nearest-neighbour interpolation, so class indices never blend. Each sample
is augmented with its own seed (from the run seed, the epoch and the index), which makes a run
reproducible whatever the number of workers, and a resumed run redraw the same augmentations.
"""

from __future__ import annotations

import os

import numpy as np


def _import_augmentation_libraries():
    """Import albumentations and cv2 leaving the environment as it was.

    albumentations looks for a newer version online at import unless the environment opts out,
    and runs must never touch the network, so the opt-out is set for the import (the only time
    it is read). cv2 adds its folder to LD_LIBRARY_PATH at import, which only child processes
    would see (its own libraries are loaded by then). Both are undone afterwards.
    """
    saved = dict(os.environ)
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    try:
        import albumentations
        import cv2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return albumentations, cv2


A, cv2 = _import_augmentation_libraries()

from .io import scale_to_unit  # noqa: E402  (after the import above, which sets up cv2)
from .tensors import label_type  # noqa: E402

__all__ = ["TrainTransform"]


class TrainTransform:
    """Random scale, pad-and-crop to ``size``, flips, 90-degree rotations, brightness/contrast.

    The scale and the crop are one step, done crop first: only the crop's pixels are
    resampled, from the image as stored (8-bit stays 8-bit), so a sample's cost follows the
    crop rather than the image (a full-frame rescale of a 1920 x 1080 photograph for a
    256-pixel crop was most of the loader's time). The result is what rescaling the whole
    image by a factor drawn from ``scale`` (to ``round(side * factor)`` pixels a side), padding
    it to ``size`` where it is smaller (centred; image 0, mask ``ignore_index``) and cropping
    ``size`` x ``size`` would give: bilinear for the image and the nearest pixel centre for the
    mask, on the same grid, so labels never blend and never shift against the image.

    Args:
        size: side of the square training crop.
        scale: range of the random rescale factor.
        ignore_index: mask value given to padding, so padded pixels count nowhere.
        jitter: strength of the brightness and contrast jitter (0 turns it off).
        focus: class indices a share of the crops is centred on (rare classes: a uniform
            crop of a large image seldom holds a small object).
        focus_share: the probability that a crop is centred on a pixel of a ``focus`` class,
            where the mask holds one (nnU-Net forces a third of its patches onto foreground);
            the other crops, and all of them at 0, are placed uniformly.

    Call with ``(image (H, W, C) as stored: uint8, uint16 or float in [0, 1]; mask (H, W) of
    labels; seed)``; returns ``(image float32 (size, size, C) in [0, 1], mask int64 (size,
    size))``.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.5, 2.0), ignore_index: int = 255,
        jitter: float = 0.2, focus: tuple[int, ...] = (), focus_share: float = 0.0,
    ) -> None:
        self.size, self.scale, self.ignore_index = size, scale, ignore_index
        self.focus, self.focus_share = np.asarray(focus, dtype=np.int64), focus_share
        self.finish = A.Compose([
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=jitter, contrast_limit=jitter,
                                       p=0.5 if jitter > 0 else 0.0),
        ])

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        image, mask = self.scaled_crop(image, _compact(mask, self.ignore_index), rng)
        # Compose.set_random_seed gives every child the same seed, which ties their draws
        # together (both flips and the rotation would always fire at once): seed each child
        # from its own stream instead.
        self.finish.set_random_seed(seed)
        child_seeds = np.random.SeedSequence(seed).generate_state(len(self.finish.transforms))
        for transform, child_seed in zip(self.finish.transforms, child_seeds):
            transform.set_random_seed(int(child_seed))
        # albumentations wants masks in a cv2 integer type.
        out = self.finish(image=scale_to_unit(image), mask=mask.astype(np.int32))
        image = out["image"].astype(np.float32, copy=False)
        if image.ndim == 2:
            image = image[..., None]
        return image, out["mask"].astype(np.int64)

    def scaled_crop(self, image: np.ndarray, mask: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The ``size`` crop of the image rescaled by a random factor, image and mask alike,
        in the image's stored type (see the class docstring)."""
        height, width = mask.shape
        factor = rng.uniform(*self.scale)
        scaled = (max(1, round(height * factor)), max(1, round(width * factor)))
        centre = self._focus_point(mask, rng)
        top, left = (self._start(scaled[axis], rng, None if centre is None
                                 else (centre[axis] + 0.5) * scaled[axis] / mask.shape[axis])
                     for axis in (0, 1))
        # The crop's rows [r0, r1) and columns [c0, c1) that the rescaled image covers; the
        # rest is padding.
        r0, r1 = max(0, -top), min(self.size, scaled[0] - top)
        c0, c1 = max(0, -left), min(self.size, scaled[1] - left)
        # Crop pixel (row, col) samples the image at the centre of rescaled pixel (top + row,
        # left + col): ((top + row + 0.5) * height / scaled height - 0.5, likewise for x).
        sy, sx = height / scaled[0], width / scaled[1]
        to_image = np.array([[sx, 0.0, (left + c0 + 0.5) * sx - 0.5],
                             [0.0, sy, (top + r0 + 0.5) * sy - 0.5]])
        window = (c1 - c0, r1 - r0)
        inverse = cv2.WARP_INVERSE_MAP
        crop = np.zeros((self.size, self.size, image.shape[-1]), dtype=_warpable(image.dtype))
        source = np.ascontiguousarray(image, dtype=crop.dtype)    # an RGBA's RGB is a view
        content = cv2.warpAffine(source, to_image, window,
                                 flags=cv2.INTER_LINEAR | inverse,
                                 borderMode=cv2.BORDER_REPLICATE)
        crop[r0:r1, c0:c1] = content.reshape(r1 - r0, c1 - c0, -1)
        labels = np.full((self.size, self.size), self.ignore_index, dtype=mask.dtype)
        labels[r0:r1, c0:c1] = cv2.warpAffine(mask, to_image, window,
                                              flags=cv2.INTER_NEAREST | inverse,
                                              borderMode=cv2.BORDER_REPLICATE)
        return crop, labels

    def _start(self, scaled: int, rng: np.random.Generator, centre: float | None) -> int:
        """Where the crop starts along an axis of ``scaled`` pixels: centred padding where the
        image is shorter than the crop, else centred on ``centre`` (kept inside), else
        uniform."""
        if scaled <= self.size:
            return -((self.size - scaled) // 2)
        if centre is None:
            return int(rng.integers(0, scaled - self.size + 1))
        return min(max(int(centre) - self.size // 2, 0), scaled - self.size)

    def _focus_point(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
        """A random pixel of a focus class with probability ``focus_share`` (where the mask
        holds one), else None: a uniform crop."""
        if not self.focus_share or rng.random() >= self.focus_share:
            return None
        candidates = np.flatnonzero(np.isin(mask, self.focus))
        if not candidates.size:
            return None
        return divmod(int(candidates[rng.integers(candidates.size)]), mask.shape[1])


def _compact(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """Labels in a type cv2 warps that holds them and the ignore label: uint8, else uint16
    (as `FolderDataset.stored` keeps them; integer masks as decoded are int64)."""
    if mask.dtype == np.uint16 or (mask.dtype == np.uint8 and ignore_index < 256):
        return mask
    return mask.astype(label_type(max(int(mask.max(initial=0)), ignore_index)))


def _warpable(dtype: np.dtype) -> np.dtype:
    """cv2 resamples uint8, uint16, float32 and float64: other stored types become float32."""
    return dtype if dtype in (np.uint8, np.uint16, np.float32, np.float64) else np.dtype(np.float32)
