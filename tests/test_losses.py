"""Losses against independent oracles: MONAI's Dice/DiceCE losses and plain torch cross-entropy.

Our Dice uses ``eps = 1e-6`` in numerator and denominator and sums over the whole batch, which is
MONAI's ``batch=True, smooth_nr=smooth_dr=1e-6``. Ignored pixels (label 255) count in no term;
MONAI's own ignore handling is only trusted where checked below, otherwise the oracle drops the
ignored pixels by gathering the valid ones.

Every loss returns a scalar tensor; the combined modules' parts are read from ``last_parts``.
"""

from __future__ import annotations

import inspect
import re

import monai.losses
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from unetseg import losses
from unetseg.losses import (
    LOSS_NAMES,
    BCEDiceLoss,
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    bce_dice_loss,
    ce_dice_loss,
    class_weights,
    cross_entropy_loss,
    dice_loss,
    make_loss,
    median_frequency_weights,
)

IGNORE = 255
SMOOTH = {"smooth_nr": 1e-6, "smooth_dr": 1e-6}
SHAPES = [(2, 3, 8, 8), (4, 5, 17, 9), (1, 2, 1, 1), (3, 11, 32, 24)]


# --- inputs ------------------------------------------------------------------------------------

def random_case(
    shape: tuple[int, int, int, int], seed: int = 0, absent: str = "none", scale: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits (N, C, H, W) and int64 target (N, H, W).

    ``absent``: "none" leaves the labels uniform; "absent" removes the last class from the
    target; "unpredicted" also pushes its logits down by 20, so its Dice is ``eps / (tiny + eps)``
    and depends on ``eps`` (the case where the smoothing constants matter).
    """
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(shape, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    if absent != "none":
        target = torch.where(target == c - 1, torch.zeros_like(target), target)
    if absent == "unpredicted":
        logits[:, c - 1] -= 20.0
    return logits, target


def with_every_class(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The target with pixel i of the flattened batch set to class i, so no class is absent."""
    target = target.clone()
    target.view(-1)[:num_classes] = torch.arange(num_classes)
    return target


def with_ignored(target: torch.Tensor, fraction: float = 0.3, seed: int = 1) -> torch.Tensor:
    """The target with a random ``fraction`` of its pixels set to ``IGNORE``."""
    g = torch.Generator().manual_seed(seed)
    drop = torch.rand(target.shape, generator=g) < fraction
    return torch.where(drop, torch.full_like(target, IGNORE), target)


def valid_pixels(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Only the counted pixels, as one image of P x 1 pixels: logits (1, C, P, 1), target
    (1, 1, P, 1).

    ``logits`` may also be single-channel (N, H, W), which gives (1, 1, P, 1).
    """
    if logits.ndim == 3:
        logits = logits.unsqueeze(1)
    valid = target != ignore_index                                     # (N, H, W)
    kept = logits.permute(1, 0, 2, 3)[:, valid]                        # (C, P)
    return kept[None, :, :, None], target[valid][None, None, :, None]


# --- oracles -----------------------------------------------------------------------------------

def monai_dice(logits: torch.Tensor, target: torch.Tensor, **smooth: float) -> torch.Tensor:
    """MONAI's batch soft Dice of softmax(logits) against labels (N, H, W) or (N, 1, H, W)."""
    if target.ndim == 3:
        target = target[:, None]
    loss = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True, **(smooth or SMOOTH))
    return loss(logits, target)


def monai_binary_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MONAI's batch soft Dice of sigmoid(logits) (N, 1, H, W) against float target (N, 1, H, W)."""
    return monai.losses.DiceLoss(sigmoid=True, batch=True, **SMOOTH)(logits, target)


def close(found: torch.Tensor | float, expected: torch.Tensor | float, tol: float = 1e-5) -> bool:
    return abs(float(found) - float(expected)) <= tol


# --- 1. dice_loss against MONAI ----------------------------------------------------------------

@pytest.mark.parametrize("absent", ["none", "absent", "unpredicted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dice_loss_matches_monai(shape, absent):
    """Equal to MONAI DiceLoss(batch=True, smooth 1e-6), with and without absent classes."""
    logits, target = random_case(shape, seed=sum(shape), absent=absent)
    found = dice_loss(logits, target)
    assert found.shape == () and found.dtype == torch.float32
    assert close(found, monai_dice(logits, target))


def test_dice_loss_gradient_matches_monai():
    """The gradients agree too, including on an absent, unpredicted class."""
    logits, target = random_case((2, 4, 9, 7), seed=5, absent="unpredicted")
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    dice_loss(ours, target).backward()
    monai_dice(theirs, target).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (4, 5, 17, 9), (3, 11, 32, 24)], ids=str)
def test_dice_loss_matches_monai_default_smoothing_when_every_class_is_present(shape):
    """With every class present, eps only guards a division whose denominator is >= 1, so
    our 1e-6 and MONAI's default 1e-5 agree to 1e-5: the constant matters for absent classes only.
    """
    logits, target = random_case(shape, seed=11)
    target = with_every_class(target, shape[1])
    default = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True)
    assert close(dice_loss(logits, target), default(logits, target[:, None]))


