"""Plain-text tables for the terminal: per-class scores and the inspector's verdicts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from ..inspector import Inspection

__all__ = ["fmt", "format_table", "worst_first", "inspection_table", "inspection_summary"]


def fmt(value: float | None, digits: int = 3) -> str:
    """A score with ``digits`` decimals; ``-`` for an undefined one (None or NaN)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    """A plain-text table of per-class rows (``class`` plus numeric ``columns``); NaN shows
    as ``-`` (the class is absent, so the score is undefined)."""
    width = max(12, *(len(str(row["class"])) + 2 for row in rows))
    lines = ["class".ljust(width) + "".join(f"{c:>10}" for c in columns)]
    for row in rows:
        lines.append(str(row["class"]).ljust(width)
                     + "".join(f"{fmt(row[c]):>10}" for c in columns))
    return "\n".join(lines)


def worst_first(inspection: Inspection) -> list[dict]:
    """Classes worst first (absent classes last)."""
    return sorted(inspection.classes,
                  key=lambda r: (math.isnan(r["iou"]), r["iou"] if not math.isnan(r["iou"])
                                 else 0.0))


def inspection_table(inspection: Inspection) -> str:
    """Plain-text per-class table, worst class first, with the verdict of each."""
    width = max(12, *(len(r["class"]) + 2 for r in inspection.classes))
    header = (f"{'class':<{width}}{'iou':>7}{'true%':>8}{'pred%':>8}{'bf1':>7}"
              f"{'small rec':>10}  verdict")
    lines = [header]
    for row in worst_first(inspection):
        lines.append(f"{row['class']:<{width}}{fmt(row['iou']):>7}"
                     f"{fmt(100 * row['true_share'], 1):>8}{fmt(100 * row['pred_share'], 1):>8}"
                     f"{fmt(row['boundary_f1']):>7}{fmt(row['object_recall']['small'], 2):>10}"
                     f"  {row['verdict']}")
    lines.append(inspection_summary(inspection))
    return "\n".join(lines)


def _percent(share: float) -> str:
    """A share as a percentage with one decimal; a share that is not zero never shows as
    0.0% (``<0.1%``), so "none" and "a few" read differently."""
    if math.isnan(share):
        return "-"
    return "<0.1%" if 0 < share < 0.0005 else f"{100 * share:.1f}%"


def inspection_summary(inspection: Inspection) -> str:
    """``mIoU 0.8123 over 24 images; 3.1% of the pixels ignored``: how much the scores rest
    on (a large ignored share means the scores describe a part of each image only)."""
    return (f"mIoU {fmt(inspection.miou, 4)} over {len(inspection.image_names)} images; "
            f"{_percent(inspection.ignored_share)} of the pixels ignored")
