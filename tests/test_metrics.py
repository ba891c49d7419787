"""Metrics against independent oracles: torchmetrics, counts built by hand with numpy, hand-worked
examples, and a brute-force boundary F1 written here from the definition.

torchmetrics scores a 0/0 class as 0 (its ``zero_division`` default) where we give NaN, so on data
with an absent class the comparison is split: values where we are finite must equal torchmetrics,
and the NaN positions are checked against the counts (torchmetrics shows 0 there).

``ignore_index`` defaults to 255 in every metric, as in the losses; tests that want every pixel
to count say ``ignore_index=None``.
"""

from __future__ import annotations

import inspect
import math
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as tmp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

import ranks
from unetseg import metrics
from unetseg.metrics import (
    BoundaryF1,
    ConfusionMatrix,
    Scores,
    boundary_f1,
    default_tolerance,
    scores_from_matrix,
)

IGNORE = 255
BATCH_SHAPES = [(2, 16, 16), (1, 9, 23), (3, 8, 8), (4, 16, 16)]   # (N, H, W), deliberately uneven
PROPERTY = settings(max_examples=50, deadline=None)


# --- inputs ------------------------------------------------------------------------------------

def random_batches(
    num_classes: int, seed: int, ignore_index: int | None = None, logits: bool = False,
    shapes: list[tuple[int, int, int]] = BATCH_SHAPES,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded (prediction, target) batches: predictions agree with the target on ~60% of pixels.

    Predictions are labels (N, H, W) or, with ``logits``, float logits (N, C, H, W) whose argmax
    is that label map. With ``ignore_index``, ~20% of target pixels are set to it.
    """
    g = torch.Generator().manual_seed(seed)
    batches = []
    for n, h, w in shapes:
        target = torch.randint(0, num_classes, (n, h, w), generator=g)
        noise = torch.randint(0, num_classes, (n, h, w), generator=g)
        labels = torch.where(torch.rand(n, h, w, generator=g) < 0.6, target, noise)
        if ignore_index is not None:
            target = torch.where(torch.rand(n, h, w, generator=g) < 0.2, ignore_index, target)
        pred = one_hot_logits(labels, num_classes, g) if logits else labels
        batches.append((pred, target))
    return batches


def one_hot_logits(
    labels: torch.Tensor, num_classes: int, g: torch.Generator | None = None,
) -> torch.Tensor:
    """Float logits (N, C, H, W) whose argmax over dim 1 is ``labels`` (N, H, W)."""
    noise = torch.rand(labels.shape[0], num_classes, *labels.shape[1:], generator=g)
    return noise + 5.0 * torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2)


def counts_by_hand(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None,
) -> np.ndarray:
    """The (C, C) confusion matrix (rows truth, columns prediction) with numpy's ``add.at``."""
    p, t = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if ignore_index is not None:
        p, t = p[t != ignore_index], t[t != ignore_index]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


def nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """np.nanmean without the "mean of empty slice" warning (the all-NaN answer is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def assert_nan_equal(found, expected, atol: float = 0.0) -> None:
    """Equal values and equal NaN positions."""
    found, expected = np.asarray(found, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(found), np.isnan(expected))
    np.testing.assert_allclose(found, expected, rtol=0, atol=atol, equal_nan=True)


# --- 1. torchmetrics oracles -------------------------------------------------------------------

def torchmetrics_scores(
    batches: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int, ignore_index: int | None,
) -> dict[str, np.ndarray]:
    """Per-class IoU, Dice (= F1), precision, recall and pixel accuracy from torchmetrics."""
    kw = {"num_classes": num_classes, "ignore_index": ignore_index}
    metrics = {
        "iou": MulticlassJaccardIndex(average=None, **kw),
        "miou": MulticlassJaccardIndex(average="macro", **kw),
        "dice": MulticlassF1Score(average=None, **kw),
        "precision": MulticlassPrecision(average=None, **kw),
        "recall": MulticlassRecall(average=None, **kw),
        "pixel_accuracy": MulticlassAccuracy(average="micro", **kw),
    }
    for pred, target in batches:
        for metric in metrics.values():
            metric.update(pred, target)
    return {name: metric.compute().double().numpy() for name, metric in metrics.items()}


ORACLE_CASES = [
    (2, None, False), (3, IGNORE, True), (5, None, True), (5, IGNORE, False),
    (11, 11, False), (11, 11, True),   # CamVid: void label 11 just past the 11 classes
]


@pytest.mark.parametrize(("num_classes", "ignore_index", "logits"), ORACLE_CASES)
def test_scores_match_torchmetrics_when_every_class_is_present(num_classes, ignore_index, logits):
    """IoU, mIoU, Dice, precision, recall and pixel accuracy over several batches equal
    torchmetrics, for labels and logits, with and without an ignore index."""
    batches = random_batches(num_classes, seed=num_classes, ignore_index=ignore_index,
                             logits=logits)
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for pred, target in batches:
        meter.update(pred, target)
    found = meter.compute()
    expected = torchmetrics_scores(batches, num_classes, ignore_index)

    # Every class is predicted and true somewhere, so no 0/0 and no convention difference.
    assert (found.matrix.sum(0) > 0).all() and (found.matrix.sum(1) > 0).all()
    for name in ("iou", "dice", "precision", "recall"):
        np.testing.assert_allclose(getattr(found, name).numpy(), expected[name], rtol=0,
                                   atol=1e-6, err_msg=name)
    assert found.miou == pytest.approx(float(expected["miou"]), abs=1e-6)
    assert found.pixel_accuracy == pytest.approx(float(expected["pixel_accuracy"]), abs=1e-6)


@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_scores_match_torchmetrics_with_absent_classes(ignore_index, logits):
    """With absent classes: finite scores equal torchmetrics, and NaN sits exactly on the 0/0
    classes (where torchmetrics reports 0).

    Of 5 classes, the truth holds only {0, 1, 2} and the prediction only {0, 1, 3}, so
    class 2 is never predicted (precision NaN), class 3 is never true (recall NaN) and class 4
    is in neither (everything NaN).
    """
    num_classes, g = 5, torch.Generator().manual_seed(7)
    batches = []
    for n, h, w in BATCH_SHAPES:
        target = torch.randint(0, 3, (n, h, w), generator=g)
        labels = torch.tensor([0, 1, 3])[torch.randint(0, 3, (n, h, w), generator=g)]
        if ignore_index is not None:
            target = torch.where(torch.rand(n, h, w, generator=g) < 0.2, ignore_index, target)
        batches.append((one_hot_logits(labels, num_classes, g) if logits else labels, target))
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for pred, target in batches:
        meter.update(pred, target)
    found = meter.compute()
    expected = torchmetrics_scores(batches, num_classes, ignore_index)

    nan_classes = {"iou": [4], "dice": [4], "precision": [2, 4], "recall": [3, 4]}
    for name, nan_at in nan_classes.items():
        values = getattr(found, name).numpy()
        assert np.flatnonzero(np.isnan(values)).tolist() == nan_at, name
        assert (expected[name][nan_at] == 0).all(), name          # torchmetrics' convention
        finite = ~np.isnan(values)
        np.testing.assert_allclose(values[finite], expected[name][finite], rtol=0, atol=1e-6,
                                   err_msg=name)
    assert found.pixel_accuracy == pytest.approx(float(expected["pixel_accuracy"]), abs=1e-6)
    assert found.miou == pytest.approx(float(expected["iou"][:4].mean()), abs=1e-6)


# --- 2. Dice and IoU -----------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [2, 6, 11])
def test_dice_is_two_iou_over_one_plus_iou(num_classes):
    """Dice = 2 IoU / (1 + IoU) per class to 1e-12, NaN where IoU is NaN."""
    meter = ConfusionMatrix(num_classes + 1)   # the extra last class never occurs: NaN
    for pred, target in random_batches(num_classes, seed=3 * num_classes):
        meter.update(pred, target)
    scores = meter.compute()
    iou = scores.iou.numpy()
    assert np.isnan(iou[-1]) and not np.isnan(iou[:-1]).any()
    assert_nan_equal(scores.dice.numpy(), 2 * iou / (1 + iou), atol=1e-12)
    assert scores.iou.dtype == scores.dice.dtype == torch.float64


# --- 3. properties -------------------------------------------------------------------------------

@st.composite
def labelled_batch(draw, max_classes: int = 5, with_ignore: bool = True):
    """(num_classes, ignore_index, pred, target): int64 arrays (N, H, W) of small random size."""
    num_classes = draw(st.integers(1, max_classes))
    ignore_index = draw(st.sampled_from([None, IGNORE, num_classes])) if with_ignore else None
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    classes = st.integers(0, num_classes - 1)
    truth = classes if ignore_index is None else st.one_of(classes, st.just(ignore_index))
    pred = draw(arrays(np.int64, shape, elements=classes))
    target = draw(arrays(np.int64, shape, elements=truth))
    return num_classes, ignore_index, pred, target


@PROPERTY
@given(labelled_batch(with_ignore=False), st.booleans())
def test_perfect_prediction_scores_one_for_present_and_nan_for_absent_classes(case, logits):
    """pred == target: IoU, Dice, precision and recall are 1 for present classes, NaN for the
    others; pixel accuracy and the means are 1."""
    num_classes, _, _, target = case
    target = torch.from_numpy(target)
    pred = one_hot_logits(target, num_classes) if logits else target.clone()
    meter = ConfusionMatrix(num_classes)
    meter.update(pred, target)
    scores = meter.compute()
    present = np.isin(np.arange(num_classes), target.numpy())
    expected = np.where(present, 1.0, np.nan)
    for name in ("iou", "dice", "precision", "recall"):
        assert_nan_equal(getattr(scores, name).numpy(), expected)
    assert scores.pixel_accuracy == scores.miou == scores.mdice == 1.0


@PROPERTY
@given(labelled_batch(), st.randoms(use_true_random=False), st.data())
def test_scores_are_invariant_to_how_the_pixels_are_batched(case, rng, data):
    """Shuffling the pixels and cutting them into any batches gives the same matrix, and so
    does merging two matrices that each saw part of the data."""
    num_classes, ignore_index, pred, target = case
    whole = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    whole.update(torch.from_numpy(pred), torch.from_numpy(target))

    order = list(range(pred.size))
    rng.shuffle(order)
    p, t = torch.from_numpy(pred.ravel()[order]), torch.from_numpy(target.ravel()[order])
    cuts = sorted(data.draw(st.lists(st.integers(0, pred.size), max_size=5)))
    pieces = list(zip(torch.tensor_split(p, cuts), torch.tensor_split(t, cuts)))
    batched = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for piece in pieces:
        batched.update(*piece)
    assert torch.equal(batched.matrix, whole.matrix)

    first, second = (ConfusionMatrix(num_classes, ignore_index=ignore_index) for _ in range(2))
    half = len(pieces) // 2
    for piece in pieces[:half]:
        first.update(*piece)
    for piece in pieces[half:]:
        second.update(*piece)
    first.merge(second)
    assert torch.equal(first.matrix, whole.matrix)
    for name in ("iou", "dice", "precision", "recall"):
        assert_nan_equal(getattr(first.compute(), name), getattr(whole.compute(), name))


@PROPERTY
@given(labelled_batch())
def test_scores_equal_hand_counts_and_absent_class_is_nan_never_zero(case):
    """Every score equals its formula on counts built with np.add.at; a class in neither truth
    nor prediction is NaN (never 0), and mIoU / mDice are numpy's nanmean of those values."""
    num_classes, ignore_index, pred, target = case
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    meter.update(torch.from_numpy(pred), torch.from_numpy(target))
    scores = meter.compute()

    m = counts_by_hand(pred, target, num_classes, ignore_index)
    assert np.array_equal(scores.matrix.numpy(), m)
    tp, predicted, actual = np.diag(m), m.sum(0), m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (predicted + actual - tp)
        dice = 2 * tp / (predicted + actual)
        expected = {"iou": iou, "dice": dice, "precision": tp / predicted, "recall": tp / actual}
        accuracy = tp.sum() / m.sum()
    for name, values in expected.items():
        assert_nan_equal(getattr(scores, name).numpy(), values, atol=1e-12)

    absent = (predicted == 0) & (actual == 0)
    assert np.isnan(scores.iou.numpy()[absent]).all()
    assert np.isnan(scores.dice.numpy()[absent]).all()
    assert not np.isnan(scores.iou.numpy()[~absent]).any()
    assert_nan_equal(scores.miou, nanmean(iou), atol=1e-12)
    assert_nan_equal(scores.mdice, nanmean(dice), atol=1e-12)
    assert_nan_equal(scores.pixel_accuracy, accuracy, atol=1e-12)


# --- 4. a hand-worked example ---------------------------------------------------------------------

def test_hand_computed_three_by_three_example():
    """A 3x3 image of 4 classes with one ignored pixel, every count and score worked by hand."""
    target = torch.tensor([[0, 0, 1],
                           [0, 1, 1],
                           [2, 2, IGNORE]])
    pred = torch.tensor([[0, 1, 1],
                         [0, 1, 1],
                         [2, 0, 3]])       # the 3 sits on the ignored pixel: it counts nowhere
    meter = ConfusionMatrix(4, ignore_index=IGNORE)
    meter.update(pred, target)
    scores = meter.compute()
    # (truth, pred) pairs: (0,0) x2, (0,1), (1,1) x3, (2,2), (2,0).
    expected_matrix = torch.tensor([[2, 1, 0, 0],
                                    [0, 3, 0, 0],
                                    [1, 0, 1, 0],
                                    [0, 0, 0, 0]])
    assert torch.equal(scores.matrix, expected_matrix)
    # TP = [2, 3, 1, 0]; predicted (column sums) = [3, 4, 1, 0]; true (row sums) = [3, 3, 2, 0].
    nan = math.nan
    assert_nan_equal(scores.iou, [2 / 4, 3 / 4, 1 / 2, nan], atol=1e-15)
    assert_nan_equal(scores.dice, [4 / 6, 6 / 7, 2 / 3, nan], atol=1e-15)
    assert_nan_equal(scores.precision, [2 / 3, 3 / 4, 1 / 1, nan], atol=1e-15)
    assert_nan_equal(scores.recall, [2 / 3, 3 / 3, 1 / 2, nan], atol=1e-15)
    assert scores.pixel_accuracy == pytest.approx(6 / 8, abs=1e-15)
    assert scores.miou == pytest.approx(7 / 12, abs=1e-15)      # (1/2 + 3/4 + 1/2) / 3
    assert scores.mdice == pytest.approx(46 / 63, abs=1e-15)    # (2/3 + 6/7 + 2/3) / 3
    assert scores_from_matrix(expected_matrix).miou == pytest.approx(7 / 12, abs=1e-15)
    rows = scores.per_class(["sky", "road", "car", "void"])
    assert rows[1] == {"class": "road", "iou": 0.75, "dice": 6 / 7, "precision": 0.75,
                       "recall": 1.0}


def test_empty_matrix_scores_are_all_nan():
    """Nothing counted (every pixel ignored): every score, pixel accuracy and the means are NaN."""
    meter = ConfusionMatrix(3, ignore_index=IGNORE)
    meter.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.full((2, 4, 4), IGNORE))
    scores = meter.compute()
    assert isinstance(scores, Scores)
    assert np.isnan(scores.iou.numpy()).all() and np.isnan(scores.dice.numpy()).all()
    assert math.isnan(scores.pixel_accuracy) and math.isnan(scores.miou)


