"""unetseg: semantic segmentation with a U-Net written from scratch.

The public API, one import away::

    from unetseg import UNet, CEDiceLoss, ConfusionMatrix, fit, predict, load_segmenter

Names are loaded on first use (PEP 562), so ``import unetseg`` costs next to nothing and
``unetseg --help`` starts at once; torch loads with the first name that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "UNet": "model", "UNetConfig": "model", "ModelConfig": "config",
    "dice_loss": "losses", "cross_entropy_loss": "losses", "ce_dice_loss": "losses",
    "bce_dice_loss": "losses", "DiceLoss": "losses", "CrossEntropyLoss": "losses",
    "CEDiceLoss": "losses", "BCEDiceLoss": "losses", "make_loss": "losses",
    "ConfusionMatrix": "metrics", "Scores": "metrics", "boundary_f1": "metrics",
    "BoundaryF1": "metrics",
    "RunConfig": "config", "DataConfig": "config", "TrainConfig": "config",
    "fit": "train", "evaluate": "evaluation", "load_model": "checkpoint",
    "read_metadata": "checkpoint",
    "predict": "infer", "load_segmenter": "infer", "Segmenter": "infer",
    "Inspector": "inspector", "export_onnx": "export",
    "score_split": "jobs.scoring", "evaluate_checkpoint": "jobs.evaluate",
    "optimize_for_training": "fastpath", "optimize_for_inference": "fastpath",
    "Accelerated": "runtime",
    "CalibrationBins": "calibration", "calibrate_checkpoint": "jobs.calibrate",
    "suggest_images": "jobs.suggest",
}
__all__ = [
    "UNet", "UNetConfig", "ModelConfig",
    "dice_loss", "cross_entropy_loss", "ce_dice_loss", "bce_dice_loss", "DiceLoss",
    "CrossEntropyLoss", "CEDiceLoss", "BCEDiceLoss", "make_loss",
    "ConfusionMatrix", "Scores", "boundary_f1", "BoundaryF1",
    "RunConfig", "DataConfig", "TrainConfig",
    "fit", "evaluate", "load_model", "read_metadata", "predict", "load_segmenter", "Segmenter",
    "Inspector",
    "export_onnx", "score_split", "evaluate_checkpoint",
    "optimize_for_training", "optimize_for_inference", "Accelerated",
    "CalibrationBins", "calibrate_checkpoint", "suggest_images",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unetseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value                  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:                            # what type checkers and IDEs see
    from .calibration import CalibrationBins
    from .checkpoint import load_model, read_metadata
    from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from .evaluation import evaluate
    from .export import export_onnx
    from .fastpath import optimize_for_inference, optimize_for_training
    from .infer import Segmenter, load_segmenter, predict
    from .inspector import Inspector
    from .jobs.calibrate import calibrate_checkpoint
    from .jobs.evaluate import evaluate_checkpoint
    from .jobs.scoring import score_split
    from .jobs.suggest import suggest_images
    from .losses import (
        BCEDiceLoss,
        CEDiceLoss,
        CrossEntropyLoss,
        DiceLoss,
        bce_dice_loss,
        ce_dice_loss,
        cross_entropy_loss,
        dice_loss,
        make_loss,
    )
    from .metrics import BoundaryF1, ConfusionMatrix, Scores, boundary_f1
    from .model import UNet, UNetConfig
    from .runtime import Accelerated
    from .train import fit
