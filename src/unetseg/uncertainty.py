"""Which unlabelled images a label would help most: uncertainty, weighted towards rare classes,
ranked without near-duplicates.

An image is worth labelling where the model is unsure, and more so where what it is unsure
about is a class it rarely saw. Per pixel, uncertainty is the entropy of the (calibrated)
class probabilities, divided by log C so that 0 is certain and 1 is a uniform guess. Each
pixel counts with the weight of the class it is predicted as: square-root inverse frequency
of the class in the training masks, scaled so that the median class weighs 1 (rare classes
weigh more, common ones less, as `--class-weights sqrt-median` weighs the loss). An image's
score is the mean of weight x entropy over its pixels.

Ranked by score, an image whose difference hash is within `DUPLICATE_DISTANCE` bits of one
already chosen is passed over (the data doctor's rule), so that twenty suggestions are not
twenty frames of one scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["normalised_entropy", "rarity_weights", "image_score", "rank_diverse", "Ranked"]


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """(H, W) entropy of (C, H, W) class probabilities, divided by log C: in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float32), 1e-12, 1.0)
    return -(p * np.log(p)).sum(0) / math.log(len(p))


def rarity_weights(shares: Sequence[float] | None, num_classes: int) -> np.ndarray:
    """(C,) weights sqrt(median share / share), the median class at 1; a class absent from
    the training masks weighs as the rarest present one. Ones when ``shares`` is None (not
    counted, as for synthetic data)."""
    if shares is None:
        return np.ones(num_classes, dtype=np.float32)
    shares = np.asarray(shares, dtype=np.float64)
    present = shares[shares > 0]
    if present.size == 0:
        return np.ones(num_classes, dtype=np.float32)
    floor = present.min()
    return np.sqrt(np.median(present) / np.maximum(shares, floor)).astype(np.float32)


def image_score(entropy: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """The mean over pixels of ``weights[label] * entropy``: (H, W) entropy, (H, W) predicted
    labels."""
    return float((weights[labels] * entropy).mean())


@dataclass(frozen=True)
class Ranked:
    """An image's place: its index, its rank among the suggestions (1-based; None when left
    out) and, when left out as a near-duplicate, the index of the suggestion it duplicates."""

    index: int
    rank: int | None
    duplicate_of: int | None


def rank_diverse(scores: Sequence[float], hashes: Sequence[int], n: int,
                 max_distance: int) -> list[Ranked]:
    """Every image, highest score first: the first ``n`` whose hash is more than
    ``max_distance`` bits from every earlier suggestion get ranks 1..n; an image within that
    distance of a suggestion is left out, naming it; the rest are left unranked. Ties keep
    the images' order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    chosen: list[int] = []
    ranked = []
    for i in order:
        near = next((j for j in chosen
                     if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= max_distance), None)
        if near is not None:
            ranked.append(Ranked(i, None, near))
        elif len(chosen) < n:
            chosen.append(i)
            ranked.append(Ranked(i, len(chosen), None))
        else:
            ranked.append(Ranked(i, None, None))
    return ranked
