"""The mask inspector: per class, why the score is what it is.

From predicted and true class-index masks (numpy only, no plotting) it measures, per class:

- **distribution**: share of the counted pixels in truth and in prediction, and their ratio
  (< 1: the class is under-predicted);
- **overlap**: IoU, Dice, precision and recall at the dataset level (one confusion matrix), and
  the spread of per-image IoU (median and 10th percentile);
- **boundaries**: boundary F1 (`unetseg.metrics`), the share of the class's misclassified
  pixels within ``b`` pixels of a true boundary of the class (b = 2 px and 0.5% of the image
  diagonal), and Boundary IoU (Cheng et al., CVPR 2021: IoU of the mask pixels within
  2% of the diagonal of each mask's contour);
- **objects**: connected components (8-connected) of the class in truth and prediction; object
  recall by size (small / medium / large by area; COCO's 32^2 and 96^2 px thresholds scaled by
  the image area over 640 x 480); a true object counts as detected when at least half its
  pixels are predicted as the class; fragmentation (predicted components per detected object);
  false-positive blobs (predicted components touching no true object of the class);
- **error breakdown** after Bernhard et al., "What's Outside the Intersection?" (WACV 2024):
  each false-positive and false-negative pixel of the class gets one label. *Segment*: the
  whole predicted (FP) or true (FN) component it lies in holds no true positive — a spurious or
  missed object. *Boundary*: otherwise, if it lies within d of the true-positive region and
  within d of the true-negative region (d = 1% of the image diagonal, at least 1 px, Euclidean)
  — the two agree on the object and disagree only on where its edge runs. *Extent*: the rest.
  IoU plus the six shares (each count over TP + FP + FN) is exactly 1. The false pixels are also
  split by the other label involved (confusion with class k);
- a **verdict**: the dominant cause — boundary accuracy, small-object recall, imbalance /
  under-prediction, confusion with another class — or *fine*, decided by the documented
  constants below, with one suggested remedy each.

Use `Inspector` to stream image pairs (``add``), then ``result()``; or `inspect_masks` on lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from scipy import ndimage

from .metrics import BoundaryF1, ConfusionMatrix, Scores, distances_up_to, within

__all__ = ["Inspector", "Inspection", "inspect_masks", "error_breakdown", "error_masks",
           "error_map", "ERROR_MAP_CODES", "boundary_iou",
           "object_sizes", "ERROR_TYPES", "VERDICT_RULES", "REMEDIES"]

ERROR_TYPES = ("fp_boundary", "fn_boundary", "fp_extent", "fn_extent", "fp_segment",
               "fn_segment")

# --- the verdict's constants (documented in docs/skills/segmentation-mask-inspector.md) ------
FINE_IOU = 0.90            # at or above: the class is fine
BOUNDARY_SHARE = 0.50      # boundary errors at least this share of the class's errors
SMALL_RECALL = 0.50        # small-object recall below this ...
SMALL_GAP = 0.30           # ... and at least this much below the larger objects' recall ...
SMALL_MIN_OBJECTS = 3      # ... over at least this many small true objects, ...
SMALL_ERROR_SHARE = 0.25   # ... and whole missed objects are at least this share of the errors
RARE_SHARE = 0.02          # a class under 2% of the true pixels is rare ...
UNDER_RATIO = 0.70         # ... and under-predicted when predicted / true share is below this
CONFUSION_SHARE = 0.50     # one other class takes at least half of the class's false pixels

VERDICT_RULES = (
    ("boundary", f"boundary errors >= {BOUNDARY_SHARE:.0%} of the class's errors"),
    ("small objects", f"small-object recall < {SMALL_RECALL:.0%} and >= {SMALL_GAP:.0%} below "
                      f"larger objects' (>= {SMALL_MIN_OBJECTS} small objects), and missed "
                      f"objects >= {SMALL_ERROR_SHARE:.0%} of the errors"),
    ("under-prediction", f"true share < {RARE_SHARE:.0%} and predicted/true share < "
                         f"{UNDER_RATIO}"),
    ("confusion", f"one other class involved in >= {CONFUSION_SHARE:.0%} of the false pixels"),
)
REMEDIES = {
    "fine": "nothing needed",
    "boundary": "a boundary-aware loss (or a larger Dice weight), a larger decoder or a higher "
                "input resolution",
    "small objects": "raise the input resolution or predict in tiles instead of downscaling; "
                     "crop training samples around small objects",
    "under-prediction": "add Dice to the loss or median-frequency class weights; sample more "
                        "images that contain the class",
    "confusion": "more training examples of the confused pair, and check their labels",
    "mixed": "no single cause dominates: look at the error breakdown and the worst images",
}
# COCO's area thresholds, defined on images of about 640 x 480.
COCO_SMALL, COCO_MEDIUM, COCO_IMAGE_AREA = 32**2, 96**2, 640 * 480
SIZE_BUCKETS = ("small", "medium", "large")
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --- pure per-image measurements -------------------------------------------------------------

def error_distance(height: int, width: int) -> float:
    """d of the error breakdown: 1% of the image diagonal, at least 1 pixel."""
    return max(1.0, 0.01 * math.hypot(height, width))


def error_masks(pred: np.ndarray, truth: np.ndarray, label: int, d: float,
                valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Boolean masks of TP and of the six error types of class ``label`` in one image.

    See the module docstring for the definitions. ``valid`` masks out ignored pixels, which
    count as neither class.
    """
    valid = np.ones(truth.shape, dtype=bool) if valid is None else valid
    is_true, is_pred = (truth == label) & valid, (pred == label) & valid
    tp, fp, fn = is_true & is_pred, is_pred & ~is_true, is_true & ~is_pred
    masks = {"tp": tp}
    empty = np.zeros(truth.shape, dtype=bool)
    for name in ERROR_TYPES:
        masks[name] = empty
    if not (fp.any() or fn.any()):
        return masks
    tn = valid & ~is_true & ~is_pred
    errors = fp | fn            # the only pixels whose distances are read below
    near_both = within(tp, d, errors) & within(tn, d, errors)
    for kind, errors, region in (("fp", fp, is_pred), ("fn", fn, is_true)):
        if not errors.any():
            continue
        components, _ = ndimage.label(region, structure=EIGHT_CONNECTED)
        # Components of the class's region (predicted for FP, true for FN) that hold a TP.
        with_tp = np.zeros(components.max() + 1, dtype=bool)
        with_tp[np.unique(components[tp])] = True
        with_tp[0] = False
        segment = errors & ~with_tp[components]
        boundary = errors & ~segment & near_both
        masks[f"{kind}_segment"] = segment
        masks[f"{kind}_boundary"] = boundary
        masks[f"{kind}_extent"] = errors & ~segment & ~boundary
    return masks