# --- 5. errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("pred", "target", "message"), [
    ([0, 1, 2], [0, 1, 5], r"found target values \[5\]"),
    ([0, -1, 2], [0, 1, 2], r"predicted values \[-1\]"),
    ([0, 1, 2], [0, IGNORE, 2], r"target values \[255\]"),             # 255 is not ignored
    ([0, 4, 7], [0, 1, 2], r"predicted values \[4, 7\]"),
])
def test_out_of_range_labels_raise_naming_the_values(pred, target, message):
    """Labels outside [0, C) raise a ValueError that names the offending values; with
    ignore_index=None every pixel counts, so a 255 in the target is one of them."""
    meter = ConfusionMatrix(3, ignore_index=None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        meter.update(torch.tensor(pred), torch.tensor(target))
    with pytest.raises(ValueError, match=message):
        meter.update(torch.tensor(pred), torch.tensor(target))
    assert meter.matrix.sum() == 0    # a rejected batch adds nothing


def test_predicting_the_ignore_index_on_a_counted_pixel_raises():
    """ignore_index drops target pixels only: predicting 255 on a counted pixel is out of range."""
    meter = ConfusionMatrix(3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match=r"predicted values \[255\]"):
        meter.update(torch.tensor([0, IGNORE]), torch.tensor([0, 1]))


@pytest.mark.parametrize(("pred_shape", "target_shape"), [
    ((2, 4, 4), (2, 4, 5)), ((2, 3, 4, 4), (2, 5, 4)), ((4, 4), (2, 4, 4)),
])
def test_shape_mismatch_raises_naming_both_shapes(pred_shape, target_shape):
    """Mismatched prediction and target shapes raise a ValueError naming both."""
    pred, target = torch.zeros(pred_shape), torch.zeros(target_shape, dtype=torch.long)
    expected = rf"prediction {re_shape(pred_shape)} does not match target {re_shape(target_shape)}"
    with pytest.raises(ValueError, match=expected):
        ConfusionMatrix(3).update(pred, target)


def re_shape(shape: tuple[int, ...]) -> str:
    return r"\(" + ", ".join(map(str, shape)) + r"\)"


def test_merge_of_different_classes_or_ignore_index_raises():
    """merge() refuses a matrix of another class count or ignore index."""
    with pytest.raises(ValueError, match=r"cannot merge a matrix of 4 classes .* into one of 3"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match=r"ignore_index=None\) into one of 3 \(ignore_index=255"):
        ConfusionMatrix(3).merge(ConfusionMatrix(3, ignore_index=None))
    with pytest.raises(ValueError, match=r"cannot merge boundary F1 .* = \(4, None, 255\) "
                                         r"into one with \(3, None, 255\)"):
        BoundaryF1(3).merge(BoundaryF1(4))


def test_zero_classes_raises():
    with pytest.raises(ValueError, match=r"num_classes must be >= 1, found 0"):
        ConfusionMatrix(0)


def test_boundary_f1_shape_mismatch_raises():
    """boundary_f1 names both shapes when they differ or are not (H, W) / (N, H, W)."""
    with pytest.raises(ValueError, match=r"found \(2, 8, 8\) and \(2, 8, 9\)"):
        boundary_f1(np.zeros((2, 8, 8), int), np.zeros((2, 8, 9), int), 2)
    with pytest.raises(ValueError, match=r"found \(8,\) and \(8,\)"):
        boundary_f1(np.zeros(8, int), np.zeros(8, int), 2)


# --- 6. state ------------------------------------------------------------------------------------

def test_reset_zeroes_and_matrix_is_int64_on_the_input_device():
    """The matrix is int64 (C, C) on the inputs' device; reset() zeroes it, and a reset meter
    counts like a new one."""
    batches = random_batches(4, seed=11)
    meter = ConfusionMatrix(4)
    for pred, target in batches:
        meter.update(pred, target)
    assert meter.matrix.dtype == torch.int64 and meter.matrix.shape == (4, 4)
    assert meter.matrix.device == batches[0][1].device
    assert meter.matrix.sum() == sum(t.numel() for _, t in batches)
    meter.reset()
    assert meter.matrix.dtype == torch.int64 and meter.matrix.shape == (4, 4)
    assert not meter.matrix.any()
    meter.update(*batches[0])
    assert np.array_equal(meter.matrix.numpy(), counts_by_hand(*batches[0], 4))


def test_boundary_meter_reset_forgets_everything():
    meter = BoundaryF1(2)
    meter.update(*square_pair(shift=0))
    meter.reset()
    assert np.isnan(meter.compute()).all()


# --- 7. distributed ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_all_reduce_under_two_process_gloo_equals_one_process(tmp_path):
    """Two gloo ranks with uneven shards (1 batch vs 3), after all_reduce, give exactly the
    matrix and the boundary F1 of one process that saw all the data."""
    num_classes = 4
    batches = random_batches(num_classes, seed=5, ignore_index=IGNORE, logits=True,
                             shapes=[(2, 16, 16), (1, 16, 16), (3, 16, 16), (2, 16, 16)])
    shards = [batches[:1], batches[1:]]
    out = tmp_path / "rank0.pt"
    tmp.spawn(ranks.metrics_rank, args=(free_port(), shards, num_classes, IGNORE, str(out)),
              nprocs=2, join=True)
    reduced = torch.load(out, weights_only=False)

    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    boundary = BoundaryF1(num_classes, tolerance=1.5, ignore_index=IGNORE)
    for pred, target in batches:
        matrix.update(pred, target)
        boundary.update(pred, target)
    assert torch.equal(reduced["matrix"], matrix.matrix)
    assert np.array_equal(reduced["count"], boundary.count)
    assert reduced["count"].sum() > 0
    assert_nan_equal(reduced["bf1"], boundary.compute(), atol=1e-12)


def test_all_reduce_is_a_no_op_without_torch_distributed():
    meter, boundary = ConfusionMatrix(3), BoundaryF1(3)
    meter.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    before = meter.matrix.clone()
    meter.all_reduce()
    boundary.all_reduce()
    assert torch.equal(meter.matrix, before) and not boundary.count.any()


# --- 8. boundary F1 ------------------------------------------------------------------------------

SIZE, TOP, SIDE = 64, 20, 20   # a 20 x 20 square at rows/cols 20..39 of a 64 x 64 image


def square(shift: int = 0, label: int = 1, size: int = SIZE, background: int = 0) -> np.ndarray:
    """A (size, size) label map with a SIDE x SIDE square of ``label``, moved right by ``shift``."""
    labels = np.full((size, size), background, dtype=np.int64)
    labels[TOP:TOP + SIDE, TOP + shift:TOP + SIDE + shift] = label
    return labels


def square_pair(shift: int) -> tuple[np.ndarray, np.ndarray]:
    return square(shift), square(0)


def test_exact_square_scores_one():
    """A square predicted exactly: both the square and the background score 1."""
    np.testing.assert_array_equal(boundary_f1(*square_pair(0), num_classes=2), [1.0, 1.0])


@pytest.mark.parametrize("shift", [1, 2])
def test_square_shifted_within_tolerance_scores_one(shift):
    """A pure translation by k moves every boundary pixel exactly k, so each predicted boundary
    pixel has a true one at distance <= k (its pre-image) and vice versa: F1 = 1 for k <= 2."""
    np.testing.assert_array_equal(
        boundary_f1(*square_pair(shift), num_classes=2, tolerance=2.0), [1.0, 1.0])


@pytest.mark.parametrize("shift", [3, 5])
def test_square_shifted_beyond_tolerance_scores_less_than_one(shift):
    """Shifted k > 2: the predicted right edges (of the square, and of the background ring just
    outside it) lie >= k from every true boundary pixel, so both classes score strictly < 1."""
    found = boundary_f1(*square_pair(shift), num_classes=2, tolerance=2.0)
    assert (found < 1.0).all() and (found > 0.0).all()


def test_square_shifted_by_three_has_the_hand_counted_score():
    """Shift 3, tolerance 2, the square's ring of 76 pixels. Predicted ring (cols 23..42):
    top and bottom rows match for cols 23..41 (distance max(0, col - 39) <= 2): 19 + 19;
    left column 23 (rows 21..38) is 3 from the true left column, matched only within 2 rows of
    the true top/bottom rows: rows 21, 22, 37, 38, so 4; right column 42 is >= 3 away: 0.
    Precision = 42/76, and recall the same by mirror symmetry, so F1 = 42/76 = 21/38."""
    found = boundary_f1(*square_pair(3), num_classes=2, tolerance=2.0)
    assert found[1] == pytest.approx(21 / 38, abs=1e-12)


def test_tolerance_zero_counts_only_coincident_boundary_pixels():
    """tolerance=0 means exact matches only: a one-pixel shift must score below 1 (only the
    top and bottom rows of the square overlap), not fall back to the default tolerance."""
    found = boundary_f1(*square_pair(1), num_classes=2, tolerance=0.0)
    # Square: predicted ring cols 21..40; its top and bottom rows coincide on cols 21..39
    # (19 + 19 of 76 pixels), the side columns match nothing. P = R = 38/76, so F1 = 1/2.
    assert found[1] == pytest.approx(0.5, abs=1e-12)


def test_empty_prediction_scores_zero_and_absent_class_is_nan():
    """Prediction all background: the square has a true boundary but no predicted one (recall 0,
    F1 0); background fills the prediction, so it has no predicted boundary either (F1 0);
    class 2 is in neither map (NaN)."""
    found = boundary_f1(np.zeros((SIZE, SIZE), int), square(0), num_classes=3, tolerance=2.0)
    assert_nan_equal(found, [0.0, 0.0, math.nan])


def test_class_filling_the_whole_image_in_both_is_nan():
    """A class covering the whole image in truth and prediction has no boundary (the image edge
    is not one), so it is NaN, like the absent class 1."""
    full = np.zeros((SIZE, SIZE), int)
    assert_nan_equal(boundary_f1(full, full, num_classes=2), [math.nan, math.nan])


def test_image_edge_is_not_a_boundary():
    """Class 1 is the top 28 rows in the prediction, the top 32 in the truth. Their only
    boundaries are rows 27 and 31 (and 28 / 32 for the background), 4 apart, beyond a
    tolerance of 2: F1 = 0. Were the image edge a boundary, rows 0 and the side columns would
    match and give F1 > 0."""
    pred, target = np.zeros((SIZE, SIZE), int), np.zeros((SIZE, SIZE), int)
    pred[:28], target[:32] = 1, 1
    np.testing.assert_array_equal(boundary_f1(pred, target, 2, tolerance=2.0), [0.0, 0.0])


def test_scores_average_per_class_over_the_images_where_the_class_exists():
    """Image A: class 1 square predicted exactly (classes 0 and 1 score 1, class 2 NaN).
    Image B: a class-2 square, predicted all background (classes 0 and 2 score 0, class 1 NaN).
    Means over images where each class has a boundary: [(1 + 0)/2, 1, 0]."""
    pred = np.stack([square(0, label=1), np.zeros((SIZE, SIZE), int)])
    target = np.stack([square(0, label=1), square(0, label=2)])
    np.testing.assert_array_equal(boundary_f1(pred, target, 3, tolerance=2.0), [0.5, 1.0, 0.0])


def test_default_tolerance_is_three_quarters_percent_of_the_diagonal_and_at_least_one():
    """0.0075 * diagonal, floored at 1 pixel."""
    assert default_tolerance(300, 400) == pytest.approx(3.75, abs=1e-12)    # diagonal 500
    assert default_tolerance(960, 720) == pytest.approx(9.0, abs=1e-12)     # diagonal 1200
    assert default_tolerance(64, 64) == 1.0                                 # 0.68 -> 1
    assert default_tolerance(1, 1) == 1.0


@pytest.mark.parametrize(("size", "within", "beyond"), [(64, 1, 2), (320, 3, 4)])
def test_boundary_f1_uses_the_default_tolerance(size, within, beyond):
    """Without a tolerance: on 64 x 64 (tolerance 1) a 1-pixel shift scores 1 and 2 does not;
    on 320 x 320 (0.0075 * 452.5 = 3.39) a 3-pixel shift scores 1 and 4 does not."""
    target = square(0, size=size)
    assert boundary_f1(square(within, size=size), target, 2)[1] == 1.0
    assert boundary_f1(square(beyond, size=size), target, 2)[1] < 1.0


def test_ignore_index_drops_predicted_boundary_on_ignored_pixels():
    """A spurious class-1 blob predicted inside the ignored region (cols 48..63) lowers class 1's
    precision when every pixel counts (ignore_index=None), and is dropped when 255 is ignored,
    explicitly or by default, leaving the exact square's score 1."""
    target = square(0)
    target[:, 48:] = IGNORE
    pred = square(0)
    pred[5:15, 52:60] = 1
    assert boundary_f1(pred, target, 2, tolerance=2.0, ignore_index=None)[1] < 1.0
    assert boundary_f1(pred, target, 2, tolerance=2.0, ignore_index=IGNORE)[1] == 1.0
    assert boundary_f1(pred, target, 2, tolerance=2.0)[1] == 1.0
    meter = BoundaryF1(2, tolerance=2.0)
    meter.update(pred, target)
    assert meter.compute()[1] == 1.0


# --- boundary F1 against a brute-force reference ------------------------------------------------

def brute_boundary(labels: np.ndarray, c: int) -> np.ndarray:
    """Pixels of class c with a 4-neighbour inside the image of another label, by looping."""
    h, w = labels.shape
    edge = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            if labels[i, j] == c:
                neighbours = [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
                edge[i, j] = any(0 <= a < h and 0 <= b < w and labels[a, b] != c
                                 for a, b in neighbours)
    return edge


def brute_boundary_f1(
    pred: np.ndarray, target: np.ndarray, num_classes: int, tolerance: float,
    ignore_index: int | None = None,
) -> np.ndarray:
    """The BF score from its definition: all pairwise Euclidean distances between predicted and
    true boundary pixels, per image and class, then the per-class mean over images where it
    exists (NaN if no boundary in either map)."""
    per_image = np.full((len(pred), num_classes), np.nan)
    for n, (p, t) in enumerate(zip(pred, target)):
        valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
        for c in range(num_classes):
            p_edge = np.argwhere(brute_boundary(p, c) & valid)
            t_edge = np.argwhere(brute_boundary(t, c))
            if len(p_edge) == 0 and len(t_edge) == 0:
                continue
            if len(p_edge) == 0 or len(t_edge) == 0:
                per_image[n, c] = 0.0
                continue
            distance = np.sqrt(((p_edge[:, None, :] - t_edge[None, :, :]) ** 2).sum(-1))
            precision = (distance.min(axis=1) <= tolerance).mean()
            recall = (distance.min(axis=0) <= tolerance).mean()
            total = precision + recall
            per_image[n, c] = 0.0 if total == 0 else 2 * precision * recall / total
    return nanmean(per_image, axis=0)


def random_masks(
    num_classes: int, seed: int, n: int = 3, size: int = 16, ignore_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blocky random label maps (N, 16, 16) with pixel noise; the prediction is the truth with
    about a quarter of its 4x4 blocks relabelled and 10% of its pixels flipped."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, num_classes, (n, size // 4, size // 4))
    target = np.kron(blocks, np.ones((1, 4, 4), dtype=np.int64))
    flip = rng.random(target.shape) < 0.05
    target = np.where(flip, rng.integers(0, num_classes, target.shape), target)
    relabel = rng.random(blocks.shape) < 0.25
    pred_blocks = np.where(relabel, rng.integers(0, num_classes, blocks.shape), blocks)
    pred = np.where(np.kron(relabel, np.ones((1, 4, 4), bool)),
                    np.kron(pred_blocks, np.ones((1, 4, 4), dtype=np.int64)), target)
    flip = rng.random(pred.shape) < 0.1
    pred = np.where(flip, rng.integers(0, num_classes, pred.shape), pred)
    if ignore_index is not None:
        ignored = np.kron(rng.random(blocks.shape) < 0.2, np.ones((1, 4, 4), bool))
        target = np.where(ignored, ignore_index, target)
    return pred, target


@pytest.mark.parametrize("ignore_index", [None, IGNORE, 3])
@pytest.mark.parametrize("tolerance", [1.0, 2.0, 2.5, None])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_boundary_f1_matches_brute_force_on_random_masks(num_classes, tolerance, ignore_index):
    """Equal to the brute-force BF score on random 16 x 16 masks (default tolerance there: 1)."""
    seed = num_classes * 100 + int(10 * (tolerance or 0)) + (ignore_index or 0)
    pred, target = random_masks(num_classes, seed=seed, ignore_index=ignore_index)
    found = boundary_f1(pred, target, num_classes, tolerance=tolerance, ignore_index=ignore_index)
    expected = brute_boundary_f1(pred, target, num_classes, tolerance or 1.0, ignore_index)
    assert_nan_equal(found, expected, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(labelled_batch(max_classes=3), st.sampled_from([1.0, 1.5, 2.0]))
def test_boundary_f1_matches_brute_force_on_tiny_maps(case, tolerance):
    """Equal to the brute-force BF score on tiny maps of any size, 1-pixel ones included."""
    num_classes, ignore_index, pred, target = case
    found = boundary_f1(pred, target, num_classes, tolerance=tolerance, ignore_index=ignore_index)
    expected = brute_boundary_f1(pred, target, num_classes, tolerance, ignore_index)
    assert_nan_equal(found, expected, atol=1e-12)


def test_boundary_meter_streaming_equals_the_whole_stack():
    """BoundaryF1 fed batches of 1, 3 and 2 images equals boundary_f1 on all 6 at once."""
    pred, target = random_masks(4, seed=21, n=6, ignore_index=IGNORE)
    meter = BoundaryF1(4, tolerance=1.5, ignore_index=IGNORE)
    for start, stop in [(0, 1), (1, 4), (4, 6)]:
        meter.update(torch.from_numpy(pred[start:stop]), torch.from_numpy(target[start:stop]))
    expected = boundary_f1(pred, target, 4, tolerance=1.5, ignore_index=IGNORE)
    assert_nan_equal(meter.compute(), expected, atol=1e-12)
    assert_nan_equal(expected, brute_boundary_f1(pred, target, 4, 1.5, IGNORE), atol=1e-12)


def test_boundary_f1_accepts_logits_tensors_and_arrays():
    """Logits (N, C, H, W) or one image's (C, H, W), as tensors or numpy arrays, score like
    their argmax labels."""
    pred, target = random_masks(3, seed=4, n=2)
    expected = brute_boundary_f1(pred, target, 3, tolerance=1.0)
    logits = one_hot_logits(torch.from_numpy(pred), 3)
    for p in (logits, logits.numpy(), torch.from_numpy(pred), pred):
        for t in (torch.from_numpy(target), target):
            assert_nan_equal(boundary_f1(p, t, 3, tolerance=1.0), expected, atol=1e-12)
    single = BoundaryF1(3, tolerance=1.0)
    for image in range(2):
        single.update(logits[image], target[image])
    assert_nan_equal(single.compute(), expected, atol=1e-12)


def test_confusion_matrix_reads_single_image_logits_like_boundary_f1():
    """One image's logits (C, H, W) with its target (H, W): BoundaryF1 takes the argmax over
    the class axis 0; ConfusionMatrix ("logits are recognised by having one more dimension
    than the target") must count the same labels, not argmax over rows (dim 1), which here
    has the same size and so passes the shape check silently."""
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 4, 4, generator=g), torch.randint(0, 4, (4, 4), generator=g)
    meter = ConfusionMatrix(4)
    meter.update(logits, target)
    assert np.array_equal(meter.matrix.numpy(), counts_by_hand(logits.argmax(0), target, 4))


# --- 9. ignore_index defaults to 255 ----------------------------------------------------------

def test_every_ignore_index_in_metrics_defaults_to_255():
    """Every public function and class of metrics.py that takes ignore_index defaults it to 255,
    as in the losses; None is the explicit "every pixel counts"."""
    found = {}
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if callable(obj):
            parameter = inspect.signature(obj).parameters.get("ignore_index")
            if parameter is not None:
                found[name] = parameter.default
    assert set(found) == {"ConfusionMatrix", "boundary_f1", "BoundaryF1"}
    assert all(default == IGNORE for default in found.values()), found


@pytest.mark.parametrize("logits", [False, True])
def test_confusion_matrix_ignores_255_by_default(logits):
    """A meter with the default ignore_index, fed targets with 255 pixels, holds the matrix of
    a meter that counts every pixel (ignore_index=None) fed only the pixels that are not 255,
    and equals torchmetrics with ignore_index=255."""
    num_classes = 4
    batches = random_batches(num_classes, seed=31, ignore_index=IGNORE, logits=logits)
    default, kept = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes, ignore_index=None)
    for pred, target in batches:
        default.update(pred, target)
        labels = pred.argmax(1) if logits else pred
        keep = target != IGNORE
        kept.update(labels[keep], target[keep])
    assert sum(int((t == IGNORE).sum()) for _, t in batches) > 0
    assert torch.equal(default.matrix, kept.matrix)
    expected = torchmetrics_scores(batches, num_classes, IGNORE)
    np.testing.assert_allclose(default.compute().iou.numpy(), expected["iou"], rtol=0, atol=1e-6)


def test_boundary_f1_ignores_255_by_default():
    """boundary_f1 and BoundaryF1 with the default ignore_index equal the brute-force BF score
    with ignore_index=255 on masks whose targets hold 255 blocks."""
    pred, target = random_masks(3, seed=32, ignore_index=IGNORE)
    assert (target == IGNORE).any()
    expected = brute_boundary_f1(pred, target, 3, 1.5, IGNORE)
    assert_nan_equal(boundary_f1(pred, target, 3, tolerance=1.5), expected, atol=1e-12)
    meter = BoundaryF1(3, tolerance=1.5)
    meter.update(pred, target)
    assert_nan_equal(meter.compute(), expected, atol=1e-12)


# --- distances on crops (the inspector's and boundary F1's building block) -------------------

@pytest.mark.parametrize("seed", range(6))
def test_distances_on_a_crop_equal_the_whole_image_transform(seed):
    """`within` runs the distance transform on a crop around ``where`` only; at every pixel of
    ``where`` it must agree with the transform of the whole image, edges and corners included."""
    from scipy import ndimage

    from unetseg.metrics import distances_up_to, within

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 60)), int(rng.integers(5, 60)))
    region = ndimage.binary_dilation(rng.random(shape) < 0.02, iterations=int(rng.integers(0, 3)))
    where = rng.random(shape) < rng.choice([0.001, 0.01, 0.2])
    for radius in (1.0, 2.5, float(rng.uniform(0.5, 12))):
        full = (ndimage.distance_transform_edt(~region) if region.any()
                else np.full(shape, np.inf))
        np.testing.assert_array_equal(within(region, radius, where),
                                      where & (full <= radius))
        near = distances_up_to(region, radius, where)
        close = where & (full <= radius)
        np.testing.assert_array_equal(near[close], full[close])
        assert np.isinf(near[~where]).all()


