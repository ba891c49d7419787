"""Dataset-level segmentation metrics.

`ConfusionMatrix` folds every batch into one (C, C) count matrix and computes scores from it
once, so IoU is "intersection over union of the whole dataset", never an average of per-batch
or per-image IoUs (which over-weights small images and rewards empty ones). Distributed
evaluation is a sum of matrices across ranks.

`boundary_f1` and `BoundaryF1` measure how well class contours line up, which IoU barely sees
on large objects.

Conventions: rows of the matrix are the true class, columns the predicted class. A score that
would be 0/0 is NaN, never 0: a class absent from both truth and prediction has NaN IoU and
Dice, and the means (``miou``, ``mdice``) skip NaNs.

``ignore_index`` follows one rule in every metric here, in `unetseg.losses` and in the data
loaders: the default is 255, and target pixels labelled ``ignore_index`` count nowhere; ``None``
means every pixel counts (then a 255 in the target is out of range for `ConfusionMatrix`).
Set it to the dataset's void label where that is not 255 (CamVid's 11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from scipy import ndimage

__all__ = ["Scores", "ConfusionMatrix", "boundary_f1", "BoundaryF1", "labels_from_logits",
           "scores_from_matrix", "within", "distances_up_to"]


@dataclass(frozen=True)
class Scores:
    """Scores from a confusion matrix. Per-class values are float64 tensors of shape (C,).

    Attributes:
        pixel_accuracy: correct pixels / counted pixels (NaN if none were counted).
        iou: TP / (TP + FP + FN) per class.
        dice: 2TP / (2TP + FP + FN) per class; equals 2 * iou / (1 + iou).
        precision: TP / (TP + FP): NaN for a class never predicted.
        recall: TP / (TP + FN): NaN for a class absent from the truth.
        miou, mdice: means of ``iou`` and ``dice`` over the classes that are not NaN.
        matrix: int64 (C, C) counts, rows = true class, columns = predicted class.
    """

    pixel_accuracy: float
    iou: torch.Tensor
    dice: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    miou: float
    mdice: float
    matrix: torch.Tensor

    def per_class(self, class_names: list[str] | None = None) -> list[dict[str, float | str]]:
        """One row per class (name, iou, dice, precision, recall), ready for a table or JSON."""
        names = class_names or [str(c) for c in range(len(self.iou))]
        return [
            {"class": name, "iou": self.iou[c].item(), "dice": self.dice[c].item(),
             "precision": self.precision[c].item(), "recall": self.recall[c].item()}
            for c, name in enumerate(names)
        ]


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Element-wise division in float64 where 0/0 is NaN (and x/0 cannot occur for counts)."""
    numerator, denominator = numerator.double(), denominator.double()
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1), torch.nan)


def scores_from_matrix(matrix: torch.Tensor) -> Scores:
    """All `Scores` of a (C, C) confusion matrix (rows truth, columns prediction)."""
    matrix = matrix.detach().cpu().long()
    tp = matrix.diagonal()
    predicted = matrix.sum(0)   # TP + FP per class
    actual = matrix.sum(1)      # TP + FN per class
    union = predicted + actual - tp
    iou = _divide(tp, union)
    dice = _divide(2 * tp, predicted + actual)
    total = matrix.sum()
    return Scores(
        pixel_accuracy=_divide(tp.sum(), total).item(),
        iou=iou,
        dice=dice,
        precision=_divide(tp, predicted),
        recall=_divide(tp, actual),
        miou=iou.nanmean().item(),
        mdice=dice.nanmean().item(),
        matrix=matrix,
    )


def labels_from_logits(scores: torch.Tensor, class_dim: int = 1,
                       num_classes: int | None = None) -> torch.Tensor:
    """Class indices from logits or probabilities, the one place they are turned into labels.

    ``scores`` has a class dimension at ``class_dim`` (1 for a batch (N, C, H, W), 0 for one
    image (C, H, W)); the result drops it. A single channel is a binary model's one logit:
    class 1 where it is above 0 (an argmax over one channel would call every pixel class 0),
    unless ``num_classes`` says there is only one class. Otherwise the argmax over the
    classes (ties go to the lower class, as torch's argmax).
    """
    if scores.shape[class_dim] == 1 and num_classes != 1:
        return (scores.squeeze(class_dim) > 0).long()
    return scores.argmax(dim=class_dim)