def error_breakdown(pred: np.ndarray, truth: np.ndarray, label: int, d: float,
                    valid: np.ndarray | None = None) -> dict[str, int]:
    """Pixel counts of TP and of the six error types of class ``label`` in one image."""
    return {name: int(mask.sum()) for name, mask in error_masks(pred, truth, label, d,
                                                                 valid).items()}


ERROR_MAP_CODES = {"correct": 0, "ignored": 1, "boundary": 2, "extent": 3, "segment": 4}


def error_map(pred: np.ndarray, truth: np.ndarray, num_classes: int,
              ignore_index: int | None = 255) -> np.ndarray:
    """uint8 (H, W) map of `ERROR_MAP_CODES`: every wrong pixel is a false negative of its true
    class and is coded by that error's type (boundary, extent or segment)."""
    height, width = truth.shape
    valid = np.ones(truth.shape, dtype=bool) if ignore_index is None else truth != ignore_index
    out = np.where(valid, ERROR_MAP_CODES["correct"], ERROR_MAP_CODES["ignored"]).astype(np.uint8)
    d = error_distance(height, width)
    for label in np.unique(truth[valid & (truth != pred)]):
        if 0 <= label < num_classes:
            masks = error_masks(pred, truth, int(label), d, valid)
            for kind in ("boundary", "extent", "segment"):
                out[masks[f"fn_{kind}"]] = ERROR_MAP_CODES[kind]
    return out


def _inner_band(mask: np.ndarray, d: float) -> np.ndarray:
    """Mask pixels within ``d`` of the mask's contour (the image edge is no contour): those
    within ``d`` of a pixel outside the mask, inside the image."""
    return within(~mask, d, mask)


