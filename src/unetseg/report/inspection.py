"""The inspector's report: ``report.json`` and a self-contained ``report.html`` (every figure
embedded as a PNG data URI; no network, no external files).

The HTML page opens with what the numbers rest on (the number of images and the share of
true pixels ignored), then shows the per-class table with verdicts, per-class IoU bars with the
mIoU line, the row-normalised confusion matrix, true vs predicted class shares, object recall
by size, the error breakdown as stacked bars (IoU plus the six error shares add up to 1), and
the worst images as image | truth | prediction | error map (coloured by error type). Given a
checkpoint's training history, it also lists what the health monitor found while the model
trained (`unetseg.health`).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..files import atomic_write_text, write_json
from ..inspector import ERROR_MAP_CODES, Inspection, error_map
from ..outputs import check_output_folder
from .figures import (
    breakdown_bars,
    confusion_figure,
    figure_bytes,
    iou_bars,
    recall_bars,
    reliability_figure,
    share_bars,
)
from .images import colourise, side_by_side, to_rgb8
from .tables import fmt as _fmt
from .tables import inspection_summary, worst_first

__all__ = ["write_inspection_report", "REPORT_FILES", "ERROR_COLOURS", "SampleSource"]

# What `write_inspection_report` writes into its folder (jobs check them before any work).
REPORT_FILES = ("report.json", "report.html")

# Error-map colours: correct pixels stay dark, ignored grey; error types as in the stacked bars.
ERROR_COLOURS = {"correct": (20, 20, 20), "ignored": (128, 128, 128),
                 "boundary": (255, 200, 0), "extent": (255, 110, 0), "segment": (220, 30, 60)}
# (image HWC in [0, 1] or uint8, truth (H, W), prediction (H, W)) of image i, or None.
SampleSource = Callable[[int], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _error_panel(image, truth, pred, colours, ignore_index) -> bytes:
    """image | truth | prediction | error map, one PNG."""
    codes = error_map(pred, truth, len(colours), ignore_index)
    error_palette = np.zeros((256, 3), dtype=np.uint8)
    for name, code in ERROR_MAP_CODES.items():
        error_palette[code] = ERROR_COLOURS[name]
    truth_shown = np.where(truth == ignore_index, 0, truth) if ignore_index is not None else truth
    return side_by_side([to_rgb8(image), colourise(truth_shown, colours),
                         colourise(pred, colours), error_palette[codes]])


def _scope(inspection: Inspection) -> str:
    """What the numbers rest on: how many images, and how much of them is not scored."""
    ignore_index = inspection.settings.get("ignore_index")
    label = "" if ignore_index is None else f" (true label {ignore_index})"
    return f"{inspection_summary(inspection)}{label}."


# --- the page -------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, td.verdict, td.why { text-align: left; }
td.verdict { font-weight: bold; }
td.fine { color: #2e7d32; }
img { max-width: 100%; }
.legend span { display: inline-block; padding: 0 0.6em; margin-right: 0.4em; color: white; }
"""