def test_smoothing_constant_decides_the_dice_of_an_absent_class():
    """For a class absent from the target and hardly predicted, Dice_c = eps / (sum p_c + eps),
    so MONAI's default 1e-5 and our 1e-6 give visibly different losses; ``eps=1e-5`` matches it.
    """
    logits, target = random_case((2, 3, 8, 8), seed=2, absent="unpredicted")
    default = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True)(
        logits, target[:, None])
    assert abs(float(dice_loss(logits, target)) - float(default)) > 0.01
    assert close(dice_loss(logits, target, eps=1e-5), default)


# --- 2. ce_dice_loss against MONAI DiceCELoss --------------------------------------------------

@pytest.mark.parametrize("dice_weight", [1.0, 0.5])
@pytest.mark.parametrize("absent", ["none", "unpredicted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ce_dice_loss_matches_monai_dice_ce(shape, absent, dice_weight):
    """CE + dice_weight * Dice equals MONAI DiceCELoss(lambda_ce=1, lambda_dice=dice_weight), as
    a function and as a module; the module's logged parts equal torch's cross-entropy and
    MONAI's Dice."""
    logits, target = random_case(shape, seed=3 + sum(shape), absent=absent)
    oracle = monai.losses.DiceCELoss(
        softmax=True, to_onehot_y=True, batch=True, lambda_dice=dice_weight, lambda_ce=1.0,
        **SMOOTH,
    )
    expected = oracle(logits, target[:, None])
    found = ce_dice_loss(logits, target, dice_weight=dice_weight, ignore_index=None)
    assert close(found, expected)
    criterion = CEDiceLoss(dice_weight=dice_weight, ignore_index=None)
    assert close(criterion(logits, target), expected)
    assert close(criterion.last_parts["ce"], F.cross_entropy(logits, target))
    assert close(criterion.last_parts["dice"], monai_dice(logits, target))


def test_ce_dice_loss_default_ignore_index_changes_nothing_without_ignored_pixels():
    """ignore_index=255 (the default) and None agree on a target without 255."""
    logits, target = random_case((2, 4, 8, 8), seed=4)
    oracle = monai.losses.DiceCELoss(softmax=True, to_onehot_y=True, batch=True, **SMOOTH)
    assert close(ce_dice_loss(logits, target), oracle(logits, target[:, None]))


# --- 3. ignore_index ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (4, 5, 17, 9), (3, 11, 32, 24)], ids=str)
def test_dice_loss_ignore_index_matches_dice_on_valid_pixels(shape):
    """Ignored pixels count in neither the probability nor the target sums.

    Two oracles: MONAI DiceLoss on the gathered valid pixels, and MONAI MaskedDiceLoss fed a
    one-hot target. MaskedDiceLoss applies the softmax first and then multiplies input and target
    by the mask, which is what we need, but only with a one-hot target: with ``to_onehot_y=True``
    it masks the *labels* to 0 before one-hot encoding, so ignored pixels count as class 0.
    """
    logits, target = random_case(shape, seed=6 + sum(shape))
    target = with_ignored(target)
    found = dice_loss(logits, target, ignore_index=IGNORE)

    assert close(found, monai_dice(*valid_pixels(logits, target)))

    valid = target != IGNORE
    onehot = F.one_hot(torch.where(valid, target, 0), shape[1]).permute(0, 3, 1, 2).float()
    masked = monai.losses.MaskedDiceLoss(softmax=True, batch=True, **SMOOTH)
    assert close(found, masked(logits, onehot, mask=valid[:, None].float()))


def test_ce_dice_loss_ignore_index_with_class_weights():
    """CE is nn.CrossEntropyLoss(weight, ignore_index) (mean over the weights' sum); Dice is
    computed on the valid pixels only and is not weighted."""
    logits, target = random_case((3, 4, 12, 10), seed=7, absent="absent")
    target = with_ignored(target, fraction=0.4)
    weights = torch.tensor([0.2, 1.0, 3.0, 0.7])
    ce = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)(logits, target)
    dice = monai_dice(*valid_pixels(logits, target))
    loss = ce_dice_loss(logits, target, dice_weight=0.7, class_weights=weights, ignore_index=IGNORE)
    assert close(loss, ce + 0.7 * dice)
    assert close(cross_entropy_loss(logits, target, weights, ignore_index=IGNORE), ce)
    criterion = CEDiceLoss(dice_weight=0.7, class_weights=weights, ignore_index=IGNORE)
    assert close(criterion(logits, target), ce + 0.7 * dice)
    assert close(criterion.last_parts["ce"], ce) and close(criterion.last_parts["dice"], dice)


def test_ce_accepts_float64_class_weights():
    """Weights computed with numpy (median frequency) arrive as float64; the loss runs in float32
    whatever the weights' dtype, and equals torch's CE with the same weights."""
    logits, target = random_case((2, 3, 8, 8), seed=8)
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    expected = nn.CrossEntropyLoss(weight=weights.float())(logits, target)
    found = cross_entropy_loss(logits, target, class_weights=weights)
    assert found.dtype == torch.float32 and close(found, expected)
    criterion = CEDiceLoss(class_weights=weights)
    criterion(logits, target)
    assert close(criterion.last_parts["ce"], expected)
    assert close(CrossEntropyLoss(class_weights=weights)(logits, target), expected)


# --- 4. edge cases -----------------------------------------------------------------------------

def finite_loss_and_grad(fn, logits: torch.Tensor,
                         target: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Loss value and d loss / d logits; both must be finite."""
    logits = logits.clone().requires_grad_()
    loss = fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    return float(loss.detach()), logits.grad


@pytest.mark.parametrize("fn", [dice_loss, ce_dice_loss], ids=["dice", "ce_dice"])
def test_empty_classes_give_finite_loss_and_gradient(fn):
    """Only class 0 present among 4: finite loss and gradient."""
    logits, _ = random_case((2, 4, 6, 6), seed=9)
    finite_loss_and_grad(fn, logits, torch.zeros(2, 6, 6, dtype=torch.long))


def test_all_ignored_batch_gives_zero_loss_and_zero_gradient():
    """No counted pixel: CE 0 (not 0/0), Dice 0 (every class eps/eps = 1), zero gradient."""
    logits, _ = random_case((2, 3, 5, 5), seed=10)
    target = torch.full((2, 5, 5), IGNORE)
    criterion = CEDiceLoss()
    assert float(criterion(logits, target)) == 0.0
    assert {name: float(part) for name, part in criterion.last_parts.items()} \
        == {"ce": 0.0, "dice": 0.0}
    for fn in (ce_dice_loss, dice_loss, cross_entropy_loss, criterion):
        value, grad = finite_loss_and_grad(fn, logits, target)
        assert value == 0.0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("present", [(0, 1, 2, 3), (0, 2), (3,)], ids=str)
def test_perfect_logits_give_near_zero_ce_dice(present):
    """One-hot * 100 logits: loss < 1e-3, also when classes are absent from the batch."""
    g = torch.Generator().manual_seed(12)
    choice = torch.randint(0, len(present), (2, 8, 8), generator=g)
    target = torch.tensor(present)[choice]
    logits = 100.0 * F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    assert float(ce_dice_loss(logits, target)) < 1e-3


# --- 5. bce_dice_loss --------------------------------------------------------------------------

def binary_case(
    shape: tuple[int, int, int], seed: int = 0, foreground: float = 0.3, shift: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, 1, H, W), moved by ``shift``, and a 0/1 int64 target (N, H, W) with about
    ``foreground`` of its pixels 1."""
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn((shape[0], 1, *shape[1:]), generator=g) + shift
    target = (torch.rand(shape, generator=g) < foreground).long()
    return logits, target


@pytest.mark.parametrize("foreground,shift", [(0.3, 0.0), (0.0, 0.0), (0.0, -20.0)],
                         ids=["some", "none", "none-unpredicted"])
@pytest.mark.parametrize("dice_weight", [1.0, 0.5])
@pytest.mark.parametrize("shape", [(2, 8, 8), (4, 17, 9), (1, 1, 1), (3, 32, 24)], ids=str)
def test_bce_dice_loss_matches_monai_dice_ce(shape, dice_weight, foreground, shift):
    """Equal to MONAI DiceCELoss(sigmoid=True, batch=True, smooth 1e-6) on one channel, which
    uses BCEWithLogitsLoss for a 1-channel input, as a function and as a module; the module's
    parts equal BCEWithLogitsLoss and MONAI Dice. "none-unpredicted" (no foreground, logits
    ~ -20) is where the Dice is ``eps / (sum p + eps)``."""
    logits, target = binary_case(shape, seed=sum(shape), foreground=foreground, shift=shift)
    truth = target[:, None].float()                                    # (N, 1, H, W)
    oracle = monai.losses.DiceCELoss(sigmoid=True, batch=True, lambda_dice=dice_weight, **SMOOTH)
    expected = oracle(logits, truth)
    found = bce_dice_loss(logits, target, dice_weight=dice_weight, ignore_index=None)
    assert close(found, expected)
    criterion = BCEDiceLoss(dice_weight=dice_weight, ignore_index=None)
    assert close(criterion(logits, target), expected)
    assert close(criterion.last_parts["bce"], nn.BCEWithLogitsLoss()(logits, truth))
    assert close(criterion.last_parts["dice"], monai_binary_dice(logits, truth))


@pytest.mark.parametrize("pos_weight", [3.0, torch.tensor(0.25)], ids=["float", "tensor"])
def test_bce_pos_weight_matches_bce_with_logits(pos_weight):
    """pos_weight, a float or a tensor, weighs the foreground pixels of the BCE term like
    nn.BCEWithLogitsLoss; the Dice term does not see it."""
    logits, target = binary_case((3, 10, 12), seed=13, foreground=0.1)
    truth = target[:, None].float()
    oracle = nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(pos_weight).reshape(1))
    expected = oracle(logits, truth) + monai_binary_dice(logits, truth)
    assert close(bce_dice_loss(logits, target, pos_weight=pos_weight), expected)
    criterion = BCEDiceLoss(pos_weight=pos_weight)
    criterion(logits, target)
    assert close(criterion.last_parts["bce"], oracle(logits, truth))


def test_bce_dice_loss_ignore_index_masks_both_terms():
    """With 255 pixels and pos_weight: both terms equal the oracles on the valid pixels only."""
    logits, target = binary_case((3, 12, 10), seed=14)
    target = with_ignored(target, fraction=0.4)
    kept_logits, kept = valid_pixels(logits, target)                   # (1, 1, P, 1) each
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))(kept_logits, kept.float())
    dice = monai_binary_dice(kept_logits, kept.float())
    assert close(bce_dice_loss(logits, target, dice_weight=0.5, pos_weight=2.0), bce + 0.5 * dice)
    criterion = BCEDiceLoss(dice_weight=0.5, pos_weight=2.0)
    assert close(criterion(logits, target), bce + 0.5 * dice)
    assert close(criterion.last_parts["bce"], bce) and close(criterion.last_parts["dice"], dice)


