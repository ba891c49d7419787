"""The inspector's report: a terminal table, ``report.json`` and a self-contained
``report.html`` (every figure embedded as a PNG data URI; no network, no external files).

The HTML page shows the per-class table with verdicts, per-class IoU bars with the mIoU line,
the row-normalised confusion matrix, true vs predicted class shares, object recall by size,
the error breakdown as stacked bars (IoU plus the six error shares add up to 1), and the worst
images as image | truth | prediction | error map (coloured by error type).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .files import atomic_write_text, json_ready
from .inspector import ERROR_MAP_CODES, ERROR_TYPES, SIZE_BUCKETS, Inspection, error_map
from .report import _confusion_figure, _figure_bytes, _pyplot, colourise

__all__ = ["inspection_table", "write_inspection_report", "ERROR_COLOURS"]

# Error-map colours: correct pixels stay dark, ignored grey; error types as in the stacked bars.
ERROR_COLOURS = {"correct": (20, 20, 20), "ignored": (128, 128, 128),
                 "boundary": (255, 200, 0), "extent": (255, 110, 0), "segment": (220, 30, 60)}
BAR_COLOURS = {"iou": "#4c9a2a", "fp_boundary": "#ffd54f", "fn_boundary": "#ffb300",
               "fp_extent": "#ff8a65", "fn_extent": "#e64a19", "fp_segment": "#f06292",
               "fn_segment": "#ad1457"}

# (image HWC in [0, 1] or uint8, truth (H, W), prediction (H, W)) of image i, or None.
SampleSource = Callable[[int], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _order(inspection: Inspection) -> list[dict]:
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
    for row in _order(inspection):
        lines.append(f"{row['class']:<{width}}{_fmt(row['iou']):>7}"
                     f"{_fmt(100 * row['true_share'], 1):>8}{_fmt(100 * row['pred_share'], 1):>8}"
                     f"{_fmt(row['boundary_f1']):>7}{_fmt(row['object_recall']['small'], 2):>10}"
                     f"  {row['verdict']}")
    lines.append(f"mIoU {_fmt(inspection.miou, 4)} over {len(inspection.image_names)} images")
    return "\n".join(lines)


# --- figures --------------------------------------------------------------------------------

def _iou_bars(rows: list[dict], miou: float):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    names = [r["class"] for r in rows]
    values = [0.0 if math.isnan(r["iou"]) else r["iou"] for r in rows]
    ax.barh(names, values, color=BAR_COLOURS["iou"])
    ax.axvline(miou, color="black", linestyle="--", label=f"mIoU {miou:.3f}")
    ax.set(xlim=(0, 1), xlabel="IoU", title="IoU per class (worst at the top)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    return figure


def _share_bars(rows: list[dict]):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["true_share"] for r in rows], height=0.4, label="truth")
    ax.barh(y + 0.2, [r["pred_share"] for r in rows], height=0.4, label="prediction")
    ax.set_yticks(y, [r["class"] for r in rows])
    ax.set(xlabel="share of pixels", title="class shares: truth vs prediction")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    return figure


def _recall_bars(rows: list[dict]):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for offset, bucket in zip((-0.27, 0.0, 0.27), SIZE_BUCKETS):
        values = [r["object_recall"][bucket] for r in rows]
        ax.barh(y + offset, [0 if math.isnan(v) else v for v in values], height=0.27,
                label=f"{bucket} objects")
    ax.set_yticks(y, [r["class"] for r in rows])
    ax.set(xlim=(0, 1), xlabel="object recall (no bar: no such objects or none found)",
           title="object recall by size")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize="small")
    return figure


def _breakdown_bars(rows: list[dict]):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.6))
    names = [r["class"] for r in rows]
    left = np.zeros(len(rows))
    for part in ("iou",) + ERROR_TYPES:
        values = np.array([0.0 if math.isnan(r["iou"]) else
                           (r["iou"] if part == "iou" else r["error_shares"][part])
                           for r in rows])
        ax.barh(names, values, left=left, color=BAR_COLOURS[part], label=part)
        left += values
    ax.set(xlim=(0, 1), xlabel="share of TP + FP + FN", title="IoU and error breakdown")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize="small")
    return figure


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _panel(image, truth, pred, colours, ignore_index) -> bytes:
    """image | truth | prediction | error map, one PNG."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    codes = error_map(pred, truth, len(colours), ignore_index)
    palette = np.zeros((256, 3), dtype=np.uint8)
    for name, code in ERROR_MAP_CODES.items():
        palette[code] = ERROR_COLOURS[name]
    truth_shown = np.where(truth == ignore_index, 0, truth) if ignore_index is not None else truth
    parts = [rgb, colourise(truth_shown, colours), colourise(pred, colours), palette[codes]]
    zoom = max(1, 160 // rgb.shape[0])        # small images enlarged, pixels kept sharp
    parts = [np.repeat(np.repeat(p, zoom, axis=0), zoom, axis=1) for p in parts]
    gap = np.full((parts[0].shape[0], 4, 3), 255, dtype=np.uint8)
    panel = np.concatenate([parts[0], gap, parts[1], gap, parts[2], gap, parts[3]], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(panel).save(buffer, format="PNG")
    return buffer.getvalue()


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


def write_inspection_report(
    inspection: Inspection, out_dir: str | Path, colours: Sequence[Sequence[int]],
    samples: SampleSource | None = None, worst: int = 4, title: str = "Mask inspection",
    ignore_index: int | None = 255,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns their paths.

    ``samples(i)`` gives image i's (image, truth, prediction) for the worst-images section;
    without it (masks only), that section is left out.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; expected a folder for the report")
    rows = _order(inspection)
    figures = [("IoU per class", _iou_bars(rows, inspection.miou)),
               ("Confusion matrix", _confusion_figure(inspection.confusion,
                                                      [r["class"] for r in inspection.classes])),
               ("Class shares", _share_bars(rows)),
               ("Object recall by size", _recall_bars(rows)),
               ("Error breakdown", _breakdown_bars(rows))]
    sections = [f"<h2>{name}</h2><img alt='{name}' src='{_png_uri(_figure_bytes(figure))}'>"
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
                         f"<img alt='{name}' src='{_png_uri(_panel(*sample, colours, ignore_index))}'>")
        sections.append(f"<h2>Worst images</h2><p>image | truth | prediction | error map "
                        f"(<span class='legend'>{legend}</span>; dark = correct, grey = "
                        f"ignored)</p>{''.join(shown)}")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            f"<p>mIoU {_fmt(inspection.miou, 4)} over {len(inspection.image_names)} images. "
            f"Verdict rules, in order: "
            f"{html.escape('; '.join(inspection.settings['rules']))}; otherwise fine when IoU "
            f">= {inspection.settings['fine_iou']}.</p>"
            f"{_table_html(rows)}{''.join(sections)}{CHECK_SCRIPT}</body></html>")
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    atomic_write_text(json_path, json.dumps(json_ready(inspection.to_dict()), indent=2))
    atomic_write_text(html_path, page)
    return json_path, html_path