# Marks the page once loaded: data-images="ok" when every embedded figure decoded, so a
# headless browser test can tell a broken page from a blank one.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (img) {
    return !(img.complete && img.naturalWidth > 0);
  });
  document.body.dataset.images = broken.length ? "broken:" + broken.length : "ok";
});
</script>"""


def _table_html(rows: list[dict]) -> str:
    head = ("<tr><th>class</th><th>IoU</th><th>Dice</th><th>precision</th><th>recall</th>"
            "<th>true %</th><th>pred %</th><th>BF1</th><th>boundary IoU</th>"
            "<th>small recall</th><th>verdict</th><th>why</th><th>remedy</th></tr>")
    body = []
    for r in rows:
        fine = " fine" if r["verdict"] == "fine" else ""
        body.append(
            f"<tr><td>{html.escape(r['class'])}</td><td>{_fmt(r['iou'])}</td>"
            f"<td>{_fmt(r['dice'])}</td><td>{_fmt(r['precision'])}</td>"
            f"<td>{_fmt(r['recall'])}</td><td>{_fmt(100 * r['true_share'], 2)}</td>"
            f"<td>{_fmt(100 * r['pred_share'], 2)}</td><td>{_fmt(r['boundary_f1'])}</td>"
            f"<td>{_fmt(r['boundary_iou'])}</td><td>{_fmt(r['object_recall']['small'], 2)}</td>"
            f"<td class='verdict{fine}'>{html.escape(r['verdict'])}</td>"
            f"<td class='why'>{html.escape(r['evidence'])}</td>"
            f"<td class='why'>{html.escape(r['remedy'])}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _health_html(health: list[dict]) -> str:
    """The training health section: one row per finding, or a line saying there were none."""
    if not health:
        return ("<h2>Training health</h2><p>The health monitor found nothing while the model "
                "trained, up to the epoch this checkpoint was saved at.</p>")
    head = ("<tr><th>epoch</th><th>step</th><th>class</th><th>seen</th><th>likely cause</th>"
            "<th>fix</th></tr>")
    body = "".join(
        f"<tr><td>{event['epoch']}</td><td>{event['step']}</td>"
        f"<td>{html.escape(event['class_name'] or 'the run')}</td>"
        + "".join(f"<td class='why'>{html.escape(event[key])}</td>"
                  for key in ("seen", "cause", "fix")) + "</tr>"
        for event in health)
    return (f"<h2>Training health</h2><p>What the health monitor found while the model trained, "
            f"up to the epoch this checkpoint was saved at.</p><table>{head}{body}</table>")


def write_inspection_report(
    inspection: Inspection, out_dir: str | Path, colours: Sequence[Sequence[int]],
    samples: SampleSource | None = None, worst: int = 4, title: str = "Mask inspection",
    ignore_index: int | None = 255, health: list[dict] | None = None,
    calibration: tuple | None = None,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns their paths.

    ``samples(i)`` gives image i's (image, truth, prediction) for the worst-images section;
    without it (masks only), that section is left out. ``health``: the findings of the
    health monitor while the checkpoint trained (`unetseg.health.HealthEvent.to_dict`), shown
    and kept in report.json as ``training_health``; None (masks only, or a checkpoint from
    before the monitor) leaves the section out. ``calibration``: (temperature, ECE before,
    ECE after) as `unetseg.evaluation.Evaluation` holds it, drawn as a reliability diagram
    and kept in report.json; None (masks only) leaves it out.
    """
    out_dir = check_output_folder(out_dir, "--out")
    rows = worst_first(inspection)
    figures = [("IoU per class", iou_bars(rows, inspection.miou)),
               ("Confusion matrix", confusion_figure(inspection.confusion,
                                                      [r["class"] for r in inspection.classes])),
               ("Class shares", share_bars(rows)),
               ("Object recall by size", recall_bars(rows)),
               ("Error breakdown", breakdown_bars(rows))]
    if calibration is not None:
        temperature, before, after = calibration
        lines = [("as trained", before)]
        if temperature != 1.0:
            lines.append((f"scaled by T = {temperature:.4g}", after))
        figures.append(("Reliability", reliability_figure(lines)))
    sections = [f"<h2>{name}</h2><img alt='{name}' src='{_png_uri(figure_bytes(figure))}'>"
                for name, figure in figures]
    if samples is not None:
        legend = "".join(f"<span style='background: rgb{ERROR_COLOURS[k]}'>{k}</span>"
                         for k in ("boundary", "extent", "segment"))
        shown = []
        for index in inspection.worst_images(worst):
            sample = samples(index)
            if sample is None:
                continue
            name = html.escape(inspection.image_names[index])
            shown.append(f"<h3>{name}: mIoU {_fmt(inspection.image_miou[index])}</h3>"
                         f"<img alt='{name}' "
                         f"src='{_png_uri(_error_panel(*sample, colours, ignore_index))}'>")
        sections.append(f"<h2>Worst images</h2><p>image | truth | prediction | error map "
                        f"(<span class='legend'>{legend}</span>; dark = correct, grey = "
                        f"ignored)</p>{''.join(shown)}")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(_scope(inspection))}</p><p>Verdict rules, in order: "
            f"{html.escape('; '.join(inspection.settings['rules']))}; otherwise fine when IoU "
            f">= {inspection.settings['fine_iou']}.</p>"
            f"{_table_html(rows)}"
            f"{'' if health is None else _health_html(health)}"
            f"{''.join(sections)}{CHECK_SCRIPT}</body></html>")
    json_path, html_path = (out_dir / name for name in REPORT_FILES)
    document = inspection.to_dict()
    if health is not None:
        document["training_health"] = health
    if calibration is not None:
        names = [row["class"] for row in inspection.classes]
        document["calibration"] = {"temperature": calibration[0],
                                   "before": calibration[1].to_dict(names),
                                   "after": calibration[2].to_dict(names)}
    write_json(json_path, document)
    atomic_write_text(html_path, page)
    return json_path, html_path