def test_bce_dice_loss_accepts_three_dimensional_logits():
    """Logits (N, H, W) give the same loss as (N, 1, H, W), which equals MONAI's."""
    logits, target = binary_case((2, 9, 7), seed=15)
    oracle = monai.losses.DiceCELoss(sigmoid=True, batch=True, **SMOOTH)
    assert close(bce_dice_loss(logits[:, 0], target), oracle(logits, target[:, None].float()))


@pytest.mark.parametrize("logits_shape,target_shape", [
    ((2, 1, 8, 8), (2, 8, 9)),       # spatial mismatch
    ((2, 2, 8, 8), (2, 8, 8)),       # two channels: not a binary logit
    ((2, 8, 8), (3, 8, 8)),          # batch mismatch
    ((2, 1, 8, 8), (2, 1, 8, 8)),    # MONAI-style (N, 1, H, W) target
], ids=str)
def test_bce_dice_loss_shape_mismatch_names_both_shapes(logits_shape, target_shape):
    """The message names the shapes as the caller passed them."""
    pattern = f"{re.escape(str(logits_shape))}.*{re.escape(str(target_shape))}"
    with pytest.raises(ValueError, match=pattern):
        bce_dice_loss(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.long))


# --- 6. shape errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [dice_loss, cross_entropy_loss, ce_dice_loss],
                         ids=["dice", "ce", "ce_dice"])
