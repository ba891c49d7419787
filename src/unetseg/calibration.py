"""Calibration: how far a predicted probability can be trusted, and one number that fixes it.

A network trained with cross-entropy is usually over-confident: of the pixels it predicts
with probability 0.95, fewer than 95% are right. The **expected calibration error** (ECE)
measures it: pixels are binned by their confidence (the top class's probability, in 15 equal
bins as torchmetrics and Guo et al. 2017 do), and ECE is the pixel-weighted mean gap between
each bin's accuracy and its mean confidence. Per class it is the same over the pixels
predicted as that class.

**Temperature scaling** (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017)
divides the logits by one scalar T > 0 before the softmax, which changes no prediction (the
argmax is the same) but spreads or sharpens the probabilities. T is fitted after training
on the validation split: LBFGS on the negative log-likelihood of its counted pixels (ignored
ones excluded), over a uniform sample of at most `FIT_PIXELS` of them. It is applied only where
it carries over to images it was not fitted on: fitted on each half of the validation images
and scored on the other half, it must not raise their ECE (a model already calibrated gets a
T that fits the noise of its own pixels, and would be made worse on new images).

`CalibrationBins` is a metric like `unetseg.metrics.ConfusionMatrix`: ``update`` folds a
batch's probabilities into sums, ``compute`` turns them into ECE, and ranks sum them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed

__all__ = ["NUM_BINS", "FIT_PIXELS", "probabilities", "CalibrationBins", "Calibration",
           "PixelSample", "fit_temperature", "TemperatureFit", "fit_sample", "sample_logits"]

NUM_BINS = 15
# Enough pixels that the fitted T moves by less than the noise between splits, few enough to
# fit in seconds (logits of a million pixels of 12 classes: 48 MB).
FIT_PIXELS = 1_000_000


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Class probabilities (N, C, H, W) of logits (N, C, H, W) divided by ``temperature``;
    a binary model's single logit (N, 1, H, W) gives the two classes' [1 - p, p], p the
    sigmoid, in float32."""
    return two_class(logits.float()).div(temperature).softmax(1)


def two_class(logits: torch.Tensor) -> torch.Tensor:
    """Logits with one channel per class: a single binary logit z becomes (0, z), whose
    softmax is (1 - sigmoid(z), sigmoid(z)); logits of 2 or more classes are returned as
    they are."""
    if logits.shape[1] != 1:
        return logits
    return torch.cat([torch.zeros_like(logits), logits], 1)


@dataclass
class Calibration:
    """ECE over a dataset's counted pixels, per class (over the pixels predicted as that
    class; NaN where none was), and the reliability diagram's bins: pixels, mean confidence
    and accuracy per bin (NaN in an empty bin)."""

    ece: float
    class_ece: np.ndarray             # (C,)
    counts: np.ndarray                # (NUM_BINS,)
    confidence: np.ndarray            # (NUM_BINS,)
    accuracy: np.ndarray              # (NUM_BINS,)

    def to_dict(self, class_names) -> dict:
        return {"ece": self.ece,
                "class_ece": {name: _json(v) for name, v in zip(class_names, self.class_ece)},
                "bins": {"pixels": self.counts.tolist(),
                         "confidence": [_json(v) for v in self.confidence],
                         "accuracy": [_json(v) for v in self.accuracy]}}