# --- 10. label dtypes, ignore labels anywhere, labels too wide for the narrow bins -------------

def dtype_batch(dtype: torch.dtype, num_classes: int, ignore_index: int | None, seed: int):
    """(pred, target) of ``dtype``, shape (3, 9, 11): ~60% agreement, ~20% ignored targets."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (3, 9, 11), generator=g)
    noise = torch.randint(0, num_classes, (3, 9, 11), generator=g)
    pred = torch.where(torch.rand(3, 9, 11, generator=g) < 0.6, target, noise)
    if ignore_index is not None:
        target = torch.where(torch.rand(3, 9, 11, generator=g) < 0.2, ignore_index, target)
    return pred.to(dtype), target.to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32,
                                   torch.int64, torch.float32])
@pytest.mark.parametrize("ignore_index", [None, IGNORE, 5, -1, -100])
def test_every_label_dtype_counts_like_numpy(dtype, ignore_index):
    """Labels of any integer dtype (and float labels, truncated) give the numpy matrix, with the
    ignore label above, just past, or below the classes; where the dtype cannot hold the ignore
    label, no pixel has it and every pixel counts."""
    num_classes = 5
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    stored = ignore_index if ignore_index is not None and info.min <= ignore_index <= info.max \
        else None
    pred, target = dtype_batch(dtype, num_classes, stored, seed=len(str(dtype)))
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    meter.update(pred, target)
    expected = counts_by_hand(pred.long().numpy(), target.long().numpy(), num_classes, stored)
    assert np.array_equal(meter.matrix.numpy(), expected)
    assert meter.matrix.sum() > 0


def test_an_ignore_label_a_dtype_cannot_hold_does_not_wrap_onto_a_class():
    """uint8 labels and ignore_index 300: torch would compare uint8 == 300 as == 44; class 44
    must still count."""
    target = torch.tensor([44, 44, 1, 0], dtype=torch.uint8)
    meter = ConfusionMatrix(50, ignore_index=300)
    meter.update(target.clone(), target)
    assert meter.matrix[44, 44] == 2 and meter.matrix.sum() == 4


@pytest.mark.parametrize("ignore_index", [0, 2])
def test_ignore_index_inside_the_classes_counts_nowhere_like_torchmetrics(ignore_index):
    """An ignore label that is also a class index: its target pixels count nowhere (their row is
    empty) while predictions of that class elsewhere still count, as torchmetrics' confusion
    matrix with the same ignore_index has it."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    num_classes = 4
    batches = random_batches(num_classes, seed=41 + ignore_index)
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    oracle = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)
    for pred, target in batches:
        meter.update(pred, target)
        oracle.update(pred, target)
    assert not meter.matrix[ignore_index].any() and meter.matrix[:, ignore_index].any()
    assert torch.equal(meter.matrix, oracle.compute())


