"""From decoded arrays to the model's tensors, and the normalisation statistics behind them."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ChannelStats", "to_tensors", "label_type"]


def label_type(largest: int) -> type:
    """The smallest type cv2 resamples that holds labels up to ``largest`` (the ignore label
    included): uint8, else uint16."""
    return np.uint8 if largest < 256 else np.uint16


def to_tensors(
    image: np.ndarray, mask: np.ndarray,
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, C) float image and (H, W) mask -> float32 (C, H, W) normalised, int64 (H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
        tensor = (tensor - mean_t) / std_t
    return tensor, torch.from_numpy(np.ascontiguousarray(mask)).long()


class ChannelStats:
    """Running per-channel mean and standard deviation over many images (float64 sums)."""

    def __init__(self) -> None:
        self.total = self.squares = None
        self.count = 0

    def add(self, image: np.ndarray) -> None:
        """Fold in an (H, W, C) image."""
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
        if self.total is None:
            self.total = np.zeros(pixels.shape[1])
            self.squares = np.zeros(pixels.shape[1])
        self.total += pixels.sum(0)
        self.squares += (pixels**2).sum(0)
        self.count += len(pixels)

    def merge(self, other: ChannelStats) -> None:
        """Fold in another image set's sums (the datasets scan each image once, on its own)."""
        if other.total is None:
            return
        if self.total is None:
            self.total, self.squares = np.zeros_like(other.total), np.zeros_like(other.squares)
        self.total += other.total
        self.squares += other.squares
        self.count += other.count

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean = self.total / self.count
        variance = np.maximum(self.squares / self.count - mean**2, 0.0)
        # A constant channel would divide by zero; leave its scale alone instead.
        std = np.where(variance > 1e-12, np.sqrt(variance), 1.0)
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
