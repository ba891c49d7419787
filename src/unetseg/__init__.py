"""unetseg: semantic segmentation with a U-Net written from scratch."""

from .checkpoint import load_model
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .evaluation import evaluate, evaluate_checkpoint
from .losses import BCEDiceLoss, CEDiceLoss, DiceLoss, bce_dice_loss, ce_dice_loss, dice_loss
from .metrics import BoundaryF1, ConfusionMatrix, Scores, boundary_f1
from .model import UNet, UNetConfig
from .train import fit

__all__ = [
    "UNet", "UNetConfig",
    "dice_loss", "ce_dice_loss", "bce_dice_loss", "DiceLoss", "CEDiceLoss", "BCEDiceLoss",
    "ConfusionMatrix", "Scores", "boundary_f1", "BoundaryF1",
    "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "fit",
    "evaluate", "evaluate_checkpoint", "load_model",
]
__version__ = "0.1.0"