@pytest.mark.parametrize("logits_shape,target_shape", [
    ((2, 3, 8, 8), (2, 8, 9)),       # spatial mismatch
    ((2, 3, 8, 8), (3, 8, 8)),       # batch mismatch
    ((2, 3, 8, 8), (2, 1, 8, 8)),    # MONAI-style (N, 1, H, W) target
    ((3, 8, 8), (3, 8, 8)),          # logits without a class axis
], ids=str)
def test_shape_mismatch_names_both_shapes(fn, logits_shape, target_shape):
    pattern = f"{re.escape(str(logits_shape))}.*{re.escape(str(target_shape))}"
    with pytest.raises(ValueError, match=pattern):
        fn(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.long))


# --- 7. modules --------------------------------------------------------------------------------

def test_dice_loss_module_matches_monai():
    logits, target = random_case((2, 4, 10, 10), seed=16, absent="unpredicted")
    assert close(DiceLoss()(logits, target), monai_dice(logits, target))
    default = monai.losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True)
    assert close(DiceLoss(eps=1e-5)(logits, target), default(logits, target[:, None]))
    target = with_ignored(target)
    assert close(DiceLoss(ignore_index=IGNORE)(logits, target),
                 monai_dice(*valid_pixels(logits, target)))


def test_ce_dice_loss_module_matches_oracles():
    logits, target = random_case((2, 4, 10, 10), seed=17)
    target = with_ignored(target)
    weights = torch.tensor([1.0, 0.5, 2.0, 1.5])
    criterion = CEDiceLoss(dice_weight=0.5, class_weights=weights)
    loss = criterion(logits, target)
    ce = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)(logits, target)
    dice = monai_dice(*valid_pixels(logits, target))
    parts = criterion.last_parts
    assert close(parts["ce"], ce) and close(parts["dice"], dice) and close(loss, ce + 0.5 * dice)


