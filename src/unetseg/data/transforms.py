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

__all__ = ["TrainTransform"]


class TrainTransform:
    """Random scale, pad-and-crop to ``size``, flips, 90-degree rotations, brightness/contrast.

    Args:
        size: side of the square training crop.
        scale: range of the random rescale factor before cropping.
        ignore_index: mask value given to padding, so padded pixels count nowhere.
        jitter: strength of the brightness and contrast jitter (0 turns it off).
        focus: class indices a share of the crops is centred on (rare classes: a uniform
            crop of a large image seldom holds a small object).
        focus_share: the probability that a crop is centred on a pixel of a ``focus`` class,
            where the mask holds one (nnU-Net forces a third of its patches onto foreground);
            the other crops, and all of them at 0, are placed uniformly.

    Call with ``(image float32 (H, W, C) in [0, 1], mask int64 (H, W), seed)``; returns the
    augmented ``(image, mask)`` of size ``size`` x ``size``.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.5, 2.0), ignore_index: int = 255,
        jitter: float = 0.2, focus: tuple[int, ...] = (), focus_share: float = 0.0,
    ) -> None:
        self.size = size
        self.focus, self.focus_share = np.asarray(focus, dtype=np.int64), focus_share
        # The crop is albumentations' own unless crops are focused, so that runs without a
        # focus draw exactly the crops they always drew.
        crop = [A.RandomCrop(height=size, width=size)] if not focus_share else []
        self.compose = A.Compose([
            # INTER_NEAREST_EXACT samples at pixel centres as INTER_LINEAR does; plain
            # INTER_NEAREST is shifted by up to half a pixel against the image.
            A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), p=1.0,
                          interpolation=cv2.INTER_LINEAR,
                          mask_interpolation=cv2.INTER_NEAREST_EXACT),
            A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT,
                          fill=0, fill_mask=ignore_index),
            *crop,
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=jitter, contrast_limit=jitter,
                                       p=0.5 if jitter > 0 else 0.0),
        ])

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        # Compose.set_random_seed gives every child the same seed, which ties their draws
        # together (both flips and the rotation would always fire at once): seed each child
        # from its own stream instead.
        self.compose.set_random_seed(seed)
        child_seeds = np.random.SeedSequence(seed).generate_state(len(self.compose.transforms))
        for transform, child_seed in zip(self.compose.transforms, child_seeds):
            transform.set_random_seed(int(child_seed))
        # albumentations keeps float images as float, but wants masks in a cv2 integer type.
        if not self.focus_share:
            out = self.compose(image=image, mask=mask.astype(np.int32))
        else:          # scale and pad (the first two), crop here, then flips and colour
            out = {"image": image, "mask": mask.astype(np.int32)}
            transforms = self.compose.transforms
            for transform in transforms[:2]:
                out = transform(**out)
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
            out["image"], out["mask"] = self._crop(out["image"], out["mask"], rng)
            for transform in transforms[2:]:
                out = transform(**out)
        image = out["image"].astype(np.float32)
        if image.ndim == 2:
            image = image[..., None]
        return image, out["mask"].astype(np.int64)

    def _crop(self, image: np.ndarray, mask: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A ``size`` crop, centred on a random pixel of a focus class with probability
        ``focus_share`` (where the mask holds one), else placed uniformly."""
        height, width = mask.shape
        top, left = rng.integers(0, height - self.size + 1), rng.integers(0, width - self.size + 1)
        if rng.random() < self.focus_share:
            candidates = np.flatnonzero(np.isin(mask, self.focus))
            if candidates.size:
                y, x = divmod(int(candidates[rng.integers(candidates.size)]), width)
                top = min(max(y - self.size // 2, 0), height - self.size)
                left = min(max(x - self.size // 2, 0), width - self.size)
        window = (slice(top, top + self.size), slice(left, left + self.size))
        return image[window], mask[window]
