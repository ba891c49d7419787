"""Datasets: each yields (image float32 (C, H, W), mask int64 (H, W)) pairs."""

from .synthetic import SyntheticShapes

__all__ = ["SyntheticShapes"]