def test_cross_entropy_module_matches_torch():
    """Equal to nn.CrossEntropyLoss(weight, ignore_index=255), weights a tensor or a list."""
    logits, target = random_case((2, 4, 10, 10), seed=20)
    target = with_ignored(target)
    weights = [1.0, 0.5, 2.0, 1.5]
    oracle = nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=IGNORE)
    assert close(CrossEntropyLoss()(logits, target),
                 nn.CrossEntropyLoss(ignore_index=IGNORE)(logits, target))
    assert close(CrossEntropyLoss(class_weights=weights)(logits, target), oracle(logits, target))
    assert close(CrossEntropyLoss(torch.tensor(weights))(logits, target), oracle(logits, target))


def test_bce_dice_loss_module_matches_oracles():
    logits, target = binary_case((2, 10, 10), seed=18)
    truth = target[:, None].float()
    loss = BCEDiceLoss(dice_weight=0.5, pos_weight=2.0)(logits, target)
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))(logits, truth)
    assert close(loss, bce + 0.5 * monai_binary_dice(logits, truth))


@pytest.mark.parametrize("module_type", [CEDiceLoss, CrossEntropyLoss])
def test_class_weights_are_a_buffer(module_type):
    """Saved in the state dict and moved by ``.to``; without weights the buffer is None."""
    weights = torch.tensor([1.0, 2.0, 3.0])
    module = module_type(class_weights=weights)
    assert torch.equal(dict(module.named_buffers())["class_weights"], weights)
    assert torch.equal(module.state_dict()["class_weights"], weights)
    assert module.to(torch.float64).class_weights.dtype == torch.float64
    empty = module_type()
    assert empty.class_weights is None and "class_weights" not in empty.state_dict()


def test_bce_pos_weight_is_a_buffer():
    """pos_weight follows ``.to`` like class weights (no host-to-device copy per call)."""
    module = BCEDiceLoss(pos_weight=2.0)
    assert torch.equal(module.state_dict()["pos_weight"], torch.tensor(2.0))
    assert module.to(torch.float64).pos_weight.dtype == torch.float64
    assert BCEDiceLoss().pos_weight is None


# --- 8. bf16 -----------------------------------------------------------------------------------