def _as_labels(pred_or_logits: torch.Tensor, target: torch.Tensor,
               num_classes: int) -> torch.Tensor:
    """Class indices from indices shaped like the target, or from logits/probabilities with
    one more dimension: (N, C, H, W) for an (N, H, W) target, (C, H, W) for an (H, W) one."""
    if pred_or_logits.ndim == target.ndim + 1:
        return labels_from_logits(pred_or_logits, 0 if target.ndim == 2 else 1, num_classes)
    return pred_or_logits


def _histogram(bins: torch.Tensor, length: int, may_sync: bool = True) -> torch.Tensor:
    """Counts of each value of ``bins`` (all in [0, length)). CUDA's bincount reads the
    largest bin back to size its output; where that stall is unwanted, an ``index_add_``."""
    if may_sync or bins.device.type == "cpu":
        return torch.bincount(bins, minlength=length)
    counts = torch.zeros(length, dtype=torch.int64, device=bins.device)
    return counts.index_add_(0, bins.long(), torch.ones_like(bins, dtype=torch.int64))


class ConfusionMatrix:
    """A (C, C) pixel confusion matrix accumulated over batches, on the inputs' device.

    ``update`` adds a batch with one ``bincount``; ``compute`` turns the counts into `Scores`;
    ``all_reduce`` sums the counts over torch.distributed ranks; ``merge`` adds another matrix.

    Args:
        num_classes: C; predictions and targets must lie in [0, C).
        ignore_index: target label of pixels that count nowhere (default 255; CamVid's void
            is 11); None if every pixel counts.
        device: where the counts start; they follow the inputs' device on ``update``.
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = 255,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, found {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred_or_logits: torch.Tensor, target: torch.Tensor,
               check: bool = True) -> None:
        """Add a batch: class indices (N, H, W) or logits (N, C, H, W), and target (N, H, W).

        Any matching shapes work (a single (H, W) image too); logits are recognised by having
        one more dimension than the target. Labels may have any integer dtype (float and bool
        labels are truncated to int64 first). A target equal to ``ignore_index`` counts
        nowhere, whatever is predicted there, even when ``ignore_index`` lies in [0, C).
        Raises ValueError, naming the offending values, if any other pixel's target or
        prediction lies outside [0, C); a refused batch adds nothing. With ``check=False``
        (labels already checked, as the training loop's are) nothing is read back to the host,
        so a GPU is not stalled; labels must then lie in [0, C) or equal ``ignore_index``.
        """
        pred = _as_labels(pred_or_logits, target, self.num_classes)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred_or_logits.shape)} does not match target "
                f"{tuple(target.shape)}: expected the same shape, or logits with a class "
                f"dimension at 1"
            )
        pred, target = self._integer(pred.reshape(-1)), self._integer(target.reshape(-1))
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
        if target.numel() == 0:
            return
        counts = self._narrow_counts(pred, target, check)
        if counts is None:
            counts = self._exact_counts(pred, target, check)
        self.matrix += counts

    @staticmethod
    def _integer(labels: torch.Tensor) -> torch.Tensor:
        """Integer labels as they are; float and bool labels truncated to int64."""
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            return labels.long()
        return labels

    def _narrow_counts(self, pred: torch.Tensor, target: torch.Tensor,
                       check: bool = True) -> torch.Tensor | None:
        """The batch's (C, C) counts, built in the narrowest integer dtype that holds them;
        None when that cannot be exact (a label too large for the dtype, or an ignore_index
        far from [0, C)), for `_exact_counts` to do.

        Clamping maps every invalid label onto a row or column just outside the classes
        (-1 or C for a prediction; ``lo`` or ``hi`` for a target), and the ignore label keeps
        a row of its own, so one histogram of (target, prediction) pairs holds the matrix, the
        invalid pixels and the ignored ones, with no boolean mask and no int64 copy of the
        batch (which costs more than the rest together). One read-back per batch brings the
        invalid count and, for labels of a wider dtype than the bins, their range; none
        without ``check`` (labels known to lie in range, which no cast can then wrap).
        """
        c, ignore = self.num_classes, self.ignore_index
        lo, hi = (-1, c) if ignore is None else (min(-1, ignore - 1), max(c, ignore + 1))
        rows, cols = hi - lo + 1, c + 2
        if rows * cols > max(2**16, 4 * cols * cols):
            return None
        # Bin = column + cols * row + offset, in [0, rows * cols); before the offset it
        # reaches down to cols * lo - 1.
        work = next(dtype for dtype in (torch.int16, torch.int32, torch.int64)
                    if (rows - lo + 1) * cols < torch.iinfo(dtype).max)
        narrow = torch.iinfo(work)
        codes, ranges = [], []
        for labels, low, high in ((target, lo, hi), (pred, -1, c)):
            wide = torch.iinfo(labels.dtype)
            if check and (wide.min < narrow.min or wide.max > narrow.max):   # may wrap
                ranges.append(torch.stack(labels.aminmax()).to(torch.int64))
            codes.append(labels.to(work).clamp_(low, high))
        bins = torch.add(codes[1], codes[0], alpha=cols).add_(1 - lo * cols)
        grid = _histogram(bins, rows * cols, check).view(rows, cols)
        if ignore is not None:
            grid[ignore - lo] = 0                 # ignored pixels count nowhere
        matrix = grid[-lo:c - lo, 1:c + 1]
        if not check:
            return matrix
        found = torch.cat([(grid.sum() - matrix.sum()).view(1), *ranges]).tolist()
        if any(not narrow.min <= value <= narrow.max for value in found[1:]):
            return None
        if found[0]:
            self._refuse(pred, target)
        return matrix

    def _exact_counts(self, pred: torch.Tensor, target: torch.Tensor,
                      check: bool = True) -> torch.Tensor:
        """The batch's (C, C) counts computed in int64, for labels `_narrow_counts` cannot
        take: each pixel's bin is its (target, prediction) pair, or one of two extra bins for
        ignored and invalid pixels."""
        pred, target = pred.long(), target.long()
        c = self.num_classes
        valid = (target >= 0) & (target < c) & (pred >= 0) & (pred < c)
        ignored = (target == self.ignore_index if self.ignore_index is not None
                   else torch.zeros_like(valid))
        bins = torch.where(valid & ~ignored, target * c + pred, c * c + 1 - ignored.long())
        counts = _histogram(bins, c * c + 2, check)
        if check and counts[c * c + 1].item():            # invalid and not ignored
            self._refuse(pred, target)
        return counts[: c * c].view(c, c)

    def _refuse(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = pred.long(), target.long()
        c = self.num_classes
        fine = (target >= 0) & (target < c) & (pred >= 0) & (pred < c)
        if self.ignore_index is not None:
            fine |= target == self.ignore_index
        bad = ~fine
        raise ValueError(
            f"labels must lie in [0, {c}) or equal ignore_index="
            f"{self.ignore_index}; found target values {torch.unique(target[bad]).tolist()[:10]}"
            f" and predicted values {torch.unique(pred[bad]).tolist()[:10]} among the "
            f"offending pixels")

    def compute(self) -> Scores:
        return scores_from_matrix(self.matrix)

    def reset(self) -> None:
        self.matrix.zero_()

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (same classes and ignore index) into this one."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a matrix of {other.num_classes} classes (ignore_index="
                f"{other.ignore_index}) into one of {self.num_classes} (ignore_index="
                f"{self.ignore_index})"
            )
        self.matrix += other.matrix.to(self.matrix.device)

    def all_reduce(self) -> None:
        """Sum the counts over all ranks; a no-op unless torch.distributed is initialised."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)


# --- Boundary F1 --------------------------------------------------------------------------

def default_tolerance(height: int, width: int) -> float:
    """0.75% of the image diagonal, at least 1 pixel (the BF score's usual setting)."""
    return max(1.0, 0.0075 * math.hypot(height, width))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it. The image edge is not a boundary:
    a class that runs off the image has no contour there."""
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def within(region: np.ndarray, radius: float, where: np.ndarray) -> np.ndarray:
    """Boolean (H, W): the pixels of ``where`` within Euclidean ``radius`` of ``region``
    (False elsewhere). Same crop as `distances_up_to`, without a float image around it."""
    out = np.zeros(where.shape, dtype=bool)
    box = _grown_box(where, radius)
    if box is not None and region[box].any():
        near = np.zeros(out[box].shape, dtype=bool)
        near[where[box]] = _distances_at(region[box], where[box]) <= radius
        out[box] = near
    return out


def distances_up_to(region: np.ndarray, radius: float, where: np.ndarray) -> np.ndarray:
    """float (H, W): at the pixels of ``where``, the Euclidean distance to the nearest pixel of
    ``region`` where it is at most ``radius`` (larger values may be inf); inf elsewhere.

    Exact, and cheap for small ``where``: the distance transform runs only on the bounding box
    of ``where`` grown by ``radius``, which holds every pixel of ``region`` that close.
    """
    out = np.full(where.shape, np.inf)
    box = _grown_box(where, radius)
    if box is not None and region[box].any():
        crop = out[box]
        crop[where[box]] = _distances_at(region[box], where[box])
        out[box] = crop
    return out


def _distances_at(region: np.ndarray, where: np.ndarray) -> np.ndarray:
    """float64 (N,): the exact Euclidean distance from each True pixel of ``where`` (row-major
    order) to the nearest True pixel of ``region`` (which must hold one): the values scipy's
    ``distance_transform_edt(~region)[where]`` gives.

    OpenCV's exact transform (Felzenszwalb and Huttenlocher's algorithm) is about five times
    faster than scipy's, and the boundary measures run it thousands of times per dataset. It
    returns float32; a squared pixel distance is an integer, so rounding the square recovers
    the float64 value, and thresholds such as ``<= 2.0`` compare as they would with scipy.
    """
    import cv2  # installed with albumentations; imported here to keep start-up light

    far = np.logical_not(region).view(np.uint8)                # zero on the region
    distance = cv2.distanceTransform(far, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[where]
    distance = distance.astype(np.float64)
    return np.sqrt(np.rint(distance * distance))


def _grown_box(mask: np.ndarray, margin: float) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``margin`` + 1 pixels, within the image."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    grow = int(math.ceil(margin)) + 1
    return (slice(max(rows[0] - grow, 0), rows[-1] + grow + 1),
            slice(max(cols[0] - grow, 0), cols[-1] + grow + 1))


def _boundary_f1_image(
    pred: np.ndarray, target: np.ndarray, num_classes: int,
    tolerance: float, valid: np.ndarray,
) -> np.ndarray:
    """Per-class BF score of one (H, W) image; NaN where neither map has a boundary of it."""
    scores = np.full(num_classes, np.nan)
    present = np.union1d(np.unique(pred), np.unique(target))
    for c in present[(present >= 0) & (present < num_classes)]:
        pred_edge = _boundary(pred == c) & valid
        true_edge = _boundary(target == c)
        n_pred, n_true = pred_edge.sum(), true_edge.sum()
        if n_pred == 0 and n_true == 0:
            continue
        if n_pred == 0 or n_true == 0:
            scores[c] = 0.0
            continue
        # The share of each map's boundary pixels within the tolerance of the other's.
        precision = within(true_edge, tolerance, pred_edge).sum() / n_pred
        recall = within(pred_edge, tolerance, true_edge).sum() / n_true
        total = precision + recall
        scores[c] = 0.0 if total == 0 else 2 * precision * recall / total
    return scores


def _to_numpy_labels(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def boundary_f1(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int,
    tolerance: float | None = None, ignore_index: int | None = 255,
) -> np.ndarray:
    """Per-class boundary F1 (the BF score of Csurka et al., BMVC 2013), averaged over images.

    For each image and class, the boundary pixels of the class are found in the prediction
    and in the truth (pixels of the class with a 4-neighbour of another label; the image edge
    is not a boundary). Precision is the share of predicted boundary pixels within
    ``tolerance`` pixels (Euclidean) of a true boundary pixel, recall the share of true
    boundary pixels within ``tolerance`` of a predicted one, and the score their harmonic mean.
    A class with a boundary in only one of the two scores 0; with a boundary in neither it is
    NaN for that image. Scores are then averaged per class over the images where they exist.

    Args:
        pred: class indices (H, W) or (N, H, W).
        target: class indices of the same shape.
        num_classes: C.
        tolerance: match distance in pixels; default 0.75% of the image diagonal, >= 1.
        ignore_index: target label whose pixels hold no predicted boundary that counts
            (default 255); None if every pixel counts.

    Returns:
        float64 array (C,), NaN for a class with no boundary in any image.
    """
    meter = BoundaryF1(num_classes, tolerance, ignore_index)
    meter.update(pred, target)
    return meter.compute()


class BoundaryF1:
    """Streaming `boundary_f1` over a dataset: per-class sum of image scores and their count.

    ``update`` takes class indices (N, H, W) or logits (N, C, H, W) and targets (N, H, W), as
    tensors or arrays (with two classes, one logit channel is a binary model's, read as
    class 1 above 0, as `ConfusionMatrix` reads it); ``compute`` returns the per-class mean;
    ``all_reduce`` sums the two accumulators across torch.distributed ranks. ``ignore_index``
    (default 255; None if every pixel counts) is as in `boundary_f1`.
    """

    def __init__(
        self, num_classes: int, tolerance: float | None = None, ignore_index: int | None = 255,
    ) -> None:
        self.num_classes = num_classes
        self.tolerance = tolerance
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.total = np.zeros(self.num_classes)
        self.count = np.zeros(self.num_classes, dtype=np.int64)

    def update(
        self, pred_or_logits: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray
    ) -> None:
        if pred_or_logits.ndim == np.ndim(target) + 1:   # scores: as `ConfusionMatrix` reads them
            pred_or_logits = _as_labels(torch.as_tensor(pred_or_logits), torch.as_tensor(target),
                                        self.num_classes)
        target = _to_numpy_labels(target)
        pred = _to_numpy_labels(pred_or_logits)
        if pred.shape != target.shape or target.ndim not in (2, 3):
            raise ValueError(
                f"boundary F1 expects prediction and target of shape (H, W) or (N, H, W), "
                f"found {pred.shape} and {target.shape}"
            )
        if target.ndim == 2:
            pred, target = pred[None], target[None]
        height, width = target.shape[1:]
        tolerance = (self.tolerance if self.tolerance is not None
                     else default_tolerance(height, width))
        for p, t in zip(pred, target):
            valid = np.ones_like(t, dtype=bool) if self.ignore_index is None \
                else t != self.ignore_index
            scores = _boundary_f1_image(p, t, self.num_classes, tolerance, valid)
            seen = ~np.isnan(scores)
            self.total[seen] += scores[seen]
            self.count[seen] += 1

    def compute(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    def merge(self, other: BoundaryF1) -> None:
        """Add another accumulator's image scores (same classes) into this one."""
        mine = (self.num_classes, self.tolerance, self.ignore_index)
        theirs = (other.num_classes, other.tolerance, other.ignore_index)
        if theirs != mine:
            raise ValueError(
                f"cannot merge boundary F1 with (classes, tolerance, ignore_index) = {theirs} "
                f"into one with {mine}"
            )
        self.total += other.total
        self.count += other.count

    def all_reduce(self) -> None:
        """Sum the accumulators over all ranks; a no-op unless torch.distributed is initialised."""
        if dist.is_available() and dist.is_initialized():
            # NCCL reduces only CUDA tensors; gloo only CPU ones.
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            state = torch.from_numpy(np.concatenate([self.total, self.count.astype(np.float64)]))
            state = state.to(device)
            dist.all_reduce(state, op=dist.ReduceOp.SUM)
            state = state.cpu().numpy()
            self.total = state[: self.num_classes].copy()
            self.count = state[self.num_classes:].round().astype(np.int64)
