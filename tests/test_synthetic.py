"""Synthetic shapes: seeded, reproducible, the documented geometry at any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetseg.data.synthetic import (
    BinaryShapes,
    Shape,
    SyntheticShapes,
    draw_shapes,
    random_shapes,
)


def test_samples_are_reproducible_and_seeds_differ():
    a, b = SyntheticShapes(4, 64, seed=0), SyntheticShapes(4, 64, seed=0)
    for i in range(4):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    other = SyntheticShapes(4, 64, seed=1)
    assert not torch.equal(a[0][0], other[0][0])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_types_ranges_and_labels(size):
    image, mask = SyntheticShapes(1, size, seed=3)[0]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert mask.shape == (size, size) and mask.dtype == torch.int64
    assert image.min() >= 0 and image.max() <= 1
    assert set(mask.unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("size", [64, 128, 200])
def test_geometry_scales_with_size(size):
    """Centres >= 10 px (at 64) from the border, radii 4 to 12 px (at 64), 1 to 3 shapes."""
    scale = size / 64
    counts = set()
    for seed in range(200):
        shapes = random_shapes(np.random.default_rng(seed), size)
        counts.add(len(shapes))
        for shape in shapes:
            assert shape.label in (1, 2)
            assert 10 * scale <= min(shape.cy, shape.cx)
            assert max(shape.cy, shape.cx) <= size - 1 - 10 * scale
            assert 4 * scale <= shape.radius <= 12 * scale
    assert counts == {1, 2, 3}


def test_shape_pixels_are_a_disc_and_a_square():
    circle = Shape(1, cy=20.0, cx=30.0, radius=5.0, colour=(0, 0, 0)).pixels(64)
    rows, cols = np.nonzero(circle)
    assert circle.sum() == 81                 # lattice points with dy^2 + dx^2 <= 25
    assert rows.min() == 15 and rows.max() == 25 and cols.min() == 25 and cols.max() == 35
    square = Shape(2, cy=20.5, cx=30.0, radius=5.0, colour=(0, 0, 0)).pixels(64)
    rows, cols = np.nonzero(square)
    assert square.sum() == 10 * 11            # rows 16..25, cols 25..35
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 25, 25, 35)


def test_mask_is_the_shapes_drawn_in_order_and_image_takes_their_colours():
    rng_for_shapes, rng_for_sample = np.random.default_rng(11), np.random.default_rng(11)
    rng_for_shapes.uniform(0, 1, size=(3, 1, 1))  # the background colour comes first
    shapes = random_shapes(rng_for_shapes, 64)
    image, mask = draw_shapes(rng_for_sample, 64)
    expected = np.zeros((64, 64), dtype=np.int64)
    for shape in shapes:
        expected[shape.pixels(64)] = shape.label
    assert np.array_equal(mask, expected)
    last = shapes[-1].pixels(64)
    colour = np.median(image[:, last], axis=1)
    assert np.allclose(colour, np.clip(shapes[-1].colour, 0, 1), atol=0.02)


def test_noise_is_gaussian_with_sigma_0_02():
    residuals = []
    for image, mask in SyntheticShapes(40, 64, seed=7):
        background = image[:, mask == 0]
        colour = background.median(dim=1).values
        if ((colour > 0.15) & (colour < 0.85)).all():   # far from clipping
            residuals.append((background - colour[:, None]).flatten())
    sigma = torch.cat(residuals).std().item()
    assert 0.018 < sigma < 0.022


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="length and size must be >= 1, found 0 and 64"):
        SyntheticShapes(0, 64)
    with pytest.raises(IndexError, match="index 5 out of range for 5 samples"):
        SyntheticShapes(5, 64)[5]


@pytest.mark.parametrize("share", [0.05, 0.2])
def test_binary_shapes_cover_the_requested_foreground_share(share):
    data = BinaryShapes(200, 64, foreground=share, seed=3)
    shares = np.array([data.draw(i)[1].mean() for i in range(len(data))])
    assert abs(shares.mean() - share) < 0.1 * share          # within 10% on average
    assert set(np.unique(data.draw(0)[1])) <= {0, 1}
    assert data.class_names == ("background", "object")


def test_binary_shapes_are_reproducible_and_seeded():
    a, b = BinaryShapes(4, 32, 0.1, seed=1), BinaryShapes(4, 32, 0.1, seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1]) for i in range(4))
    assert not torch.equal(a[0][1], BinaryShapes(4, 32, 0.1, seed=2)[0][1])
    with pytest.raises(ValueError, match="foreground share must be in"):
        BinaryShapes(4, 32, 1.5)
