"""What the rest of the toolkit relies on in a dataset, whatever its source.

Training, evaluation, the inspector and the report ask a dataset only for these, so a new
source (a database, a cloud bucket) needs nothing else to work everywhere.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["SegmentationDataset"]


@runtime_checkable
class SegmentationDataset(Protocol):
    """Samples ``(image float32 (C, H, W), mask int64 (H, W))``, normalised by ``mean`` and
    ``std`` when they are set, with what a report needs to show them."""

    class_names: tuple[str, ...]
    in_channels: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    @property
    def sizes(self) -> set[tuple[int, int]]:
        """The distinct (H, W) of the images: one size lets samples share a batch."""
        ...

    def raw(self, index: int) -> np.ndarray:
        """Image ``index`` before normalisation: float32 (H, W, C) in [0, 1]."""
        ...

    def name(self, index: int) -> str:
        """A name for image ``index`` in reports: its file name, or ``sample i``."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on the epoch; a resumed run redraws the same ones."""
        ...