@pytest.mark.parametrize(("num_classes", "ignore_index"), [(200, IGNORE), (300, IGNORE),
                                                           (3, 2**40), (3, -(2**40))])
def test_many_classes_and_far_ignore_labels_count_like_numpy(num_classes, ignore_index):
    """Wider bins for many classes (200: int32 bins; 300: 255 is a class), and an ignore label
    far outside the classes, which the narrow histogram cannot take (counted in int64)."""
    g = torch.Generator().manual_seed(num_classes)
    target = torch.randint(0, num_classes, (2, 40, 40), generator=g)
    pred = torch.randint(0, num_classes, (2, 40, 40), generator=g)
    target[:, :5] = ignore_index
    meter = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    meter.update(pred, target)
    expected = counts_by_hand(pred.numpy(), target.numpy(), num_classes, ignore_index)
    assert np.array_equal(meter.matrix.numpy(), expected)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(("pred", "target", "message"), [
    ([0, 1, 2], [0, 2**16 + 1, 2], r"target values \[65537\]"),       # int16 would read 1
    ([0, -(2**16) + 2, 2], [0, 1, 2], r"predicted values \[-65534\]"),  # int16 would read 2
])
def test_labels_that_wrap_in_a_narrow_dtype_are_still_refused(dtype, pred, target, message):
    """Labels outside the int16 bins the matrix is built in (which a cast would wrap onto a
    valid class) are refused by their true value."""
    meter = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=message):
        meter.update(torch.tensor(pred, dtype=dtype), torch.tensor(target, dtype=dtype))
    assert meter.matrix.sum() == 0


