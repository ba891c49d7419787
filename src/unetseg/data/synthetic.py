"""Synthetic shapes: the built-in dataset that needs no download.

Each image has a uniform random background colour and 1 to 3 shapes of random colour:
class 1 is a filled circle, class 2 a filled square (class 0 is background). At 64 x 64 a
shape's centre lies at least 10 px from the border and its radius (half the square's side) is
4 to 12 px; both scale with the image size. Gaussian noise of sigma 0.02 is added and values
are clipped to [0, 1]. Later shapes are drawn over earlier ones.

`BinaryShapes` is the two-class variant (background, object) whose objects cover a requested
share of each image, for example 5%, for studying losses under foreground/background imbalance.

Everything is drawn from one `numpy.random.Generator` seeded per sample, so sample ``i`` of a
given seed and size is the same on every machine and in every DataLoader worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .tensors import ChannelStats, to_tensors

__all__ = ["CLASS_NAMES", "BINARY_CLASS_NAMES", "Shape", "random_shapes", "draw_shapes",
           "draw_binary_shapes", "SyntheticShapes", "BinaryShapes"]

CLASS_NAMES = ("background", "circle", "square")
BINARY_CLASS_NAMES = ("background", "object")

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


def _paint(
    rng: np.random.Generator, size: int, background: np.ndarray, shapes: list[Shape],
    binary: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Background colour, shapes in order, then noise: image (3, size, size), mask (size, size).
    With ``binary``, every shape is labelled 1."""
    image = np.empty((3, size, size), dtype=np.float32)
    image[:] = background.astype(np.float32)[:, None, None]
    mask = np.zeros((size, size), dtype=np.int64)
    for shape in shapes:
        inside = shape.pixels(size)
        image[:, inside] = np.asarray(shape.colour, dtype=np.float32)[:, None]
        mask[inside] = 1 if binary else shape.label
    image += rng.normal(0, NOISE_SIGMA, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 1), mask


def draw_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One sample: image float32 (3, size, size) in [0, 1] and mask int64 (size, size) in
    {0, 1, 2}."""
    background = rng.uniform(0, 1, size=3)
    return _paint(rng, size, background, random_shapes(rng, size))


def random_binary_shapes(rng: np.random.Generator, size: int, foreground: float) -> list[Shape]:
    """1 to 3 circles or squares whose areas add up to ``foreground`` of the image.

    The total area is split at random between the shapes; overlaps make the union a little
    smaller, so the realised share is at most the requested one (see `BinaryShapes`).
    """
    count = int(rng.integers(1, 4))
    areas = rng.dirichlet(np.ones(count)) * foreground * size * size
    shapes = []
    for area in areas:
        label = int(rng.integers(1, 3))
        # Circle: area = pi r^2; square of half-side r: area = (2r)^2.
        radius = max(0.5, float(np.sqrt(area / np.pi) if label == 1 else np.sqrt(area) / 2))
        low, high = min(radius, (size - 1) / 2), max(size - 1 - radius, (size - 1) / 2)
        cy, cx = rng.uniform(low, high, size=2)
        colour = tuple(rng.uniform(0, 1, size=3).tolist())
        shapes.append(Shape(label, float(cy), float(cx), radius, colour))
    return shapes


def draw_binary_shapes(
    rng: np.random.Generator, size: int, foreground: float
) -> tuple[np.ndarray, np.ndarray]:
    """One binary sample: image (3, size, size) in [0, 1], mask (size, size) in {0, 1}."""
    background = rng.uniform(0, 1, size=3)
    shapes = random_binary_shapes(rng, size, foreground)
    return _paint(rng, size, background, shapes, binary=True)


class SyntheticShapes(Dataset):
    """``length`` seeded samples of `draw_shapes`; use different seeds for train and validation.

    Returns ``(image, mask)``: float32 (3, size, size), in [0, 1] or normalised by ``mean`` and
    ``std`` when given, and int64 (size, size).
    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    in_channels = 3

    def __init__(
        self, length: int, size: int = 64, seed: int = 0,
        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
    ) -> None:
        if length < 1 or size < 1:
            raise ValueError(f"length and size must be >= 1, found {length} and {size}")
        self.length, self.size, self.seed = length, size, seed
        self.mean, self.std = mean, std

    def set_epoch(self, epoch: int) -> None:
        """Samples are fixed per index; nothing changes between epochs."""

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as arrays: image (3, size, size) in [0, 1], mask (size, size)."""
        return draw_shapes(np.random.default_rng([self.seed, index]), self.size)

    @property
    def sizes(self) -> set[tuple[int, int]]:
        return {(self.size, self.size)}

    def raw(self, index: int) -> np.ndarray:
        """Image ``index`` before normalisation: float32 (size, size, 3) in [0, 1]."""
        return self.draw(index)[0].transpose(1, 2, 0)

    def name(self, index: int) -> str:
        return f"sample {index}"

    def channel_stats(self, samples: int = 256) -> ChannelStats:
        """Normalisation statistics from the first ``samples`` images."""
        stats = ChannelStats()
        for index in range(min(samples, self.length)):
            image, _ = self.draw(index)
            stats.add(image.transpose(1, 2, 0))
        return stats

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        image, mask = self.draw(index)
        return to_tensors(image.transpose(1, 2, 0), mask, self.mean, self.std)


class BinaryShapes(SyntheticShapes):
    """Two classes, background and object, with objects covering about ``foreground`` of each
    image (0.05 = 5%). Per image the share varies a little (overlapping shapes cover less,
    pixel rounding a little more); at 64 px and 5% the mean over 200 images is 4.96%.

    Same seeding and output as `SyntheticShapes`; class 1 is any circle or square.
    """

    num_classes = len(BINARY_CLASS_NAMES)
    class_names = BINARY_CLASS_NAMES

    def __init__(
        self, length: int, size: int = 64, foreground: float = 0.05, seed: int = 0,
        mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
    ) -> None:
        if not 0.0 < foreground < 1.0:
            raise ValueError(f"foreground share must be in (0, 1), found {foreground}")
        super().__init__(length, size, seed, mean, std)
        self.foreground = foreground

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        return draw_binary_shapes(rng, self.size, self.foreground)
