"""Synthetic shapes: the built-in dataset that needs no download.

Each image has a uniform random background colour and 1 to 3 shapes of random colour:
class 1 is a filled circle, class 2 a filled square (class 0 is background). At 64 x 64 a
shape's centre lies at least 10 px from the border and its radius (half the square's side) is
4 to 12 px; both scale with the image size. Gaussian noise of sigma 0.02 is added and values
are clipped to [0, 1]. Later shapes are drawn over earlier ones.

Everything is drawn from one `numpy.random.Generator` seeded per sample, so sample ``i`` of a
given seed and size is the same on every machine and in every DataLoader worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CLASS_NAMES", "Shape", "random_shapes", "draw_shapes", "SyntheticShapes"]

CLASS_NAMES = ("background", "circle", "square")

# The seed's geometry at its reference size of 64 px; everything scales with size / 64.
REFERENCE_SIZE = 64
MARGIN = 10
RADIUS_RANGE = (4, 12)
NOISE_SIGMA = 0.02


@dataclass(frozen=True)
class Shape:
    """One shape to draw: class label (1 circle, 2 square), centre, radius, RGB colour."""

    label: int
    cy: float
    cx: float
    radius: float
    colour: tuple[float, float, float]

    def pixels(self, size: int) -> np.ndarray:
        """Boolean (size, size) mask of the pixels the shape covers."""
        rows, cols = np.mgrid[0:size, 0:size]
        if self.label == 1:
            return (rows - self.cy) ** 2 + (cols - self.cx) ** 2 <= self.radius**2
        return (np.abs(rows - self.cy) <= self.radius) & (np.abs(cols - self.cx) <= self.radius)


def random_shapes(rng: np.random.Generator, size: int) -> list[Shape]:
    """1 to 3 shapes with the seed's geometry scaled from 64 px to ``size``."""
    scale = size / REFERENCE_SIZE
    margin = MARGIN * scale
    shapes = []
    for _ in range(rng.integers(1, 4)):
        label = int(rng.integers(1, 3))
        cy, cx = rng.uniform(margin, size - 1 - margin, size=2)
        radius = rng.uniform(*RADIUS_RANGE) * scale
        colour = tuple(rng.uniform(0, 1, size=3).tolist())
        shapes.append(Shape(label, float(cy), float(cx), float(radius), colour))
    return shapes


def draw_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One sample: image float32 (3, size, size) in [0, 1] and mask int64 (size, size) in {0,1,2}."""
    image = np.empty((3, size, size), dtype=np.float32)
    image[:] = rng.uniform(0, 1, size=(3, 1, 1))
    mask = np.zeros((size, size), dtype=np.int64)
    for shape in random_shapes(rng, size):
        inside = shape.pixels(size)
        image[:, inside] = np.asarray(shape.colour, dtype=np.float32)[:, None]
        mask[inside] = shape.label
    image += rng.normal(0, NOISE_SIGMA, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 1), mask


class SyntheticShapes(Dataset):
    """``length`` seeded samples of `draw_shapes`; use different seeds for train and validation.

    Returns ``(image, mask)``: float32 (3, size, size) in [0, 1] and int64 (size, size).
    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, length: int, size: int = 64, seed: int = 0) -> None:
        if length < 1 or size < 1:
            raise ValueError(f"length and size must be >= 1, found {length} and {size}")
        self.length, self.size, self.seed = length, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        image, mask = draw_shapes(np.random.default_rng([self.seed, index]), self.size)
        return torch.from_numpy(image), torch.from_numpy(mask)
