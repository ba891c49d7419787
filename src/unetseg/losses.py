"""Segmentation losses: functions on tensors first, thin `nn.Module` wrappers after.

Shapes throughout: ``logits`` are float ``(N, C, H, W)``; ``target`` is int64 ``(N, H, W)`` of
class indices in ``[0, C)``, except pixels equal to ``ignore_index``, which count in no term of
any loss (neither the cross-entropy mean nor the Dice sums). Losses are computed in float32
even when the logits come from bf16/fp16 autocast: the Dice sums run over every pixel of the
batch, where half precision loses the small terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSS_NAMES", "compute_loss", "cross_entropy_loss", "dice_loss", "ce_dice_loss", "bce_dice_loss",
    "DiceLoss", "CEDiceLoss", "BCEDiceLoss",
]


def _valid_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Boolean mask of the pixels that count: all of them unless ``ignore_index`` is set."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _soft_dice(
    probs: torch.Tensor, onehot: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-class soft Dice over batch and pixels: (N, C, H, W) x2 -> (C,)."""
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * intersection + eps) / (denominator + eps)


def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0] \
            or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W) of the same N, H, W, "
            f"found logits {tuple(logits.shape)} and target {tuple(target.shape)}"
        )


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor,
    ignore_index: int | None = None, eps: float = 1e-6,
) -> torch.Tensor:
    """Multi-class soft Dice loss, ``1 - mean over classes of Dice_c``.

    ``Dice_c = (2 * sum(p_c * t_c) + eps) / (sum(p_c) + sum(t_c) + eps)``, where ``p`` is the
    softmax of ``logits``, ``t`` the one-hot target, and the sums run over the whole batch and
    every pixel (MONAI's ``batch=True``), so a class present anywhere in the batch is scored
    once, not once per image. The mean over classes is unweighted (macro).

    ``eps`` sits in numerator and denominator. For a class present in the batch it only guards
    the division. For a class absent from the batch's target, ``Dice_c = eps / (sum(p_c) + eps)``:
    1 (no loss) when the model puts next to no probability on it, falling towards 0 as it
    predicts it, so absent classes push their probability down. A batch whose pixels are all
    ignored gives every class ``eps / eps = 1`` and the loss 0, with zero gradient.

    Args:
        logits: float (N, C, H, W).
        target: int64 (N, H, W), values in [0, C) or ``ignore_index``.
        ignore_index: label of pixels that count nowhere; None if every pixel counts.
        eps: smoothing added to numerator and denominator, see above.

    Returns:
        A scalar float32 tensor in [0, 1].
    """
    _check_shapes(logits, target)
    num_classes = logits.shape[1]
    valid = _valid_mask(target, ignore_index).unsqueeze(1)          # (N, 1, H, W)
    probs = logits.float().softmax(dim=1) * valid                   # (N, C, H, W)
    # Ignored pixels carry an arbitrary label; park them on class 0, then zero them out.
    labels = torch.where(valid.squeeze(1), target, torch.zeros_like(target))
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2) * valid
    return 1.0 - _soft_dice(probs, onehot.float(), eps).mean()


def cross_entropy_loss(
    logits: torch.Tensor, target: torch.Tensor,
    class_weights: torch.Tensor | None = None, ignore_index: int | None = 255,
) -> torch.Tensor:
    """Pixel-wise cross-entropy averaged over counted pixels (weighted like
    `nn.CrossEntropyLoss`: with ``class_weights``, the mean is over the weights' sum).

    Unlike ``F.cross_entropy(reduction="mean")``, a batch with every pixel ignored gives 0
    and a zero gradient instead of 0/0 = NaN.
    """
    ignore = -100 if ignore_index is None else ignore_index
    if class_weights is not None:
        # F.cross_entropy needs the weights in the logits' device and the loss's dtype.
        class_weights = class_weights.to(logits.device, torch.float32)
    per_pixel = F.cross_entropy(
        logits.float(), target, weight=class_weights, ignore_index=ignore, reduction="none"
    )                                                                # (N, H, W), 0 where ignored
    valid = target != ignore
    if class_weights is None:
        denominator = valid.sum()
    else:
        labels = torch.where(valid, target, torch.zeros_like(target))
        denominator = (class_weights[labels] * valid).sum()
    return per_pixel.sum() / denominator.clamp_min(1e-12)