def test_an_ignore_label_far_outside_the_classes_is_ignored_and_others_refused():
    """ignore_index 2**40 on int64 labels: those pixels count nowhere; a 7 is still refused."""
    far = 2**40
    meter = ConfusionMatrix(3, ignore_index=far)
    meter.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, far, far, 2]))
    assert meter.matrix.sum() == 2 and meter.matrix[0, 0] == 1 and meter.matrix[2, 2] == 1
    with pytest.raises(ValueError, match=r"target values \[7\]"):
        meter.update(torch.tensor([0, 1]), torch.tensor([far, 7]))


def test_an_empty_batch_adds_nothing():
    meter = ConfusionMatrix(3)
    meter.update(torch.zeros(0, 4, 4, dtype=torch.long), torch.zeros(0, 4, 4, dtype=torch.long))
    assert meter.matrix.sum() == 0


def test_an_unchecked_update_counts_the_same_and_puts_bad_labels_nowhere():
    """``check=False`` (the training loop's, which reads nothing back): the same matrix for
    good labels; a small label outside the classes is counted in no cell instead of refused."""
    torch.manual_seed(0)
    pred, target = torch.randint(0, 4, (2, 9, 7)), torch.randint(0, 4, (2, 9, 7))
    target[0, 0, :3] = 255
    checked, unchecked = ConfusionMatrix(4), ConfusionMatrix(4)
    checked.update(pred, target)
    unchecked.update(pred, target, check=False)
    assert torch.equal(checked.matrix, unchecked.matrix)
    target[1, 1, 1], pred[1, 2, 2] = 7, -3
    with pytest.raises(ValueError):
        ConfusionMatrix(4).update(pred, target)
    lenient = ConfusionMatrix(4)
    lenient.update(pred, target, check=False)
    assert lenient.matrix.sum() == checked.matrix.sum() - 2