def boundary_iou(pred: np.ndarray, truth: np.ndarray, label: int,
                 d: float | None = None, valid: np.ndarray | None = None) -> tuple[int, int]:
    """(intersection, union) of the boundary bands of class ``label`` (Cheng et al. 2021):
    the pixels of each mask within ``d`` (default 2% of the diagonal) of its contour."""
    height, width = truth.shape
    d = max(1.0, 0.02 * math.hypot(height, width)) if d is None else d
    valid = np.ones(truth.shape, dtype=bool) if valid is None else valid
    true_band = _inner_band((truth == label) & valid, d)
    pred_band = _inner_band((pred == label) & valid, d)
    return int((true_band & pred_band).sum()), int((true_band | pred_band).sum())


def size_thresholds(height: int, width: int,
                    small: float = COCO_SMALL, medium: float = COCO_MEDIUM) -> tuple[float, float]:
    """Area thresholds (px) of small and medium objects, scaled from 640 x 480 images."""
    scale = height * width / COCO_IMAGE_AREA
    return small * scale, medium * scale


def object_sizes(areas: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """Bucket index (0 small, 1 medium, 2 large) of each area."""
    return np.digitize(areas, thresholds, right=False)


@dataclass
class _ObjectCounts:
    true_objects: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    detected: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    fragments: int = 0               # predicted components overlapping detected objects
    false_blobs: int = 0
    predicted_objects: int = 0


def _objects(pred: np.ndarray, truth: np.ndarray, label: int, valid: np.ndarray,
             thresholds: tuple[float, float], counts: _ObjectCounts) -> None:
    is_true, is_pred = (truth == label) & valid, (pred == label) & valid
    true_cc, n_true = ndimage.label(is_true, structure=EIGHT_CONNECTED)
    pred_cc, n_pred = ndimage.label(is_pred, structure=EIGHT_CONNECTED)
    counts.predicted_objects += n_pred
    if n_true:
        areas = np.bincount(true_cc.ravel(), minlength=n_true + 1)[1:]
        hit = np.bincount(true_cc[is_pred].ravel(), minlength=n_true + 1)[1:]
        detected = hit >= 0.5 * areas
        buckets = object_sizes(areas, thresholds)
        counts.true_objects += np.bincount(buckets, minlength=3)
        counts.detected += np.bincount(buckets[detected], minlength=3)
        # Distinct (true object, predicted component) pairs that overlap, counted per object.
        both = (true_cc > 0) & (pred_cc > 0)
        pairs = np.unique(true_cc[both] * (n_pred + 1) + pred_cc[both])
        per_object = np.bincount(pairs // (n_pred + 1), minlength=n_true + 1)[1:]
        counts.fragments += int(per_object[detected].sum())
    if n_pred:
        touching = np.unique(pred_cc[is_true & is_pred])
        counts.false_blobs += n_pred - len(touching[touching > 0])


def _class_box(of_class: np.ndarray, valid: np.ndarray, reach: float) -> tuple[slice, slice]:
    """The bounding box of a class's counted pixels grown by ``reach`` + 2 pixels (within the
    image): it holds every pixel within ``reach`` of them, so distances, components and bands
    taken on the crop are those of the whole image. The crop's own edge is never taken for a
    contour: the class's pixels stay more than ``reach`` away from it, except where it is the
    image's edge."""
    counted = of_class & valid
    rows, cols = np.flatnonzero(counted.any(1)), np.flatnonzero(counted.any(0))
    if rows.size == 0:                     # only ignored pixels: nothing of it is counted
        return slice(0, 0), slice(0, 0)
    grow = math.ceil(reach) + 2
    return (slice(max(rows[0] - grow, 0), rows[-1] + grow + 1),
            slice(max(cols[0] - grow, 0), cols[-1] + grow + 1))


# --- the streaming inspector ---------------------------------------------------------------

@dataclass
class Inspection:
    """The inspector's findings: per-class rows (plain dicts, JSON-ready) and image scores."""

    classes: list[dict[str, Any]]
    image_names: list[str]
    image_miou: list[float]
    scores: Scores                   # the dataset-level scores of `unetseg.metrics`
    settings: dict[str, Any]
    pixels: int = 0                  # every truth pixel seen, ignored ones included
    ignored_pixels: int = 0          # truth pixels equal to ignore_index: counted nowhere

    @property
    def confusion(self) -> np.ndarray:
        """(C, C) pixel counts, rows = truth, columns = prediction."""
        return self.scores.matrix.numpy()

    @property
    def ignored_share(self) -> float:
        """Share of the truth pixels that are ignored; NaN before any pixel."""
        return self.ignored_pixels / self.pixels if self.pixels else float("nan")

    @property
    def miou(self) -> float:
        return self.scores.miou

    def worst_images(self, k: int = 4) -> list[int]:
        """Indices of the ``k`` images with the lowest mean IoU over their classes."""
        order = np.argsort(np.nan_to_num(np.asarray(self.image_miou), nan=np.inf))
        return [int(i) for i in order[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.miou, "settings": self.settings, "pixels": self.pixels,
                "ignored_pixels": self.ignored_pixels, "ignored_share": self.ignored_share,
                "classes": self.classes,
                "confusion_matrix": self.confusion.tolist(),
                "images": [{"name": n, "miou": m} for n, m in zip(self.image_names,
                                                                    self.image_miou)]}


class Inspector:
    """Accumulates everything the inspection needs over a dataset, one image pair at a time.

    Args:
        class_names: names of classes 0..C-1.
        ignore_index: true label of pixels that count nowhere.
        size_thresholds: (small, medium) object areas in px; default COCO's scaled per image.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int | None = 255,
                 size_thresholds: tuple[float, float] | None = None) -> None:
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.fixed_thresholds = size_thresholds
        c = len(self.class_names)
        # The dataset-level counts and boundary F1 are `unetseg.metrics`'s: `evaluate` reads
        # them from here when it inspects, so its scores and the inspection's are one.
        self.matrix = ConfusionMatrix(c, ignore_index)
        self.boundary = BoundaryF1(c, ignore_index=ignore_index)
        self.breakdown = np.zeros((c, len(ERROR_TYPES) + 1), dtype=np.int64)   # + TP
        self.near_boundary = np.zeros((c, 2), dtype=np.int64)    # errors within b1, b2
        self.errors = np.zeros(c, dtype=np.int64)
        self.band = np.zeros((c, 2), dtype=np.int64)             # boundary IoU: inter, union
        self.objects = [_ObjectCounts() for _ in range(c)]
        self.image_iou: list[np.ndarray] = []
        self.image_names: list[str] = []
        self.pixels = 0
        self.ignored_pixels = 0

    def add(self, pred: np.ndarray, truth: np.ndarray, name: str | None = None) -> None:
        """Fold in one image: class-index arrays of the same (H, W)."""
        pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
        if pred.shape != truth.shape or truth.ndim != 2:
            raise ValueError(f"{name or 'image'}: prediction {pred.shape} and truth "
                             f"{truth.shape} must be the same (H, W)")
        valid = np.ones(truth.shape, dtype=bool) if self.ignore_index is None \
            else truth != self.ignore_index
        image = ConfusionMatrix(len(self.class_names), self.ignore_index)
        try:
            image.update(torch.from_numpy(pred), torch.from_numpy(truth))
        except ValueError as error:
            raise ValueError(f"{name or 'image'}: {error}") from None
        height, width = truth.shape
        self.pixels += truth.size
        self.ignored_pixels += truth.size - int(valid.sum())
        self.matrix.merge(image)
        self.boundary.update(pred, truth)
        matrix = image.matrix.numpy()
        d = error_distance(height, width)
        b_near = (2.0, max(1.0, 0.005 * math.hypot(height, width)))
        band = max(1.0, 0.02 * math.hypot(height, width))        # boundary IoU's d
        thresholds = self.fixed_thresholds or size_thresholds(height, width)
        present = np.flatnonzero(matrix.sum(0) + matrix.sum(1))
        # Every measure of a class reads pixels within the largest distance above of the
        # class's true or predicted pixels; on that crop of the image they come out the same,
        # and a pole or a sign is a small crop.
        reach = max(d, band, *b_near)
        for label in present:
            box = _class_box((truth == label) | (pred == label), valid, reach)
            p, t, v = pred[box], truth[box], valid[box]
            counts = error_breakdown(p, t, label, d, v)
            self.breakdown[label] += [counts[t] for t in ERROR_TYPES] + [counts["tp"]]
            self._near_true_boundary(p, t, label, v, b_near)
            inter, union = boundary_iou(p, t, label, band, v)
            self.band[label] += (inter, union)
            _objects(p, t, label, v, thresholds, self.objects[label])
        self.image_iou.append(image.compute().iou.numpy())
        self.image_names.append(name or f"image {len(self.image_names)}")

    def _near_true_boundary(self, pred, truth, label, valid, b_near) -> None:
        is_true, is_pred = (truth == label) & valid, (pred == label) & valid
        errors = is_true ^ is_pred
        count = int(errors.sum())
        if not count:
            return
        self.errors[label] += count
        # Distance to the true boundary: to the nearest pixel on the other side of it.
        missed, extra = errors & is_true, errors & ~is_true
        reach = max(b_near)
        distance = np.minimum(distances_up_to(~is_true, reach, missed),
                              distances_up_to(is_true, reach, extra))
        for slot, b in enumerate(b_near):
            self.near_boundary[label, slot] += int((distance <= b).sum())

    def result(self) -> Inspection:
        if not self.image_names:
            raise ValueError("the inspector saw no images")
        scores = self.matrix.compute()
        boundary_f1 = self.boundary.compute()
        rows = [self._class_row(c, scores, boundary_f1[c]) for c in range(len(self.class_names))]
        iou = np.vstack(self.image_iou)
        miou = [float(np.nanmean(r)) if not np.isnan(r).all() else float("nan") for r in iou]
        settings = {"error_distance": "1% of the image diagonal (>= 1 px)",
                    "boundary_iou_distance": "2% of the image diagonal",
                    "near_boundary": ["2 px", "0.5% of the image diagonal"],
                    "object_sizes": (list(self.fixed_thresholds) if self.fixed_thresholds
                                     else "COCO 32^2 / 96^2 px scaled by image area / 640x480"),
                    "ignore_index": self.ignore_index,
                    "rules": [f"{name}: {rule}" for name, rule in VERDICT_RULES],
                    "fine_iou": FINE_IOU}
        return Inspection(rows, self.image_names, miou, scores, settings,
                          self.pixels, self.ignored_pixels)

    def _class_row(self, c: int, scores: Scores, boundary_f1: float) -> dict[str, Any]:
        matrix = scores.matrix.numpy()
        tp = int(matrix[c, c])
        fn, fp = int(matrix[c].sum()) - tp, int(matrix[:, c].sum()) - tp
        total = matrix.sum()
        true_share = matrix[c].sum() / total if total else float("nan")
        pred_share = matrix[:, c].sum() / total if total else float("nan")
        union = tp + fp + fn
        nan = float("nan")
        image_iou = np.vstack(self.image_iou)[:, c]
        image_iou = image_iou[~np.isnan(image_iou)]
        objects = self.objects[c]
        recall_by_size = {name: (float(objects.detected[i] / objects.true_objects[i])
                                 if objects.true_objects[i] else nan)
                          for i, name in enumerate(SIZE_BUCKETS)}
        errors = np.asarray(self.breakdown[c, :len(ERROR_TYPES)], dtype=np.float64)
        confusion_with = {}
        for k, name in enumerate(self.class_names):
            if k != c and (matrix[c, k] or matrix[k, c]):
                confusion_with[name] = {"missed_as": int(matrix[c, k]),
                                        "taken_from": int(matrix[k, c])}
        row = {
            "class": self.class_names[c], "index": c,
            "true_share": float(true_share), "pred_share": float(pred_share),
            "share_ratio": float(pred_share / true_share) if true_share else nan,
            "tp": tp, "fp": fp, "fn": fn,
            "iou": scores.iou[c].item(), "dice": scores.dice[c].item(),
            "precision": scores.precision[c].item(), "recall": scores.recall[c].item(),
            "image_iou_median": float(np.median(image_iou)) if image_iou.size else nan,
            "image_iou_p10": float(np.percentile(image_iou, 10)) if image_iou.size else nan,
            "boundary_f1": float(boundary_f1),
            "errors_near_boundary_2px": (self.near_boundary[c, 0] / self.errors[c]
                                         if self.errors[c] else nan),
            "errors_near_boundary_diag": (self.near_boundary[c, 1] / self.errors[c]
                                          if self.errors[c] else nan),
            "boundary_iou": (self.band[c, 0] / self.band[c, 1] if self.band[c, 1] else nan),
            "true_objects": dict(zip(SIZE_BUCKETS, objects.true_objects.tolist())),
            "object_recall": recall_by_size,
            "fragmentation": (objects.fragments / objects.detected.sum()
                              if objects.detected.sum() else nan),
            "false_positive_blobs": objects.false_blobs,
            "error_shares": {t: (float(errors[i] / union) if union else nan)
                             for i, t in enumerate(ERROR_TYPES)},
            "confusion_with": confusion_with,
        }
        row["verdict"], row["evidence"] = _verdict(row)
        row["remedy"] = REMEDIES[row["verdict"].split(" with ")[0]]
        return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}


def _verdict(row: dict[str, Any]) -> tuple[str, str]:
    """The dominant cause of a class's errors, by the rules in order, and the figures."""
    iou = row["iou"]
    if math.isnan(iou):
        return "fine", "absent from truth and prediction"
    if iou >= FINE_IOU:
        return "fine", f"IoU {iou:.3f} >= {FINE_IOU}"
    shares = row["error_shares"]
    error_total = 1.0 - iou
    boundary = (shares["fp_boundary"] + shares["fn_boundary"]) / error_total
    if boundary >= BOUNDARY_SHARE:
        return "boundary", f"boundary errors are {boundary:.0%} of the errors (IoU {iou:.3f})"
    recall, counts = row["object_recall"], row["true_objects"]
    larger = [recall[s] for s in ("medium", "large") if not math.isnan(recall[s])]
    # Only a gap to larger objects of the same class makes small objects the cause (a class
    # whose objects are all small is judged by the other rules), and only if the missed objects
    # weigh in the errors (an over-predicted class misses small fragments too).
    missed = shares["fn_segment"] / error_total
    if (counts["small"] >= SMALL_MIN_OBJECTS and recall["small"] < SMALL_RECALL
            and larger and max(larger) - recall["small"] >= SMALL_GAP
            and missed >= SMALL_ERROR_SHARE):
        return "small objects", (f"small-object recall {recall['small']:.0%} over "
                                 f"{counts['small']} objects; larger objects "
                                 + ", ".join(f"{r:.0%}" for r in larger)
                                 + f"; missed objects are {missed:.0%} of the errors")
    if row["true_share"] < RARE_SHARE and row["share_ratio"] < UNDER_RATIO:
        return "under-prediction", (f"{row['true_share']:.2%} of the pixels, predicted at "
                                    f"{row['share_ratio']:.2f}x its true share")
    false_pixels = row["fp"] + row["fn"]
    if row["confusion_with"] and false_pixels:
        name, pair = max(row["confusion_with"].items(),
                         key=lambda item: item[1]["missed_as"] + item[1]["taken_from"])
        share = (pair["missed_as"] + pair["taken_from"]) / false_pixels
        if share >= CONFUSION_SHARE:
            return f"confusion with {name}", (f"{share:.0%} of the false pixels involve {name} "
                                              f"({pair['missed_as']} missed as {name}, "
                                              f"{pair['taken_from']} taken from it)")
    dominant = max(shares, key=shares.get)
    return "mixed", f"IoU {iou:.3f}; largest error type {dominant} ({shares[dominant]:.1%})"


def inspect_masks(pairs: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                  ignore_index: int | None = 255, names: Sequence[str] | None = None,
                  size_thresholds: tuple[float, float] | None = None) -> Inspection:
    """Inspect (prediction, truth) pairs in one call; see `Inspector`."""
    inspector = Inspector(class_names, ignore_index, size_thresholds)
    for index, (pred, truth) in enumerate(pairs):
        inspector.add(pred, truth, None if names is None else names[index])
    return inspector.result()
