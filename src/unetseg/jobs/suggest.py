"""The job behind ``unetseg suggest``: which unlabelled images to label next.

Each image of the folder is predicted as `unetseg predict` predicts it (calibrated
probabilities, blended over overlapping tiles, so any size works) and scored by
`unetseg.uncertainty`: mean pixel entropy, weighted towards the classes that were rare in the
training masks. Near-duplicates of a better-scored image (by the data doctor's difference
hash) are left out, so the list is diverse. Writes into the output folder:

- ``suggest.csv``: every image, best first: its rank among the suggestions (empty when not
  suggested), score, mean entropy, the near-duplicate it was left out for, and the share of
  each predicted class;
- ``suggest.png``: the contact sheet, one row per suggestion: image | prediction |
  uncertainty (white = unsure);
- ``suggest.html``: the table and the contact sheet's rows in one self-contained page.

Existing outputs are refused unless ``overwrite``. An image that cannot be read is reported
by name and left out; the others are still ranked.
"""

from __future__ import annotations

import base64
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import read_metadata
from ..data.io import list_images, no_pixel_limit, read_raw_image, scale_to_unit
from ..files import atomic_write_bytes, atomic_write_text, write_csv
from ..infer import load_segmenter, predict, tile_for
from ..outputs import claim_folder
from ..progress import progress as show_progress
from ..progress import say
from ..report.images import colourise, grey_rgb, png_bytes, side_by_side_array, stacked, to_rgb8
from ..runtime import pick_device
from ..uncertainty import Ranked, image_score, normalised_entropy, rank_diverse, rarity_weights
from .check import DUPLICATE_DISTANCE, difference_hash
from .predict import PredictOptions, check_size

__all__ = ["suggest_images", "SUGGEST_FILES", "Suggestion"]

SUGGEST_FILES = ("suggest.csv", "suggest.png", "suggest.html")
# The contact sheet's pictures are at most this tall (a 512-pixel slice shows at half size).
THUMBNAIL = 192
# Rows of probabilities turned into entropy at a time: bounded memory for any image height.
ROWS = 256


@dataclass
class Suggestion:
    """One image's score and what its contact-sheet row shows."""

    path: Path
    score: float
    mean_entropy: float
    shares: np.ndarray                 # (C,) share of the pixels predicted as each class
    hash: int
    row: np.ndarray                    # image | prediction | uncertainty, uint8 (h, w, 3)
    rank: int | None = None
    duplicate_of: Path | None = None