# --- the distance transform under the boundary measures ----------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_distances_equal_scipys_exact_transform(seed):
    """OpenCV computes the distances; scipy's exact EDT is the oracle. Sparse regions make long
    distances, and the crop to ``where`` must not change any value within the radius."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    region = rng.random((97, 131)) < 0.002 * (seed + 1)
    region[rng.integers(97), rng.integers(131)] = True
    where = rng.random(region.shape) < 0.3
    exact = ndimage.distance_transform_edt(~region)
    for radius in (1.0, 2.0, math.sqrt(5), 7.5, 400.0):
        found = metrics.distances_up_to(region, radius, where)
        close = where & (exact <= radius)
        np.testing.assert_array_equal(found[close], exact[close])     # bit for bit
        assert np.all(found[~where] == np.inf)
        np.testing.assert_array_equal(metrics.within(region, radius, where), close)


def test_distances_without_a_region_are_infinite():
    where = np.ones((5, 6), dtype=bool)
    assert np.all(metrics.distances_up_to(np.zeros((5, 6), bool), 3.0, where) == np.inf)
    assert not metrics.within(np.zeros((5, 6), bool), 3.0, where).any()


def test_one_logit_channel_is_read_as_a_binary_models_logit():
    """A bce_dice model has one output channel: class 1 where its logit is above 0. An argmax
    over that one channel would call every pixel class 0, a perfect model scoring IoU 0."""
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, size=(2, 9, 11))
    logits = torch.from_numpy(np.where(target == 1, 3.0, -3.0)[:, None]).float()
    matrix = ConfusionMatrix(2, ignore_index=None)
    matrix.update(logits, torch.from_numpy(target))
    np.testing.assert_array_equal(matrix.compute().iou.numpy(), [1.0, 1.0])
    single = ConfusionMatrix(2, ignore_index=None)
    single.update(logits[0], torch.from_numpy(target[0]))          # (1, H, W) for (H, W)
    np.testing.assert_array_equal(single.compute().iou.numpy(), [1.0, 1.0])
    bf1 = BoundaryF1(2, ignore_index=None)
    bf1.update(logits.numpy(), target)
    np.testing.assert_array_equal(bf1.compute(), [1.0, 1.0])