def test_bf16_logits_give_float32_losses():
    """Autocast-style bf16 logits: float32 results, equal to the losses of the same values upcast
    first (so no sum runs in bf16), and within 1e-2 of the float32 logits' losses."""
    logits, target = random_case((4, 5, 64, 64), seed=19)
    target = with_ignored(target, fraction=0.1)
    half = logits.bfloat16()
    binary_target = (target > 2).long()                               # 255 stays ignored
    by_name = {
        "dice": lambda x: dice_loss(x, target, ignore_index=IGNORE),
        "ce_dice": lambda x: ce_dice_loss(x, target),
        "bce_dice": lambda x: bce_dice_loss(x[:, :1], binary_target),
    }
    for name, fn in by_name.items():
        found = fn(half)
        assert found.dtype == torch.float32, name
        assert close(found, fn(half.float()), tol=1e-6), name
        assert close(found, fn(logits), tol=1e-2), name


# --- 9. property -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3), c=st.integers(2, 6), h=st.integers(1, 9), w=st.integers(1, 9),
    scale=st.floats(0.1, 20.0), seed=st.integers(0, 2**31 - 1),
)
def test_dice_loss_is_in_unit_interval_and_matches_monai(n, c, h, w, scale, seed):
    logits, target = random_case((n, c, h, w), seed=seed, scale=scale)
    found = dice_loss(logits, target)
    assert 0.0 <= float(found) <= 1.0
    assert close(found, monai_dice(logits, target))


# --- 10. drop-in modules -----------------------------------------------------------------------

def multiclass_input() -> tuple[torch.Tensor, torch.Tensor]:
    logits, target = random_case((2, 4, 9, 7), seed=21)
    return logits, with_ignored(target)


def binary_input() -> tuple[torch.Tensor, torch.Tensor]:
    logits, target = binary_case((2, 9, 7), seed=22)
    return logits, with_ignored(target)


# (name, module, input): every module the package offers, and every one make_loss builds.
CRITERIA = [
    ("DiceLoss", DiceLoss, multiclass_input),
    ("CrossEntropyLoss", CrossEntropyLoss, multiclass_input),
    ("CEDiceLoss", CEDiceLoss, multiclass_input),
    ("BCEDiceLoss", BCEDiceLoss, binary_input),
    *[(f"make_loss({name})", lambda name=name: make_loss(name),
       binary_input if name == "bce_dice" else multiclass_input) for name in LOSS_NAMES],
]


@pytest.mark.parametrize("make,make_input", [c[1:] for c in CRITERIA],
                         ids=[c[0] for c in CRITERIA])
