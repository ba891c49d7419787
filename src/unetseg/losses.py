"""Segmentation losses: functions on tensors first, thin `nn.Module` wrappers after.

Shapes throughout: ``logits`` are float ``(N, C, H, W)``; ``target`` is int64 ``(N, H, W)`` of
class indices in ``[0, C)``, except pixels equal to ``ignore_index``. Losses are computed in
float32 even when the logits come from bf16/fp16 autocast: the Dice sums run over every pixel
of the batch, where half precision loses the small terms.

``ignore_index`` follows one rule in every loss here, in `unetseg.metrics` and in the data
loaders: the default is 255, and a pixel labelled ``ignore_index`` counts in no term of any
loss (neither the cross-entropy mean nor the Dice sums); ``None`` means every pixel counts.

Every loss, function or module, returns a scalar (0-dim) float32 tensor, so the modules are
drop-in criteria as in torch, smp and MONAI: ``criterion(logits, target).backward()``. The
combined modules keep their two parts, for logging, in ``last_parts`` as detached tensors on
the logits' device. Nothing here reads a value back to the host (no ``.item()``): that would
stall a GPU once per step; the training loop reads its running sums once per log interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSS_NAMES", "MEDIAN_WEIGHTINGS", "make_loss", "median_frequency_weights", "class_weights",
    "cross_entropy_loss", "dice_loss", "ce_dice_loss", "bce_dice_loss",
    "CrossEntropyLoss", "DiceLoss", "CEDiceLoss", "BCEDiceLoss",
]

LOSS_NAMES = ("ce_dice", "ce", "dice", "bce_dice")


# --- helpers ---------------------------------------------------------------------------------

def _valid_mask(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Boolean mask of the pixels that count: all of them when ``ignore_index`` is None."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def _soft_dice(probs: torch.Tensor, onehot: torch.Tensor, eps: float) -> torch.Tensor:
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


def _as_class_weights(class_weights: torch.Tensor | Sequence[float] | None) -> torch.Tensor | None:
    """Class weights as a float32 (C,) tensor (None stays None), for a module's buffer."""
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.ndim != 1:
        raise ValueError(f"class_weights must be one weight per class, shape (C,), "
                         f"found shape {tuple(weights.shape)}")
    return weights


# --class-weights names computed from the training pixels: the power of median frequency.
MEDIAN_WEIGHTINGS = {"median": 1.0, "sqrt-median": 0.5}


def median_frequency_weights(class_pixels: list[int], power: float = 1.0) -> list[float]:
    """Median-frequency balancing (Eigen and Fergus, 2015): ``(median(freq) / freq_c) ** power``
    with ``freq_c`` the class's share of all counted training pixels; 0 for an absent class.

    ``power`` 0.5 (``--class-weights sqrt-median``) softens the weights: on CamVid's training
    pixels the full ones run from 0.14 (road) to 15.4 (bicyclist), and the common classes,
    weighted least, lose pixels to the rare ones."""
    pixels = np.asarray(class_pixels, dtype=np.float64)
    freq = pixels / pixels.sum()
    median = np.median(freq[freq > 0])
    return [float((median / f) ** power) if f > 0 else 0.0 for f in freq]


# --- functions -------------------------------------------------------------------------------

def dice_loss(
    logits: torch.Tensor, target: torch.Tensor,
    ignore_index: int | None = 255, eps: float = 1e-6,
) -> torch.Tensor:
    """Multi-class soft Dice loss, ``1 - mean over classes of Dice_c``.

    ``Dice_c = (2 * sum(p_c * t_c) + eps) / (sum(p_c) + sum(t_c) + eps)``, where ``p`` is the
    softmax of ``logits``, ``t`` the one-hot target, and the sums run over the whole batch and
    every counted pixel (MONAI's ``batch=True``), so a class present anywhere in the batch is
    scored once, not once per image. The mean over classes is unweighted (macro).

    ``eps`` sits in numerator and denominator. For a class present in the batch it only guards
    the division. For a class absent from the batch's target, ``Dice_c = eps / (sum(p_c) + eps)``:
    1 (no loss) when the model puts next to no probability on it, falling towards 0 as it
    predicts it, so absent classes push their probability down. A batch whose pixels are all
    ignored gives every class ``eps / eps = 1`` and the loss 0, with zero gradient.

    Args:
        logits: float (N, C, H, W).
        target: int64 (N, H, W), values in [0, C) or ``ignore_index``.
        ignore_index: label of pixels that count nowhere (default 255); None if every pixel
            counts.
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
    """Pixel-wise cross-entropy averaged over the counted pixels.

    Weighted like `nn.CrossEntropyLoss`: with ``class_weights``, each pixel's term is scaled by
    its true class's weight and the mean is over the sum of those weights. Unlike
    ``F.cross_entropy(reduction="mean")``, a batch with every pixel ignored gives 0 and a zero
    gradient instead of 0/0 = NaN.

    Args:
        logits: float (N, C, H, W).
        target: int64 (N, H, W), values in [0, C) or ``ignore_index``.
        class_weights: optional float (C,), any dtype or device (for example
            `median_frequency_weights`); None weighs every class 1.
        ignore_index: label of pixels that count nowhere (default 255); None if every pixel
            counts.

    Returns:
        A scalar float32 tensor, >= 0.
    """
    _check_shapes(logits, target)
    ignore = -100 if ignore_index is None else ignore_index
    if class_weights is not None:
        # F.cross_entropy needs the weights on the logits' device and in the loss's dtype.
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


def _ce_dice_parts(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None,
    ignore_index: int | None, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy and Dice terms of `ce_dice_loss`, each a scalar tensor."""
    ce = cross_entropy_loss(logits, target, class_weights, ignore_index)
    dice = dice_loss(logits, target, ignore_index, eps)
    return ce, dice


