"""The job behind ``unetseg evaluate``: score a checkpoint on a split and write the results.

Writes ``evaluation.json`` (scores, per-class rows, confusion matrix), ``confusion.png`` and
the mask inspector's ``report.json`` and ``report.html`` into the output folder; existing ones
are not replaced unless ``overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import (
    atomic_write_text,
    check_output_folder,
    json_ready,
    refuse_existing_outputs,
)
from ..report.figures import plot_confusion
from ..report.inspection import REPORT_FILES, write_inspection_report
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
    out = check_output_folder(out, "--out")
    if not overwrite:
        refuse_existing_outputs(out / name for name in EVALUATION_FILES)
    scored = score_split(checkpoint, split, data, device, inspect=inspect, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"images": scored.images, "split": scored.split,
               **scored.evaluation.to_dict(scored.class_names)}
    atomic_write_text(out / "evaluation.json", json.dumps(json_ready(numbers), indent=2))
    plot_confusion(scored.evaluation.scores.matrix.numpy(), scored.class_names,
                   out / "confusion.png")
    if inspect:
        write_inspection_report(scored.inspection, out, scored.colours, scored.sample,
                                title=f"Mask inspection: {Path(checkpoint).name}",
                                ignore_index=scored.ignore_index)
    return scored
