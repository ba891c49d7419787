"""The inspector's report and the `unetseg inspect` command: the table, report.json, a
self-contained report.html that a real browser renders without errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from unetseg.cli import main
from unetseg.inspector import inspect_masks
from unetseg.report.inspection import write_inspection_report
from unetseg.report.tables import inspection_table

CLASSES = ["background", "road", "car"]
COLOURS = [(0, 0, 0), (128, 64, 128), (64, 0, 128)]


def masks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.zeros((48, 64), dtype=np.int64)
    truth[20:, :] = 1
    truth[25:35, 10:20] = 2
    pred = truth.copy()
    pred[25:35, 10:15] = 1                         # half the car taken by road
    pred[rng.random(truth.shape) < 0.02] = 0
    return pred, truth


@pytest.fixture
def report(tmp_path):
    pairs = [masks(i) for i in range(3)]
    inspection = inspect_masks(pairs, CLASSES, names=["a.png", "b.png", "c.png"])

    def sample(index):
        pred, truth = pairs[index]
        return np.full((*truth.shape, 3), 0.5), truth, pred

    paths = write_inspection_report(inspection, tmp_path, COLOURS, sample)
    return inspection, paths


def test_table_lists_classes_worst_first_with_their_verdicts(report):
    inspection, _ = report
    lines = inspection_table(inspection).splitlines()
    assert lines[0].split()[:2] == ["class", "iou"] and lines[0].rstrip().endswith("verdict")
    assert lines[1].startswith("car")                        # the worst class first
    assert "confusion with road" in lines[1]
    assert lines[-1].startswith("mIoU")


def test_report_json_has_every_class_number_and_no_nan_tokens(report):
    inspection, (json_path, _) = report
    text = json_path.read_text()
    assert "NaN" not in text
    data = json.loads(text)
    car = next(row for row in data["classes"] if row["class"] == "car")
    assert car["iou"] == pytest.approx(inspection.classes[2]["iou"])
    for key in ("true_share", "pred_share", "dice", "boundary_f1", "boundary_iou",
                "object_recall", "error_shares", "verdict", "remedy", "confusion_with"):
        assert key in car
    assert len(data["images"]) == 3 and data["confusion_matrix"][2][1] > 0


def test_report_html_is_self_contained(report):
    _, (_, html_path) = report
    page = html_path.read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) >= 5 + 3                              # five figures, three images
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in page and "https://" not in page
    for name in CLASSES + ["Worst images", "Error breakdown", "Object recall by size"]:
        assert name in page


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium with "
                    "apt-get where it can); the browser check of report.html is skipped")
    return path


def headless(browser: str, page, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", *flags, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    browser = chromium()
    _, (_, html_path) = report
    dom = headless(browser, html_path, "--dump-dom")
    assert 'data-images="ok"' in dom.stdout                   # every figure decoded
    assert ":CONSOLE" not in dom.stderr, dom.stderr
    shot = tmp_path / "shot.png"
    headless(browser, html_path, "--hide-scrollbars", "--window-size=1200,2400",
             f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10                                  # not a blank page
    # The check can fail: a page with a script error shows up in the same log.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    assert ":CONSOLE" in headless(browser, broken, "--dump-dom").stderr


# --- unetseg inspect ----------------------------------------------------------------------------

def write_masks(folder, pairs, which):
    folder.mkdir()
    for i, pair in enumerate(pairs):
        Image.fromarray(pair[which].astype(np.uint8)).save(folder / f"m{i}.png")


def test_inspect_folders_of_masks(tmp_path, capsys):
    pairs = [masks(i) for i in range(2)]
    write_masks(tmp_path / "pred", pairs, 0)
    write_masks(tmp_path / "truth", pairs, 1)
    out = tmp_path / "report"
    assert main(["inspect", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--classes", ",".join(CLASSES), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "confusion with road" in printed and "report.html" in printed
    assert (out / "report.html").is_file()
    data = json.loads((out / "report.json").read_text())
    assert [row["class"] for row in data["classes"]] == CLASSES


def test_inspect_without_inputs_or_with_both_is_refused(tmp_path, capsys):
    assert main(["inspect", "--out", str(tmp_path)]) == 2
    assert "give a checkpoint" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "best.safetensors"), "--pred", str(tmp_path),
                 "--truth", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not both" in capsys.readouterr().err


def test_inspect_a_checkpoint_scores_its_split_and_reports(tiny_run, tmp_path, capsys):
    config, result = tiny_run
    out = tmp_path / "inspection"
    assert main(["inspect", str(result.run_dir / "best.safetensors"), "--out", str(out),
                 "--quiet"]) == 0
    assert "mIoU" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert len(data["images"]) == config.data.val_samples
    page = (out / "report.html").read_text()
    assert "Worst images" in page
    assert data["training_health"] == [] and "health monitor found nothing" in page


def test_the_report_lists_the_health_monitors_findings(tmp_path):
    inspection = inspect_masks([masks(0)], CLASSES, names=["a.png"])
    finding = {"kind": "collapse", "epoch": 3, "step": 30, "class_name": "car",
               "seen": "predicted on 0.00% <of> the pixels", "cause": "lr too high",
               "fix": "--lr 1e-4", "action": None}
    json_path, html_path = write_inspection_report(inspection, tmp_path, COLOURS,
                                                   health=[finding])
    assert json.loads(json_path.read_text())["training_health"] == [finding]
    page = html_path.read_text()
    assert "<td>car</td>" in page and "0.00% &lt;of&gt; the pixels" in page
    assert "--lr 1e-4" in page
    masks_only = write_inspection_report(inspection, tmp_path / "plain", COLOURS)[1]
    assert "Training health" not in masks_only.read_text()