def ce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
    class_weights: torch.Tensor | None = None, ignore_index: int | None = 255,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Cross-entropy plus ``dice_weight`` times the soft Dice loss: the default training loss.

    Cross-entropy is right per pixel and stable from the first step; Dice is measured per class
    over the batch, so small classes weigh as much as large ones. Together they equal MONAI's
    ``DiceCELoss(softmax=True, to_onehot_y=True, batch=True)`` with ``lambda_ce=1``,
    ``lambda_dice=dice_weight`` and ``smooth_nr = smooth_dr = eps``.

    Args:
        logits: float (N, C, H, W).
        target: int64 (N, H, W), values in [0, C) or ``ignore_index``.
        dice_weight: weight of the Dice term; 0 leaves the cross-entropy alone.
        class_weights: optional float (C,) weights for the cross-entropy only (for example
            `median_frequency_weights`); the Dice term is already balanced across classes.
        ignore_index: label of pixels counted in neither term (default 255); None if every
            pixel counts.
        eps: Dice smoothing, as in `dice_loss`.

    Returns:
        The scalar float32 loss. `CEDiceLoss` also keeps the two parts for logging.
    """
    ce, dice = _ce_dice_parts(logits, target, class_weights, ignore_index, eps)
    return ce + dice_weight * dice


def _bce_dice_parts(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float | torch.Tensor | None,
    ignore_index: int | None, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The binary cross-entropy and Dice terms of `bce_dice_loss`, each a scalar tensor."""
    found = tuple(logits.shape)                         # for the message, before squeezing
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim != 3 or logits.shape != target.shape:
        raise ValueError(
            f"expected logits (N, 1, H, W) and target (N, H, W) of the same N, H, W, "
            f"found logits {found} and target {tuple(target.shape)}"
        )
    logits = logits.float()                                          # (N, H, W)
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
    return bce, dice


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
    pos_weight: float | torch.Tensor | None = None,
    ignore_index: int | None = 255, eps: float = 1e-6,
) -> torch.Tensor:
    """Binary cross-entropy plus ``dice_weight`` times the foreground soft Dice loss, for one
    logit per pixel.

    With a single output channel the model predicts ``sigmoid(logit)`` = P(foreground). The
    Dice term is the foreground Dice over the whole batch,
    ``(2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)``; with no foreground anywhere it is
    ``eps / (sum(p) + eps)``, 1 (no loss) only if the model predicts next to none, as in
    `dice_loss`. The BCE is the mean over counted pixels; with every pixel ignored both terms
    are 0 with zero gradient.

    Args:
        logits: float (N, 1, H, W) or (N, H, W).
        target: int (N, H, W) with values 0 (background), 1 (foreground) or ``ignore_index``.
        dice_weight: weight of the Dice term.
        pos_weight: weight of foreground pixels in the BCE (``nn.BCEWithLogitsLoss``'s
            argument), for example ``n_background / n_foreground`` for a rare foreground.
        ignore_index: label of pixels counted in neither term (default 255); None if every
            pixel counts.
        eps: Dice smoothing, see above.

    Returns:
        The scalar float32 loss. `BCEDiceLoss` also keeps the two parts for logging.
    """
    bce, dice = _bce_dice_parts(logits, target, pos_weight, ignore_index, eps)
    return bce + dice_weight * dice


# --- modules ---------------------------------------------------------------------------------

class DiceLoss(nn.Module):
    """`dice_loss` as a module: ``forward(logits, target)`` returns the scalar loss."""

    def __init__(self, ignore_index: int | None = 255, eps: float = 1e-6) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, self.ignore_index, self.eps)


