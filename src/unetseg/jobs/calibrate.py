"""The job behind ``unetseg calibrate``: fit a checkpoint's temperature after the fact.

Training fits it when a run ends (`unetseg.train`); a checkpoint from before calibration, or
one whose validation data changed, gets it here, in the same way: LBFGS on the negative
log-likelihood of a uniform sample of the run's validation pixels (`unetseg.calibration`), read
as the run read them. The temperature is recorded in the checkpoint's metadata under
``calibration``; every tensor is written back unchanged, into ``out`` or, by default, the
checkpoint itself (atomically: a crash leaves the old file whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..calibration import TemperatureFit, fit_sample, sample_logits
from ..checkpoint import add_metadata
from ..runtime import Accelerated
from .scoring import load_split

__all__ = ["calibrate_checkpoint"]


def calibrate_checkpoint(checkpoint: str | Path, out: str | Path | None = None,
                         data: dict[str, Any] | None = None,
                         device: str | None = None) -> TemperatureFit:
    """Fit ``checkpoint``'s temperature on its run's validation split (or that of the data
    ``data`` overrides) and record it in ``out`` (default: the checkpoint)."""
    loaded = load_split(checkpoint, "val", data, device)
    model = Accelerated(loaded.model, loaded.runtime).eval()
    fitted = fit_sample(sample_logits(model, loaded.loader(), loaded.ignore_index),
                        len(loaded.class_names))
    add_metadata(checkpoint, out or checkpoint, {"calibration": fitted.to_dict()})
    return fitted