def suggest_images(checkpoint: str | Path, folder: str | Path, out: str | Path, n: int = 20,
                   tile: int | str | None = "auto", device: str | None = None,
                   overwrite: bool = False, progress: bool = False) -> list[Suggestion]:
    """Rank the images of ``folder`` for labelling with ``checkpoint`` and write the
    suggestions into ``out``; returns every image, best first (suggestions ranked 1..n).

    Raises ValueError before any work for ``n`` below 1, a folder without images, or
    outputs that exist without ``overwrite``.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, found {n}")
    out = claim_folder(out, SUGGEST_FILES, overwrite)
    paths = list_images(folder).images
    if not paths:
        raise ValueError(f"{folder}: no images to rank (expected PNG, JPEG or TIFF files)")
    segmenter = load_segmenter(checkpoint, pick_device(device))
    names = segmenter.class_names
    weights = rarity_weights(_training_shares(read_metadata(checkpoint), names), len(names))
    tile = tile_for(segmenter.training_crop) if tile == "auto" else tile
    scored = []
    for path in show_progress(paths, "suggest", progress, unit="image"):
        try:
            scored.append(_score(segmenter, path, tile, weights))
        except ValueError as error:           # unreadable or unusable: name it, go on
            say(f"skipped {path}: {error}")
    if not scored:
        raise ValueError(f"{folder}: none of its {len(paths)} images could be read")
    ranked = rank_diverse([s.score for s in scored], [s.hash for s in scored], n,
                          DUPLICATE_DISTANCE)
    ordered = [_placed(scored, place) for place in ranked]
    _write(ordered, names, out)
    return ordered


def _training_shares(metadata: dict, names: list[str]) -> list[float] | None:
    """Each class's share of the training pixels, as the run's data check counted them."""
    classes = (metadata.get("data_check") or {}).get("classes") or {}
    if not all(name in classes for name in names):
        return None
    return [classes[name]["share"] for name in names]


def _placed(scored: list[Suggestion], place: Ranked) -> Suggestion:
    suggestion = scored[place.index]
    suggestion.rank = place.rank
    if place.duplicate_of is not None:
        suggestion.duplicate_of = scored[place.duplicate_of].path
    return suggestion


def _score(segmenter, path: Path, tile: int | None, weights: np.ndarray) -> Suggestion:
    """Predict ``path`` and score it; the probabilities go through a file on disk, a band of
    rows at a time, so a large image needs no (C, H, W) float array in memory."""
    check_size(path, PredictOptions())      # --max-pixels' default, from the header
    with no_pixel_limit():                    # the limit is that check's, as for predict
        image = read_raw_image(path)
    height, width = image.shape[:2]
    classes = segmenter.num_classes
    step = max(1, int(np.ceil(max(height, width) / THUMBNAIL)))   # thumbnail stride
    with tempfile.TemporaryDirectory() as scratch:
        probs = np.lib.format.open_memmap(Path(scratch) / "probs.npy", mode="w+",
                                          dtype=np.float16, shape=(classes, height, width))
        result = predict(segmenter, image, tile=tile, precision="auto", probs=probs,
                         temperature=segmenter.temperature)
        weighted = entropy_sum = 0.0
        thumb_rows = []
        for top in range(0, height, ROWS):
            entropy = normalised_entropy(probs[:, top:top + ROWS])
            labels = result.mask[top:top + ROWS]
            weighted += image_score(entropy, labels, weights) * entropy.size
            entropy_sum += float(entropy.sum())
            first = (-top) % step                 # the band's rows on the thumbnail's grid
            thumb_rows.append(entropy[first::step, ::step])
        del probs
    pixels = height * width
    uncertainty = np.concatenate(thumb_rows, axis=0)
    picture = to_rgb8(scale_to_unit(image[::step, ::step]))
    prediction = colourise(result.mask[::step, ::step], segmenter.colours)
    row = side_by_side_array([picture, prediction, grey_rgb(uncertainty)], min_height=96)
    areas = np.bincount(result.mask.reshape(-1), minlength=classes)[:classes]
    return Suggestion(path, weighted / pixels, entropy_sum / pixels, areas / pixels,
                      difference_hash(image), row)


def _write(ordered: list[Suggestion], names: list[str], out: Path) -> None:
    """suggest.csv, the contact sheet and the page."""
    header = ["rank", "image", "score", "mean_entropy", "duplicate_of",
              *(f"share_{name}" for name in names)]
    write_csv(out / "suggest.csv", header, (
        ["" if s.rank is None else s.rank, str(s.path), f"{s.score:.6f}",
         f"{s.mean_entropy:.6f}", "" if s.duplicate_of is None else str(s.duplicate_of),
         *(f"{share:.6f}" for share in s.shares)] for s in ordered))
    chosen = [s for s in ordered if s.rank is not None]
    atomic_write_bytes(out / "suggest.png", png_bytes(stacked([s.row for s in chosen])))
    atomic_write_text(out / "suggest.html", _page(chosen, ordered))


def _page(chosen: list[Suggestion], ordered: list[Suggestion]) -> str:
    left_out = [s for s in ordered if s.duplicate_of is not None]
    rows = "".join(
        f"<tr><td>{s.rank}</td><td>{html.escape(s.path.name)}</td><td>{s.score:.4f}</td>"
        f"<td>{s.mean_entropy:.4f}</td><td><img alt='{html.escape(s.path.name)}' src='data:"
        f"image/png;base64,{base64.b64encode(png_bytes(s.row)).decode('ascii')}'></td></tr>"
        for s in chosen)
    duplicates = "".join(f"<li>{html.escape(s.path.name)}: near-duplicate of "
                         f"{html.escape(s.duplicate_of.name)}</li>" for s in left_out)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>What to label "
            "next</title><style>body{font-family:system-ui,sans-serif;margin:2em auto;"
            "max-width:1100px}td{padding:0.3em 0.6em;vertical-align:top}</style></head><body>"
            f"<h1>What to label next</h1><p>{len(chosen)} of {len(ordered)} images, most "
            "useful first: mean pixel entropy of the calibrated probabilities, weighted "
            "towards classes rare in the training masks; near-duplicates of a better-scored "
            "image left out. Each row: image | prediction | uncertainty (white = unsure).</p>"
            "<table><tr><th>rank</th><th>image</th><th>score</th><th>mean entropy</th>"
            f"<th></th></tr>{rows}</table>"
            + (f"<h2>Left out as near-duplicates</h2><ul>{duplicates}</ul>" if left_out else "")
            + "</body></html>")