class CrossEntropyLoss(nn.Module):
    """`cross_entropy_loss` as a module: ``forward(logits, target)`` returns the scalar loss.

    Unlike `torch.nn.CrossEntropyLoss`, ignores 255 by default and gives 0, not NaN, for a
    batch with every pixel ignored. ``class_weights`` (a tensor or a list, stored as a float32
    buffer, so it follows ``.to(device)`` and is saved in the state dict) weigh each class's
    pixels; None weighs every class 1.
    """

    def __init__(
        self, class_weights: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", _as_class_weights(class_weights))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, target, self.class_weights, self.ignore_index)


class CEDiceLoss(nn.Module):
    """`ce_dice_loss` as a module: ``forward(logits, target)`` returns the scalar loss.

    ``class_weights`` (a tensor or a list, for the cross-entropy only) are a float32 buffer, so
    they follow ``.to(device)`` and are saved in the state dict.

    Attributes:
        last_parts: after each call, ``{"ce": ..., "dice": ...}``: the two terms of that call's
            loss (``loss = ce + dice_weight * dice``) as detached 0-dim float32 tensors on the
            logits' device, for logging without a host sync; empty before the first call.
    """

    def __init__(
        self, dice_weight: float = 1.0,
        class_weights: torch.Tensor | Sequence[float] | None = None,
        ignore_index: int | None = 255, eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.eps = eps
        self.register_buffer("class_weights", _as_class_weights(class_weights))
        self.last_parts: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce, dice = _ce_dice_parts(logits, target, self.class_weights, self.ignore_index, self.eps)
        self.last_parts = {"ce": ce.detach(), "dice": dice.detach()}
        return ce + self.dice_weight * dice


class BCEDiceLoss(nn.Module):
    """`bce_dice_loss` as a module: ``forward(logits, target)`` returns the scalar loss.

    ``pos_weight`` is stored as a float32 buffer (None stays None), so it follows
    ``.to(device)`` instead of being copied to the device on every call.

    Attributes:
        last_parts: after each call, ``{"bce": ..., "dice": ...}``: the two terms of that
            call's loss (``loss = bce + dice_weight * dice``) as detached 0-dim float32 tensors
            on the logits' device, for logging without a host sync; empty before the first call.
    """

    def __init__(
        self, dice_weight: float = 1.0, pos_weight: float | torch.Tensor | None = None,
        ignore_index: int | None = 255, eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.eps = eps
        self.register_buffer(
            "pos_weight",
            None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32),
        )
        self.last_parts: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce, dice = _bce_dice_parts(logits, target, self.pos_weight, self.ignore_index, self.eps)
        self.last_parts = {"bce": bce.detach(), "dice": dice.detach()}
        return bce + self.dice_weight * dice


# --- by name ---------------------------------------------------------------------------------

def make_loss(
    name: str, ignore_index: int | None = 255, dice_weight: float = 1.0,
    class_weights: torch.Tensor | Sequence[float] | None = None,
) -> nn.Module:
    """The loss module called ``name``, one of `LOSS_NAMES`, as training configures it.

    ``"ce_dice"`` is `CEDiceLoss`, ``"ce"`` `CrossEntropyLoss`, ``"dice"`` `DiceLoss` and
    ``"bce_dice"`` `BCEDiceLoss` (one output channel). ``dice_weight`` weighs the Dice term of
    the two combined losses and is unused by ``"ce"`` and ``"dice"``. ``class_weights`` weigh
    the cross-entropy, so only ``"ce"`` and ``"ce_dice"`` take them.

    Raises:
        ValueError: for an unknown name, or class weights with a loss without cross-entropy.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; found {name!r}")
    if class_weights is not None and name in ("dice", "bce_dice"):
        raise ValueError(f"class weights weigh the cross-entropy; loss {name!r} has none "
                         f"(use 'ce' or 'ce_dice')")
    if name == "ce_dice":
        return CEDiceLoss(dice_weight, class_weights, ignore_index)
    if name == "ce":
        return CrossEntropyLoss(class_weights, ignore_index)
    if name == "dice":
        return DiceLoss(ignore_index)
    return BCEDiceLoss(dice_weight, ignore_index=ignore_index)


def class_weights(spec: str | None, num_classes: int,
                  class_pixels: list[int] | None = None) -> torch.Tensor | None:
    """The cross-entropy weights ``--class-weights`` asks for: None, ``"median"``
    (`median_frequency_weights` of the training pixels per class), ``"sqrt-median"`` (their
    square roots) or ``"w0,w1,..."``."""
    if not spec:
        return None
    if isinstance(spec, str) and spec in MEDIAN_WEIGHTINGS:
        if class_pixels is None:
            raise ValueError(f"--class-weights {spec} needs a dataset with counted class "
                             f"pixels (a folder dataset)")
        weights = median_frequency_weights(class_pixels, power=MEDIAN_WEIGHTINGS[spec])
    else:
        weights = [float(w) for w in spec.split(",")]
        if len(weights) != num_classes:
            raise ValueError(f"--class-weights gives {len(weights)} weights for {num_classes} "
                             f"classes")
    return torch.tensor(weights, dtype=torch.float32)