def ce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, lam: float = 1.0,
    class_weights: torch.Tensor | None = None, ignore_index: int | None = 255,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy plus ``lam`` times the soft Dice loss: the default training loss.

    Cross-entropy is right per pixel and stable from the first step; Dice is measured per class
    over the batch, so small classes weigh as much as large ones. Together they equal MONAI's
    ``DiceCELoss(softmax=True, to_onehot_y=True, batch=True)`` with ``lambda_ce=1``,
    ``lambda_dice=lam`` (and ``smooth_nr = smooth_dr = 1e-6``).

    Args:
        logits: float (N, C, H, W).
        target: int64 (N, H, W), values in [0, C) or ``ignore_index``.
        lam: weight of the Dice term.
        class_weights: optional float (C,) weights for the cross-entropy only (for example
            median-frequency weights); the Dice term is already balanced across classes.
        ignore_index: label of pixels counted in neither term (default 255); None for none.

    Returns:
        ``(loss, {"ce": float, "dice": float})``: the scalar loss to back-propagate and its two
        parts as plain numbers for logging.
    """
    _check_shapes(logits, target)
    ce = cross_entropy_loss(logits, target, class_weights, ignore_index)
    dice = dice_loss(logits, target, ignore_index=ignore_index)
    return ce + lam * dice, {"ce": ce.item(), "dice": dice.item()}


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, lam: float = 1.0,
    pos_weight: float | torch.Tensor | None = None,
    ignore_index: int | None = 255, eps: float = 1e-6,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Binary cross-entropy plus ``lam`` times the foreground soft Dice loss, for one logit.

    With a single output channel the model predicts ``sigmoid(logit)`` = P(foreground). The
    Dice term is the foreground Dice over the whole batch,
    ``(2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)``; with no foreground anywhere it is 1
    only if the model predicts none, as in `dice_loss`.

    Args:
        logits: float (N, 1, H, W) or (N, H, W).
        target: (N, H, W) with values 0 (background), 1 (foreground) or ``ignore_index``.
        lam: weight of the Dice term.
        pos_weight: weight of foreground pixels in the BCE (``nn.BCEWithLogitsLoss``'s
            argument), for example ``n_background / n_foreground`` for a rare foreground.
        ignore_index: label of pixels counted in neither term (default 255); None for none.
        eps: Dice smoothing, as in `dice_loss`.

    Returns:
        ``(loss, {"bce": float, "dice": float})``.
    """
    found = tuple(logits.shape)                         # for the message, before squeezing
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.shape != target.shape:
        raise ValueError(
            f"expected logits (N, 1, H, W) and target (N, H, W) of the same N, H, W, "
            f"found logits {found} and target {tuple(target.shape)}"
        )
    logits = logits.float()
    valid = _valid_mask(target, ignore_index).float()
    truth = torch.where(valid.bool(), target, torch.zeros_like(target)).float()
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per_pixel = F.binary_cross_entropy_with_logits(
        logits, truth, pos_weight=pos_weight, reduction="none"
    )
    bce = (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)
    probs = logits.sigmoid() * valid
    intersection = (probs * truth).sum()
    dice = 1.0 - (2.0 * intersection + eps) / (probs.sum() + truth.sum() + eps)
    return bce + lam * dice, {"bce": bce.item(), "dice": dice.item()}


LOSS_NAMES = ("ce_dice", "ce", "dice", "bce_dice")


def compute_loss(
    name: str, logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = 255,
    dice_weight: float = 1.0, class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scalar loss called ``name`` (one of `LOSS_NAMES`), as training configures it."""
    if name == "ce_dice":
        return ce_dice_loss(logits, target, dice_weight, class_weights, ignore_index)[0]
    if name == "ce":
        return cross_entropy_loss(logits, target, class_weights, ignore_index)
    if name == "dice":
        return dice_loss(logits, target, ignore_index=ignore_index)
    if name == "bce_dice":
        return bce_dice_loss(logits, target, dice_weight, ignore_index=ignore_index)[0]
    raise ValueError(f"loss must be one of {LOSS_NAMES}, found {name!r}")


class DiceLoss(nn.Module):
    """`dice_loss` as a module."""

    def __init__(self, ignore_index: int | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, self.ignore_index, self.eps)


class CEDiceLoss(nn.Module):
    """`ce_dice_loss` as a module; class weights are a buffer, so they follow ``.to(device)``."""

    def __init__(
        self, lam: float = 1.0, class_weights: torch.Tensor | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.lam = lam
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return ce_dice_loss(logits, target, self.lam, self.class_weights, self.ignore_index)


class BCEDiceLoss(nn.Module):
    """`bce_dice_loss` as a module."""

    def __init__(
        self, lam: float = 1.0, pos_weight: float | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.lam = lam
        self.pos_weight = pos_weight
        self.ignore_index = ignore_index

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return bce_dice_loss(logits, target, self.lam, self.pos_weight, self.ignore_index)
