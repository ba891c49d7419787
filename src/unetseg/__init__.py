"""unetseg: semantic segmentation with a U-Net written from scratch."""

from .losses import BCEDiceLoss, CEDiceLoss, DiceLoss, bce_dice_loss, ce_dice_loss, dice_loss
from .metrics import BoundaryF1, ConfusionMatrix, Scores, boundary_f1
from .model import UNet, UNetConfig

__all__ = [
    "UNet", "UNetConfig",
    "dice_loss", "ce_dice_loss", "bce_dice_loss", "DiceLoss", "CEDiceLoss", "BCEDiceLoss",
    "ConfusionMatrix", "Scores", "boundary_f1", "BoundaryF1",
]
__version__ = "0.1.0"