def test_module_is_a_drop_in_criterion(make, make_input):
    """``loss = criterion(logits, target); loss.backward()`` as with torch, smp and MONAI: a 0-dim
    float32 tensor, and a finite, non-zero gradient on the logits."""
    criterion = make()
    assert isinstance(criterion, nn.Module)
    logits, target = make_input()
    logits.requires_grad_()
    loss = criterion(logits, target)
    assert isinstance(loss, torch.Tensor) and loss.shape == () and loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("dice_weight", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("module_type,make_input,first", [
    (CEDiceLoss, multiclass_input, "ce"), (BCEDiceLoss, binary_input, "bce"),
], ids=["ce_dice", "bce_dice"])
def test_last_parts_are_detached_and_sum_to_the_loss(module_type, make_input, first, dice_weight):
    """After each call ``last_parts`` holds that call's two terms as detached 0-dim tensors on
    the logits' device, and ``first + dice_weight * dice`` is the returned loss."""
    criterion = module_type(dice_weight=dice_weight)
    assert criterion.last_parts == {}
    logits, target = make_input()
    logits.requires_grad_()
    loss = criterion(logits, target)
    parts = criterion.last_parts
    assert set(parts) == {first, "dice"}
    for part in parts.values():
        assert isinstance(part, torch.Tensor) and part.shape == ()
        assert not part.requires_grad and part.grad_fn is None
        assert part.device == logits.device
    assert torch.equal(parts[first] + dice_weight * parts["dice"], loss.detach())
    # A second call replaces the parts with its own.
    loss = criterion(logits * 2.0, target)
    assert torch.equal(criterion.last_parts[first] + dice_weight * criterion.last_parts["dice"],
                       loss.detach())


def test_combined_modules_compute_each_part_once(monkeypatch):
    """One forward runs each term once: the loss is the sum of the parts, not a second pass."""
    calls = {"ce": 0, "dice": 0, "bce": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(losses, "cross_entropy_loss", counting("ce", losses.cross_entropy_loss))
    monkeypatch.setattr(losses, "dice_loss", counting("dice", losses.dice_loss))
    monkeypatch.setattr(losses.F, "binary_cross_entropy_with_logits",
                        counting("bce", F.binary_cross_entropy_with_logits))
    CEDiceLoss()(*multiclass_input())
    assert calls == {"ce": 1, "dice": 1, "bce": 0}
    BCEDiceLoss()(*binary_input())
    assert calls == {"ce": 1, "dice": 1, "bce": 1}


def test_bce_dice_loss_module_passes_eps_through():
    """No foreground and near-zero predicted probability (logits ~ -20): the Dice term is
    ``eps / (sum p + eps)`` and so depends on eps. The module with each eps equals the function
    and MONAI with that smoothing, and the two eps give different losses."""
    logits, target = binary_case((2, 8, 8), seed=23, foreground=0.0, shift=-20.0)
    truth = target[:, None].float()
    found = {}
    for eps in (1e-6, 1e-3):
        oracle = monai.losses.DiceCELoss(sigmoid=True, batch=True, smooth_nr=eps, smooth_dr=eps)
        found[eps] = BCEDiceLoss(eps=eps)(logits, target)
        assert close(found[eps], oracle(logits, truth))
        assert torch.equal(found[eps], bce_dice_loss(logits, target, eps=eps))
    assert found[1e-6] != found[1e-3]


def test_ce_dice_eps_reaches_the_dice_term():
    """ce_dice_loss and CEDiceLoss pass eps to the Dice term: with an absent, unpredicted class
    they equal MONAI DiceCELoss with the same smoothing, for two values of eps."""
    logits, target = random_case((2, 3, 8, 8), seed=24, absent="unpredicted")
    for eps in (1e-6, 1e-5):
        oracle = monai.losses.DiceCELoss(softmax=True, to_onehot_y=True, batch=True,
                                         smooth_nr=eps, smooth_dr=eps)
        expected = oracle(logits, target[:, None])
        assert close(ce_dice_loss(logits, target, eps=eps), expected)
        assert close(CEDiceLoss(eps=eps)(logits, target), expected)


# --- 11. ignore_index defaults to 255 ----------------------------------------------------------

def test_every_ignore_index_in_losses_defaults_to_255():
    """Every public function and module of losses.py that takes ignore_index defaults it to 255."""
    found = {}
    for name in losses.__all__:
        obj = getattr(losses, name)
        if callable(obj):
            parameter = inspect.signature(obj).parameters.get("ignore_index")
            if parameter is not None:
                found[name] = parameter.default
    assert set(found) == {
        "make_loss", "cross_entropy_loss", "dice_loss", "ce_dice_loss", "bce_dice_loss",
        "CrossEntropyLoss", "DiceLoss", "CEDiceLoss", "BCEDiceLoss",
    }
    assert all(default == IGNORE for default in found.values()), found


DEFAULT_LOSSES = [
    ("dice_loss", dice_loss, False), ("cross_entropy_loss", cross_entropy_loss, False),
    ("ce_dice_loss", ce_dice_loss, False), ("bce_dice_loss", bce_dice_loss, True),
    ("DiceLoss", DiceLoss(), False), ("CrossEntropyLoss", CrossEntropyLoss(), False),
    ("CEDiceLoss", CEDiceLoss(), False), ("BCEDiceLoss", BCEDiceLoss(), True),
    *[(f"make_loss({name})", make_loss(name), name == "bce_dice") for name in LOSS_NAMES],
]


@pytest.mark.parametrize("fn,binary", [c[1:] for c in DEFAULT_LOSSES],
                         ids=[c[0] for c in DEFAULT_LOSSES])
def test_default_ignore_index_drops_255_pixels(fn, binary):
    """Called with defaults, a target with 255 pixels gives the loss of the counted pixels alone
    (gathered into one image, with ignore_index=None), so 255 is ignored by default."""
    logits, target = binary_input() if binary else multiclass_input()
    assert (target == IGNORE).any()
    kept_logits, kept = valid_pixels(logits, target)          # (1, C, P, 1), (1, 1, P, 1)
    expected = fn(kept_logits, kept[:, 0], ignore_index=None) if not isinstance(fn, nn.Module) \
        else type(fn)(ignore_index=None)(kept_logits, kept[:, 0])
    assert close(fn(logits, target), expected)


# --- 12. no host sync --------------------------------------------------------------------------

def test_losses_never_read_a_tensor_back_to_the_host(monkeypatch):
    """With every tensor-to-host read made to raise, each loss and module still
    computes its value and gradient (float(), bool() and int() of a tensor included)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a loss read a tensor back to the host")

    cases = [(c[1], c[2]) for c in DEFAULT_LOSSES]
    inputs = {False: multiclass_input(), True: binary_input()}
    for method in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, method, refuse)
    for fn, binary in cases:
        logits, target = (x.clone() for x in inputs[binary])
        logits.requires_grad_()
        fn(logits, target).backward()
        if isinstance(fn, (CEDiceLoss, BCEDiceLoss)):
            assert len(fn.last_parts) == 2


# --- 13. make_loss -----------------------------------------------------------------------------

def test_make_loss_builds_each_named_module():
    expected = {"ce_dice": CEDiceLoss, "ce": CrossEntropyLoss, "dice": DiceLoss,
                "bce_dice": BCEDiceLoss}
    assert set(LOSS_NAMES) == set(expected)
    for name, module_type in expected.items():
        assert type(make_loss(name)) is module_type


def test_make_loss_passes_its_settings_through():
    """dice_weight, class_weights and ignore_index reach the module: equal to the oracles."""
    logits, target = multiclass_input()
    target = torch.where(target == IGNORE, 7, target)                 # 7 is the void label here
    weights = [1.0, 0.5, 2.0, 1.5]
    ce = nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=7)(logits, target)
    dice = monai_dice(*valid_pixels(logits, target, ignore_index=7))
    criterion = make_loss("ce_dice", ignore_index=7, dice_weight=0.4, class_weights=weights)
    assert close(criterion(logits, target), ce + 0.4 * dice)
    assert close(make_loss("ce", ignore_index=7, class_weights=weights)(logits, target), ce)
    assert close(make_loss("dice", ignore_index=7)(logits, target), dice)
    binary_logits, binary = binary_input()
    binary = torch.where(binary == IGNORE, 1, binary)                 # every pixel counts
    truth = binary[:, None].float()
    bce_dice = make_loss("bce_dice", ignore_index=None, dice_weight=0.4)
    expected = nn.BCEWithLogitsLoss()(binary_logits, truth) \
        + 0.4 * monai_binary_dice(binary_logits, truth)
    assert close(bce_dice(binary_logits, binary), expected)


def test_make_loss_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"ce_dice, ce, dice, bce_dice.*'focal'"):
        make_loss("focal")


@pytest.mark.parametrize("name", ["dice", "bce_dice"])
def test_make_loss_refuses_class_weights_without_cross_entropy(name):
    message = rf"class weights weigh the cross-entropy; loss '{name}' has none"
    with pytest.raises(ValueError, match=message):
        make_loss(name, class_weights=[1.0, 2.0])


def test_class_weights_must_be_one_per_class():
    with pytest.raises(ValueError, match=r"shape \(C,\), found shape \(2, 2\)"):
        CEDiceLoss(class_weights=[[1.0, 2.0], [3.0, 4.0]])


# --- 14. median-frequency weights --------------------------------------------------------------

def test_median_frequency_weights_by_hand():
    # Shares 0.1, 0.3, 0.6: the median share is 0.3, so the weights are 3, 1 and 0.5.
    assert median_frequency_weights([100, 300, 600]) == pytest.approx([3.0, 1.0, 0.5])
    # An absent class gets weight 0 and does not move the median of the present ones.
    assert median_frequency_weights([100, 0, 300]) == pytest.approx([2.0, 0.0, 2 / 3])


def test_sqrt_median_weights_by_hand():
    # Shares 0.04, 0.16, 0.8: median 0.16, full weights 4, 1, 0.2; their square roots 2, 1, 0.447.
    assert class_weights("sqrt-median", 3, [40, 160, 800]).tolist() == pytest.approx(
        [2.0, 1.0, 0.2 ** 0.5])
    assert class_weights("median", 3, [40, 160, 800]).tolist() == pytest.approx([4.0, 1.0, 0.2])
    with pytest.raises(ValueError, match="--class-weights sqrt-median needs"):
        class_weights("sqrt-median", 3, None)


def test_median_frequency_weights_feed_the_cross_entropy():
    """The weights (a list of floats) go straight into a loss and weigh it like torch's CE."""
    logits, target = multiclass_input()
    counts = [int((target == c).sum()) for c in range(4)]
    weights = median_frequency_weights(counts)
    oracle = nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=IGNORE)
    assert close(make_loss("ce", class_weights=weights)(logits, target), oracle(logits, target))
