"""The mask inspector: the error breakdown on hand-drawn cases with exact counts, Boundary IoU,
object statistics, and verdicts validated by planted errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unetseg.inspector import (
    ERROR_TYPES,
    Inspector,
    boundary_iou,
    error_breakdown,
    error_distance,
    inspect_masks,
)

SIZE = 256
D = error_distance(SIZE, SIZE)                      # 1% of the diagonal = 3.62 px


def disc(cy: float, cx: float, r: float, size: int = SIZE) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return (rows - cy) ** 2 + (cols - cx) ** 2 <= r**2


def brute_force_breakdown(pred: np.ndarray, truth: np.ndarray, label: int, d: float) -> dict:
    """The definitions applied pixel by pixel with explicit coordinate distances: an
    implementation independent of the distance transforms and labelling in the inspector."""
    is_true, is_pred = truth == label, pred == label
    tp, fp, fn = is_true & is_pred, is_pred & ~is_true, is_true & ~is_pred
    tn = ~is_true & ~is_pred

    def near(points: np.ndarray, region: np.ndarray) -> np.ndarray:
        target = np.argwhere(region)
        if not len(target):
            return np.zeros(len(points), dtype=bool)
        gaps = np.sqrt(((points[:, None, :] - target[None, :, :]) ** 2).sum(-1)).min(1)
        return gaps <= d

    counts = {"tp": int(tp.sum())}
    for kind, errors, region in (("fp", fp, is_pred), ("fn", fn, is_true)):
        components, _ = ndimage.label(region, structure=np.ones((3, 3)))
        points = np.argwhere(errors)
        owners = components[errors]
        has_tp = np.array([tp[components == o].any() for o in owners], dtype=bool)
        both = near(points, tp) & near(points, tn) if len(points) else np.zeros(0, bool)
        counts[f"{kind}_segment"] = int((~has_tp).sum())
        counts[f"{kind}_boundary"] = int((has_tp & both).sum())
        counts[f"{kind}_extent"] = int((has_tp & ~both).sum())
    return counts


def shares_sum_to_one(counts: dict) -> float:
    union = counts["tp"] + sum(counts[t] for t in ERROR_TYPES)
    return (counts["tp"] + sum(counts[t] for t in ERROR_TYPES)) / union


# --- the error breakdown on hand-drawn cases --------------------------------------------------

def test_a_disc_shifted_by_one_pixel_is_all_boundary_error():
    truth = disc(128, 128, 20).astype(int)
    pred = np.roll(truth, 1, axis=1)
    counts = error_breakdown(pred, truth, 1, D)
    fp, fn = int((pred & ~truth.astype(bool)).sum()), int((truth & ~pred.astype(bool)).sum())
    assert counts["fp_boundary"] == fp > 0 and counts["fn_boundary"] == fn > 0
    assert all(counts[t] == 0 for t in ("fp_extent", "fn_extent", "fp_segment", "fn_segment"))


def test_a_missed_disc_far_from_others_is_all_segment_error():
    truth = (disc(60, 60, 15) | disc(190, 190, 15)).astype(int)
    pred = disc(60, 60, 15).astype(int)
    counts = error_breakdown(pred, truth, 1, D)
    assert counts["fn_segment"] == int(disc(190, 190, 15).sum())          # the whole disc
    assert all(counts[t] == 0 for t in ERROR_TYPES if t != "fn_segment")
    assert counts["tp"] == int(disc(60, 60, 15).sum())


def test_a_disc_at_half_its_radius_is_boundary_plus_extent_with_exact_counts():
    truth = disc(128, 128, 10).astype(int)
    pred = disc(128, 128, 5).astype(int)
    counts = error_breakdown(pred, truth, 1, D)
    expected = brute_force_breakdown(pred, truth, 1, D)
    assert counts == expected
    assert counts["fn_boundary"] > 0 and counts["fn_extent"] > 0
    assert counts["fn_boundary"] + counts["fn_extent"] == int((truth & ~pred.astype(bool)).sum())
    assert counts["fp_boundary"] == counts["fp_extent"] == counts["fn_segment"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_breakdown_equals_the_brute_force_definition_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    size = 40
    truth = np.zeros((size, size), dtype=int)
    pred = np.zeros((size, size), dtype=int)
    for mask in (truth, pred):
        for _ in range(4):
            mask[disc(*rng.uniform(0, size, 2), rng.uniform(2, 9), size=size)] = rng.integers(1, 3)
    d = error_distance(size, size)
    for label in (0, 1, 2):
        assert error_breakdown(pred, truth, label, d) == brute_force_breakdown(pred, truth,
                                                                               label, d)


@pytest.mark.parametrize("seed", range(4))
def test_each_class_measured_on_its_crop_gives_the_whole_images_numbers(seed):
    """The inspector measures each class on the crop around its pixels; the whole image, through
    the same public functions, must give the same counts (objects at the image edge, ignored
    pixels and a class touching only ignored pixels included)."""
    rng = np.random.default_rng(seed)
    size = 300                                  # d = 4.2 px, the boundary IoU band 8.5 px
    truth = np.zeros((size, size), dtype=int)
    for _ in range(12):
        truth[disc(*rng.uniform(-10, size + 10, 2), rng.uniform(2, 40), size=size)] = \
            rng.integers(1, 5)
    # Boundary errors everywhere (a shifted copy), plus spurious and relabelled blobs.
    pred = np.roll(truth, (3, -2), axis=(0, 1))
    for _ in range(4):
        pred[disc(*rng.uniform(0, size, 2), rng.uniform(2, 20), size=size)] = rng.integers(0, 5)
    # Ignored pixels: a disc, and a VOC-style void band along the true objects' outer edges,
    # which puts the nearest counted background pixels several pixels away.
    objects = truth > 0
    truth[ndimage.binary_dilation(objects, iterations=3) & ~objects] = 255
    truth[disc(*rng.uniform(0, size, 2), 30, size=size)] = 255
    inspector = Inspector([f"c{i}" for i in range(5)], ignore_index=255)
    inspector.add(pred, truth)
    valid = truth != 255
    d, band = error_distance(size, size), max(1.0, 0.02 * math.hypot(size, size))
    for label in range(5):
        whole = error_breakdown(pred, truth, label, d, valid)
        assert list(inspector.breakdown[label]) == [whole[t] for t in ERROR_TYPES] + [whole["tp"]]
        assert tuple(inspector.band[label]) == boundary_iou(pred, truth, label, band, valid)


def test_iou_plus_the_six_error_shares_is_exactly_one():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, (64, 64))
    pred = np.where(rng.random((64, 64)) < 0.3, rng.integers(0, 3, (64, 64)), truth)
    result = inspect_masks([(pred, truth)], ["a", "b", "c"])
    for row in result.classes:
        assert row["iou"] + sum(row["error_shares"].values()) == pytest.approx(1.0, abs=1e-12)


# --- Boundary IoU and objects -------------------------------------------------------------------

def test_boundary_iou_by_hand():
    truth = np.zeros((100, 100), dtype=int)
    truth[20:60, 20:60] = 1
    assert boundary_iou(truth, truth, 1) == (int(_band_count(truth)),) * 2
    assert boundary_iou(np.zeros_like(truth), truth, 1)[0] == 0
    # A 40 x 40 square's band of width d = 2% of the diagonal (2.83 px): its outer ring is 1 px
    # from the outside, the next 2 px, the third 3 px > 2.83, so two rings: 40^2 - 36^2 = 304.
    assert _band_count(truth) == 40**2 - 36**2


def _band_count(mask):
    inter, union = boundary_iou(mask, mask, 1)
    return union


def test_object_recall_by_size_fragmentation_and_false_blobs():
    truth = np.zeros((SIZE, SIZE), dtype=int)
    smalls = [disc(30, 30 + 40 * i, 4) for i in range(3)]           # 49 px: small
    large = disc(160, 128, 40)                                        # 5025 px: large
    for mask in smalls + [large]:
        truth[mask] = 1
    pred = np.zeros_like(truth)
    pred[smalls[0]] = 1                                               # one small found
    pred[large] = 1
    pred[158:163, :] = 0                                              # large cut in two pieces
    pred[disc(230, 30, 5)] = 1                                        # a spurious blob
    row = inspect_masks([(pred, truth)], ["background", "object"]).classes[1]
    assert row["true_objects"] == {"small": 3, "medium": 0, "large": 1}
    assert row["object_recall"]["small"] == pytest.approx(1 / 3)
    assert row["object_recall"]["large"] == 1.0
    assert math.isnan(row["object_recall"]["medium"])
    assert row["fragmentation"] == pytest.approx((1 + 2) / 2)
    assert row["false_positive_blobs"] == 1


def test_absent_class_is_nan_and_fine():
    truth = np.zeros((32, 32), dtype=int)
    row = inspect_masks([(truth, truth)], ["a", "b"]).classes[1]
    assert math.isnan(row["iou"]) and row["verdict"] == "fine"


def test_ignored_pixels_count_nowhere():
    truth = np.zeros((32, 32), dtype=int)
    truth[:, 16:] = 255
    pred = np.ones((32, 32), dtype=int)
    pred[:, :16] = 0
    row = inspect_masks([(pred, truth)], ["a", "b"], ignore_index=255).classes[0]
    assert row["iou"] == 1.0 and row["fp"] == row["fn"] == 0


def test_labels_outside_the_classes_are_refused_naming_the_image():
    truth = np.zeros((8, 8), dtype=int)
    with pytest.raises(ValueError, match=r"scan7: labels must lie in \[0, 2\) .*target values "
                                         r"\[0\] and predicted values \[5\]"):
        inspect_masks([(truth + 5, truth)], ["a", "b"], names=["scan7"])


# --- verdicts from planted errors ---------------------------------------------------------------

CLASSES = ["background", "A", "B", "rare", "S"]
A, B, RARE, S = 1, 2, 3, 4


def planted_truth() -> np.ndarray:
    """A fixed scene: a large B block, two A discs, one rare medium disc, and class S as
    twelve small discs plus one large disc."""
    truth = np.zeros((SIZE, SIZE), dtype=int)
    truth[5:115, 5:125] = B
    truth[disc(190, 50, 22)] = A
    truth[disc(190, 140, 20)] = A
    truth[disc(60, 170, 12)] = RARE
    for i in range(12):
        truth[disc(140, 14 + 20 * i, 4)] = S
    truth[disc(200, 222, 26)] = S
    return truth


def objects_of(mask: np.ndarray) -> list[np.ndarray]:
    components, n = ndimage.label(mask, structure=np.ones((3, 3)))
    return [components == i for i in range(1, n + 1)]


def erode_class(truth: np.ndarray, label: int, pixels: int) -> np.ndarray:
    pred = truth.copy()
    pred[truth == label] = 0
    pred[ndimage.binary_erosion(truth == label, structure=disc(pixels, pixels, pixels,
                                                                size=2 * pixels + 1),
                                border_value=1)] = label
    return pred


def verdicts(pred: np.ndarray, truth: np.ndarray) -> dict[str, str]:
    rows = inspect_masks([(pred, truth)] * 2, CLASSES).classes
    return {row["class"]: row["verdict"] for row in rows}


def assert_others_fine(found: dict[str, str], planted: str) -> None:
    for name, verdict in found.items():
        if name != planted:
            assert verdict == "fine", (name, verdict)


def test_eroding_objects_by_two_pixels_is_diagnosed_as_boundary():
    truth = planted_truth()
    found = verdicts(erode_class(truth, A, 2), truth)
    assert found["A"] == "boundary"
    assert_others_fine(found, "A")


def test_dropping_every_small_object_is_diagnosed_as_small_object_recall():
    truth = planted_truth()
    pred = truth.copy()
    for obj in objects_of(truth == S):
        if obj.sum() < 200:
            pred[obj] = 0
    found = verdicts(pred, truth)
    assert found["S"] == "small objects"
    assert_others_fine(found, "S")


def test_relabelling_forty_percent_of_a_as_b_is_diagnosed_as_confusion_with_b():
    truth = planted_truth()
    pred = truth.copy()
    for obj in objects_of(truth == A):
        cols = np.argwhere(obj)[:, 1]
        pred[obj & (np.arange(SIZE)[None, :] < np.quantile(cols, 0.4))] = B
    assert ((pred == B) & (truth == A)).sum() == pytest.approx(0.4 * (truth == A).sum(), rel=0.05)
    found = verdicts(pred, truth)
    assert found["A"] == "confusion with B"
    assert_others_fine(found, "A")


def test_shrinking_a_rare_class_everywhere_is_diagnosed_as_under_prediction():
    truth = planted_truth()
    assert (truth == RARE).mean() < 0.02
    pred = erode_class(truth, RARE, 8)
    found = verdicts(pred, truth)
    assert found["rare"] == "under-prediction"
    assert_others_fine(found, "rare")


def test_a_perfect_prediction_is_fine_everywhere_and_scores_one():
    truth = planted_truth()
    result = inspect_masks([(truth, truth)], CLASSES)
    assert all(row["verdict"] == "fine" and row["iou"] == 1.0 for row in result.classes)


@pytest.mark.parametrize("seed", range(2))
def test_the_report_is_the_same_with_scipys_distance_transform(seed, monkeypatch):
    """The inspector's distances come from OpenCV for speed; with scipy's exact transform put in
    their place, every number of the inspection must come out the same."""
    from unetseg import metrics

    rng = np.random.default_rng(seed)
    size = 120
    truth = np.zeros((size, size), dtype=int)
    for _ in range(10):
        truth[disc(*rng.uniform(-5, size + 5, 2), rng.uniform(2, 25), size=size)] = \
            rng.integers(1, 4)
    pred = np.roll(truth, (2, -3), axis=(0, 1))
    pred[disc(*rng.uniform(0, size, 2), 9, size=size)] = 3
    truth[disc(*rng.uniform(0, size, 2), 12, size=size)] = 255

    def inspection() -> dict:
        inspector = Inspector([f"c{i}" for i in range(4)], ignore_index=255)
        inspector.add(pred, truth, "a")
        inspector.add(np.flipud(pred), np.flipud(truth), "b")
        return inspector.result().to_dict()

    fast = inspection()
    monkeypatch.setattr(metrics, "_distances_at",
                        lambda region, where: ndimage.distance_transform_edt(~region)[where])
    slow = inspection()
    np.testing.assert_equal(fast, slow)
