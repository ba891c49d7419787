"""The job behind ``unetseg evaluate``: score a checkpoint on a split and write the results.

Writes ``evaluation.json`` (scores, per-class rows, confusion matrix), ``confusion.png`` and
the mask inspector's ``report.json`` and ``report.html`` into the output folder. Its output
policy (`unetseg.outputs`): refuse, unless ``overwrite``, to replace any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import read_metadata
from ..files import write_json
from ..outputs import claim_folder
from ..report.figures import plot_confusion
from ..report.inspection import REPORT_FILES, write_inspection_report
from .inspect import training_health
from .scoring import ScoredSplit, score_split

__all__ = ["evaluate_checkpoint", "EVALUATION_FILES"]

EVALUATION_FILES = ("evaluation.json", "confusion.png") + REPORT_FILES


def evaluate_checkpoint(
    checkpoint: str | Path, out: str | Path, split: str | None = None,
    data: dict[str, Any] | None = None, device: str | None = None, progress: bool = False,
    overwrite: bool = False, inspect: bool = True,
) -> ScoredSplit:
    """`score_split` (``split`` None: its default), then write its numbers and pictures into
    ``out``; without ``inspect``, no mask inspection and no report.

    Raises ValueError before scoring when ``out`` is a file, or holds any of
    `EVALUATION_FILES` and ``overwrite`` is off.
    """
    out = claim_folder(out, EVALUATION_FILES, overwrite)
    scored = score_split(checkpoint, split, data, device, inspect=inspect, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"images": scored.images, "split": scored.split,
               **scored.evaluation.to_dict(scored.class_names)}
    write_json(out / "evaluation.json", numbers)
    plot_confusion(scored.evaluation.scores.matrix.numpy(), scored.class_names,
                   out / "confusion.png")
    if inspect:
        write_inspection_report(scored.inspection, out, scored.colours, scored.sample,
                                title=f"Mask inspection: {Path(checkpoint).name}",
                                ignore_index=scored.ignore_index,
                                health=training_health(read_metadata(checkpoint)),
                                calibration=scored.evaluation.calibration)
    return scored