def _json(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


class CalibrationBins:
    """The sums ECE is computed from, per predicted class and confidence bin: pixels, summed
    confidence and correct pixels. Bins are [k/15, (k+1)/15), the last one closed at 1."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255,
                 bins: int = NUM_BINS, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.ignore_index, self.bins = num_classes, ignore_index, bins
        self.sums = torch.zeros(3, num_classes * bins, dtype=torch.float64, device=device)
        self.boundaries = torch.linspace(0, 1, bins + 1, device=device)

    def update(self, probs: torch.Tensor, masks: torch.Tensor) -> None:
        """Fold in probabilities (N, C, H, W) against masks (N, H, W) of class indices, the
        ``ignore_index`` pixels left out."""
        confidence, predicted = probs.max(1)
        if self.ignore_index is not None:
            counted = masks != self.ignore_index
            confidence, predicted, masks = confidence[counted], predicted[counted], masks[counted]
        confidence, predicted, masks = confidence.reshape(-1), predicted.reshape(-1), \
            masks.reshape(-1)
        where = (torch.bucketize(confidence, self.boundaries, right=True) - 1).clamp(
            0, self.bins - 1)
        slot = predicted * self.bins + where
        size = self.num_classes * self.bins
        self.sums[0] += torch.bincount(slot, minlength=size)
        self.sums[1] += torch.bincount(slot, confidence.double(), minlength=size)
        self.sums[2] += torch.bincount(slot, (predicted == masks).double(), minlength=size)

    def all_reduce(self) -> None:
        """Sum the counts over the ranks of a DDP run (a no-op in a single process)."""
        self.sums = distributed.all_sum_if_initialised(self.sums)

    def compute(self) -> Calibration:
        counts, confidence, correct = self.sums.view(3, self.num_classes, self.bins).cpu()
        # n_b |mean confidence - accuracy| of a bin is |summed confidence - correct pixels|:
        # over each bin of all classes for the ECE, over each class's own bins for its ECE.
        binned = counts.sum(0)
        total = binned.sum()
        gaps = (confidence.sum(0) - correct.sum(0)).abs()
        ece = float(gaps.sum() / total) if total > 0 else float("nan")
        per_class = counts.sum(1)
        class_ece = torch.where(per_class > 0, (confidence - correct).abs().sum(1)
                                / per_class.clamp_min(1), torch.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_confidence = (confidence.sum(0) / binned).numpy()
            accuracy = (correct.sum(0) / binned).numpy()
        return Calibration(ece, class_ece.numpy(), binned.numpy(), mean_confidence, accuracy)


class PixelSample:
    """A uniform random sample of at most ``limit`` counted pixels over many batches, with
    their logits and labels (what a temperature is fitted on): each pixel, in the order they
    come, gets the next key of a seeded random stream, and the ``limit`` smallest keys are
    kept, so the same pixels in the same order give the same sample however they are
    batched."""

    def __init__(self, limit: int = FIT_PIXELS, seed: int = 0) -> None:
        self.limit = limit
        self.generator = torch.Generator().manual_seed(seed)
        self.keys = torch.empty(0)
        self.logits: torch.Tensor | None = None
        self.labels = torch.empty(0, dtype=torch.long)
        self.images = torch.empty(0, dtype=torch.long)   # each pixel's image, counted from 0
        self.seen = 0                                       # images added so far

    def add(self, logits: torch.Tensor, masks: torch.Tensor, ignore_index: int | None) -> None:
        """Logits (N, C, H, W) (or one binary channel) and masks (N, H, W)."""
        logits = two_class(logits.float())
        flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]).cpu()
        labels = masks.reshape(-1).cpu()
        images = torch.arange(self.seen, self.seen + len(masks)).repeat_interleave(
            masks[0].numel())
        self.seen += len(masks)
        if ignore_index is not None:
            counted = labels != ignore_index
            flat, labels, images = flat[counted], labels[counted], images[counted]
        keys = torch.rand(len(labels), generator=self.generator)
        if self.logits is not None:
            keys = torch.cat([self.keys, keys])
            flat, labels = torch.cat([self.logits, flat]), torch.cat([self.labels, labels])
            images = torch.cat([self.images, images])
        if len(keys) > self.limit:
            keep = keys.topk(self.limit, largest=False).indices
            keys, flat, labels, images = keys[keep], flat[keep], labels[keep], images[keep]
        self.keys, self.logits, self.labels, self.images = keys, flat, labels, images

    def halves(self) -> torch.Tensor:
        """Which half (0 or 1) each pixel falls in: alternate images, or alternate pixels
        where all come from one image."""
        if self.seen > 1:
            return self.images % 2
        return torch.arange(len(self.labels)) % 2


@torch.inference_mode()
def sample_logits(model, loader, ignore_index: int | None) -> PixelSample:
    """A uniform sample of the logits of ``loader``'s counted pixels (images, masks batches),
    as ``model`` gives them: what `fit_sample` fits a temperature on."""
    sample = PixelSample()
    for images, masks in loader:
        sample.add(model(images), masks, ignore_index)
    return sample


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 minimising the mean negative log-likelihood of
    ``softmax(logits / T)`` at ``labels``: logits (P, C) (or a binary model's (P, 1)), labels
    (P,) of class indices. LBFGS on log T (so T stays positive) from T = 1; 1.0 for no
    pixels."""
    if len(labels) == 0:
        return 1.0
    # Copies made outside inference mode: autograd may not save inference tensors.
    # In float64: the NLL is flat near its least, and float32 sums move T in the 4th digit.
    logits, labels = two_class(logits.detach().double()).clone(), labels.clone()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(nll)
    return float(log_t.detach().exp())


@dataclass(frozen=True)
class TemperatureFit:
    """The temperature a checkpoint applies and what it did on the validation pixels it was
    fitted on: their mean negative log-likelihood and ECE, before and after. ``fitted`` is the
    NLL's least. ``crossed`` is the cross-check's (`_crossed_ece`): the halves of the
    validation images at T = 1, and each at the T fitted on the other; ``fitted`` is applied
    only where the second is not the larger (else 1 is)."""

    temperature: float
    fitted: float
    pixels: int
    nll: tuple[float, float]
    ece: tuple[float, float]
    crossed: tuple[float, float]

    def to_dict(self) -> dict:
        """What a checkpoint records under ``calibration``."""
        return {"temperature": self.temperature, "fitted_temperature": self.fitted,
                "fitted_on": "validation", "pixels": self.pixels, "nll_before": self.nll[0],
                "nll_after": self.nll[1], "ece_before": self.ece[0], "ece_after": self.ece[1],
                "crossed_ece_before": self.crossed[0], "crossed_ece_after": self.crossed[1]}

    def describe(self) -> str:
        measured = (f"{self.pixels} validation pixels (their ECE {self.ece[0]:.4f} -> "
                    f"{self.ece[1]:.4f}, NLL {self.nll[0]:.4f} -> {self.nll[1]:.4f})")
        if self.temperature == self.fitted:
            return f"calibration: temperature {self.temperature:.4g}, fitted on {measured}"
        return (f"calibration: temperature 1 on {self.pixels} validation pixels (their ECE "
                f"{self.ece[0]:.4f}): the NLL's least, {self.fitted:.4g}, does not carry over "
                f"between halves of the images (fitted on either, it takes the other's ECE "
                f"from {self.crossed[0]:.4f} to {self.crossed[1]:.4f}), so it is not applied")


def _measured(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
              temperature: float) -> tuple[float, float]:
    """(mean NLL, ECE) of the sample's pixels at ``temperature``."""
    bins = CalibrationBins(num_classes, ignore_index=None)
    # The sample's pixels as one image of 1 x P: (1, C, 1, P) against (1, 1, P).
    bins.update(probabilities(logits.T[None, :, None], temperature), labels[None, None])
    return float(F.cross_entropy(logits / temperature, labels)), bins.compute().ece


def _crossed_ece(sample: PixelSample, num_classes: int) -> tuple[float, float]:
    """How a temperature does on images it was not fitted on: each half of the sample's
    images (`PixelSample.halves`) scored on its own, at T = 1 and at the temperature fitted on
    the other half; the two halves' ECEs, weighted by their pixels. (Pooled into one set of
    bins, a half made over-confident and one made under-confident would cancel out.)"""
    logits, labels, halves = sample.logits, sample.labels, sample.halves()
    before = after = 0.0
    for half in (0, 1):
        fitted_on, scored = halves != half, halves == half
        if not scored.any():
            continue
        temperature = fit_temperature(logits[fitted_on], labels[fitted_on])
        share = float(scored.float().mean())
        scored_logits, scored_labels = logits[scored], labels[scored]
        before += share * _measured(scored_logits, scored_labels, num_classes, 1.0)[1]
        after += share * _measured(scored_logits, scored_labels, num_classes, temperature)[1]
    return before, after


def fit_sample(sample: PixelSample, num_classes: int) -> TemperatureFit:
    """Fit the temperature on ``sample`` (`fit_temperature`) and measure it there. It is
    applied only if it carries over between the halves of the sample's images (`_crossed_ece`
    does not rise); else 1 is recorded, with the fitted value beside it."""
    if sample.logits is None or len(sample.labels) == 0:
        nothing = (float("nan"),) * 2
        return TemperatureFit(1.0, 1.0, 0, nothing, nothing, nothing)
    logits, labels = sample.logits, sample.labels
    fitted = fit_temperature(logits, labels)
    (nll_before, ece_before), (nll_after, ece_after) = (
        _measured(logits, labels, num_classes, t) for t in (1.0, fitted))
    crossed = _crossed_ece(sample, num_classes)
    if crossed[1] > crossed[0]:
        return TemperatureFit(1.0, fitted, len(labels), (nll_before, nll_before),
                              (ece_before, ece_before), crossed)
    return TemperatureFit(fitted, fitted, len(labels), (nll_before, nll_after),
                          (ece_before, ece_after), crossed)
