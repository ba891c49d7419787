"""A command never silently loses work or gives a wrong answer: each test here is a case that
did, before the jobs (`unetseg.jobs`) and the report were changed to refuse or handle it."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

import unetseg.jobs.evaluate as evaluate_job
import unetseg.jobs.inspect as inspect_job
import unetseg.jobs.predict as predict_job
from unetseg.inspector import inspect_masks
from unetseg.jobs.evaluate import evaluate_checkpoint
from unetseg.jobs.inspect import inspect_checkpoint, inspect_folders
from unetseg.jobs.predict import PredictOptions, predict_files
from unetseg.report.figures import breakdown_bars, iou_bars, recall_bars, share_bars
from unetseg.report.inspection import write_inspection_report
from unetseg.report.tables import inspection_table, worst_first

COLOURS = [(0, 0, 0), (200, 30, 30)]


def box_masks(count: int, height: int = 24, width: int = 32) -> list[np.ndarray]:
    """``count`` class-index masks (0 background, 1 a box at a different place in each)."""
    masks = []
    for i in range(count):
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[2 + i:12 + i, 3 + 2 * i:15 + 2 * i] = 1
        masks.append(mask)
    return masks


def save(folder, name: str, array: np.ndarray, palette: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode="P" if palette else None)
    if palette:
        image.putpalette([v for colour in COLOURS for v in colour])
    image.save(folder / name)


# --- 1. inspect --pred reads predictions as class indices ----------------------------------------

def test_inspect_with_a_remapping_dataset_file_leaves_the_predictions_alone(tmp_path):
    """Truth stored as 1 (background) / 2 (box), remapped to 0 / 1 by the dataset file; the
    predictions are already 0 / 1. Remapping them too turned every box pixel into background
    and scored a perfect prediction as box IoU 0."""
    masks = box_masks(2)
    for i, mask in enumerate(masks):
        save(tmp_path / "pred", f"m{i}.png", mask, palette=True)   # as `unetseg predict` writes
        save(tmp_path / "truth", f"m{i}.png", mask + 1)
    spec = tmp_path / "dataset.yaml"
    spec.write_text(yaml.safe_dump({"classes": ["background", "box"], "remap": {1: 0, 2: 1}}))
    inspection = inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out",
                                 str(spec))
    assert [row["iou"] for row in inspection.classes] == [1.0, 1.0]


@pytest.mark.parametrize("classes", ["background,membrane", None])
def test_inspect_reads_0_255_truth_masks_as_training_does(tmp_path, caplog, classes):
    """0/255 true masks: with --classes, 255 became ignore and membrane showed 0% true
    pixels (mIoU 0.257); without, one class was found and mIoU read 1.0. They are read by the
    rule training reads them by: 255 is class 1, and the log says so."""
    caplog.set_level("INFO", logger="unetseg")
    masks = box_masks(3)
    for i, mask in enumerate(masks):
        save(tmp_path / "pred", f"m{i}.png", mask, palette=True)    # as `unetseg predict` writes
        save(tmp_path / "truth", f"m{i}.png", (mask * 255).astype(np.uint8))
    inspection = inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out",
                                 classes)
    assert len(inspection.classes) == 2 and inspection.ignored_pixels == 0
    assert [row["iou"] for row in inspection.classes] == [1.0, 1.0]
    assert inspection.classes[1]["true_share"] == pytest.approx(
        sum(int(m.sum()) for m in masks) / sum(m.size for m in masks))
    assert "masks hold only the values 0 and 255 for 2 classes" in caplog.text
    assert "255 is read as class 1" in caplog.text


def test_inspecting_0_255_predictions_reads_them_as_two_classes_or_names_the_file(
        tmp_path, caplog):
    """Issue 22: 0/255 predictions failed with "labels must lie in [0, 2) ... (and not the
    ignore label 255) ... [255]", the truth's valid labels listed as offending. Two-class
    predictions of 0 and 255 read 255 as class 1, as true masks do, and say so; a value that
    is no class is refused naming the file that holds it."""
    caplog.set_level("INFO", logger="unetseg")
    masks = box_masks(3)
    for i, mask in enumerate(masks):
        save(tmp_path / "pred", f"m{i}.png", (mask * 255).astype(np.uint8))
        save(tmp_path / "truth", f"m{i}.png", mask)
    inspection = inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out",
                                 "background,box")
    assert [row["iou"] for row in inspection.classes] == [1.0, 1.0]
    assert "predicted masks hold only the values 0 and 255: 255 is read as class 1" in (
        caplog.text)
    save(tmp_path / "pred", "m1.png", (masks[1] * 7).astype(np.uint8))   # 0, 7 and 255 found
    with pytest.raises(ValueError, match=r"m1.png: predicted value 7 is not a class 0..1 "
                                         r"\(background, box\); --pred masks hold class indices"):
        inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out2",
                        "background,box")


def test_inspect_takes_a_predict_output_folder_as_it_is(tmp_path):
    """summary.json, overlays and probabilities beside the masks made it fail (not an image,
    or overlays without a true mask); only the masks are predictions."""
    masks = box_masks(2)
    pred = tmp_path / "pred"
    for i, mask in enumerate(masks):
        save(pred, f"m{i}.png", mask, palette=True)
        save(pred, f"m{i}_overlay.png", np.stack([mask * 200] * 3, axis=-1))
        np.save(pred / f"m{i}_probs.npy", np.zeros((2, *mask.shape), np.float16))
        save(tmp_path / "truth", f"m{i}.png", mask)
    (pred / "summary.json").write_text(json.dumps({"images": {}, "failed": {}}))
    inspection = inspect_folders(pred, tmp_path / "truth", tmp_path / "out", "background,box")
    assert inspection.image_names == ["m0.png", "m1.png"]
    assert [row["iou"] for row in inspection.classes] == [1.0, 1.0]


def test_inspect_still_refuses_a_true_mask_without_a_prediction(tmp_path):
    masks = box_masks(2)
    save(tmp_path / "pred", "m0.png", masks[0], palette=True)
    for i, mask in enumerate(masks):
        save(tmp_path / "truth", f"m{i}.png", mask)
    with pytest.raises(ValueError, match=r"true masks without a prediction in --pred .*'m1'"):
        inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out", "a,b")


# --- 2. predict: one input's outputs never land on another's -------------------------------------

def test_predict_refuses_an_input_named_like_another_inputs_overlay(tmp_path):
    """a.png's overlay and a_overlay.png's mask are both out/a_overlay.png: one overwrote the
    other without a word."""
    for name in ("a.png", "a_overlay.png"):
        save(tmp_path / "in", name, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png and .*a_overlay\.png would both write "
                                         r".*a_overlay\.png \(the overlay of a\.png and the "
                                         r"mask of a_overlay\.png\)"):
        predict_files(None, [str(tmp_path / "in")], tmp_path / "out")
    assert not (tmp_path / "out").exists()                       # nothing written


def test_predict_refuses_two_inputs_with_one_stem(tmp_path):
    save(tmp_path / "in", "a.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "in", "a.bmp", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"would both write .*a\.png \(the mask of a\.bmp and "
                                         r"the mask of a\.png\)"):
        predict_files(None, [str(tmp_path / "in")], tmp_path / "out")


# --- 3. evaluate and inspect never replace a report without --overwrite ---------------------------

def no_scoring(*args, **kwargs):
    raise AssertionError("scored before checking the outputs")


@pytest.mark.parametrize("existing", ["evaluation.json", "confusion.png", "report.json",
                                      "report.html"])
def test_evaluate_refuses_to_replace_an_existing_output(tmp_path, monkeypatch, existing):
    (tmp_path / existing).write_text("keep me")
    monkeypatch.setattr(evaluate_job, "score_split", no_scoring)
    with pytest.raises(ValueError, match=rf"--out .* already holds {existing}; choose another "
                                         r"--out, or pass --overwrite to replace it"):
        evaluate_checkpoint(tmp_path / "best.safetensors", tmp_path)
    assert (tmp_path / existing).read_text() == "keep me"


def test_inspect_refuses_to_replace_an_existing_report(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.html").write_text("keep me")
    monkeypatch.setattr(inspect_job, "score_split", no_scoring)
    with pytest.raises(ValueError, match="already holds report.html.*pass --overwrite to replace"):
        inspect_checkpoint(tmp_path / "best.safetensors", tmp_path / "out")
    masks = box_masks(1)
    save(tmp_path / "pred", "m0.png", masks[0])
    save(tmp_path / "truth", "m0.png", masks[0])
    with pytest.raises(ValueError, match="already holds report.html.*pass --overwrite to replace"):
        inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out", "a,b")
    inspect_folders(tmp_path / "pred", tmp_path / "truth", tmp_path / "out", "a,b",
                    overwrite=True)
    assert (tmp_path / "out" / "report.html").read_text() != "keep me"


# --- 4. Ctrl-C during predict keeps the finished images -----------------------------------------

PREDICTOR = SimpleNamespace(num_classes=2, colours=COLOURS, class_names=["background", "box"])


@pytest.fixture
def three_images(tmp_path):
    for i in range(3):
        save(tmp_path / "in", f"im{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    return tmp_path / "in"


def predict_sending_ctrl_c(on_call: int, times: int):
    """A stand-in for `unetseg.infer.predict` that presses Ctrl-C ``times`` during the
    ``on_call``-th image, as a user would."""
    calls = []

    def fake(predictor, image, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return SimpleNamespace(mask=np.zeros(image.shape[:2], np.uint8))
    return fake


def test_ctrl_c_during_predict_finishes_the_image_and_writes_the_summary(
        three_images, tmp_path, monkeypatch, capsys):
    """A Ctrl-C used to abort with no summary.json, the finished masks unlisted."""
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(predict_job, "predict", predict_sending_ctrl_c(on_call=2, times=1))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt, match="after 2 of 3 images"):
        predict_files(PREDICTOR, [str(three_images)], out, PredictOptions(progress=False))
    assert "stopping after this image; Ctrl-C again to abort" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert sorted(summary["images"]) == ["im0", "im1"]
    assert summary["remaining"] == [str(three_images / "im2.png")]
    assert (out / "im1.png").is_file() and (out / "im1_overlay.png").is_file()
    assert not (out / "im2.png").exists()
    assert signal.getsignal(signal.SIGINT) is handler              # put back


def test_a_second_ctrl_c_aborts_the_image_and_still_lists_the_finished_ones(
        three_images, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_job, "predict", predict_sending_ctrl_c(on_call=2, times=2))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_files(PREDICTOR, [str(three_images)], out, PredictOptions(progress=False))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and sorted(summary["images"]) == ["im0"]
    assert not (out / "im1.png").exists() and not list(out.glob(".*.tmp"))


def test_a_finished_predict_says_it_was_not_interrupted(three_images, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_job, "predict", predict_sending_ctrl_c(on_call=0, times=0))
    report = predict_files(PREDICTOR, [str(three_images)], tmp_path / "out",
                           PredictOptions(progress=False))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["remaining"] == []
    assert len(report.written) == 6


def test_predict_counts_the_gif_and_webp_files_it_skips(three_images, tmp_path, monkeypatch):
    """Issue 22: GIF and WebP inputs in a folder were passed over without a word."""
    monkeypatch.setattr(predict_job, "predict", predict_sending_ctrl_c(on_call=0, times=0))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(three_images / "anim.gif")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(three_images / "photo.webp")
    (three_images / ".DS_Store").write_bytes(b"")                    # the OS's, not the user's
    report = predict_files(PREDICTOR, [str(three_images)], tmp_path / "out",
                           PredictOptions(progress=False))
    skipped = json.loads((tmp_path / "out" / "summary.json").read_text())["skipped"]
    assert skipped == report.skipped
    assert sorted(skipped) == [str(three_images / "anim.gif"), str(three_images / "photo.webp")]
    assert all(why.startswith("not an image unetseg reads (.png,") for why in skipped.values())


# --- 5. the report says how many images and how much was ignored ---------------------------------

def test_report_states_the_image_count_and_the_ignored_share(tmp_path):
    """The scores rested on an unstated part of the pixels: a quarter ignored looked like none."""
    masks = box_masks(2)
    truths = [mask.astype(np.int64) for mask in masks]
    for truth in truths:
        truth[:6] = 255                                           # 6 of 24 rows: 25%
    inspection = inspect_masks(zip(masks, truths), ["background", "box"])
    assert inspection.ignored_pixels == 2 * 6 * 32 and inspection.ignored_share == 0.25
    json_path, html_path = write_inspection_report(inspection, tmp_path, COLOURS)
    saved = json.loads(json_path.read_text())
    assert saved["ignored_share"] == 0.25 and saved["pixels"] == 2 * 24 * 32
    assert "mIoU 1.0000 over 2 images; 25.0% of the pixels ignored" in html_path.read_text()
    assert inspection_table(inspection).splitlines()[-1] == (
        "mIoU 1.0000 over 2 images; 25.0% of the pixels ignored")


def test_a_few_ignored_pixels_do_not_read_as_none():
    truth = np.zeros((100, 100), np.int64)
    truth[0, 0] = 255
    inspection = inspect_masks([(np.zeros_like(truth), truth)], ["background", "box"])
    assert inspection_table(inspection).endswith("<0.1% of the pixels ignored")


@pytest.mark.parametrize("chart", [iou_bars, share_bars, recall_bars, breakdown_bars])
@pytest.mark.parametrize("classes", [1, 3, 12])
def test_bar_chart_legends_cover_no_bars_or_axis_labels(chart, classes):
    """The legends sat inside the axes (lower right), over the bars of the best classes."""
    names = [f"class {i}" for i in range(classes)]
    masks = box_masks(3)
    inspection = inspect_masks([(np.clip(m, 0, classes - 1), m % classes) for m in masks], names)
    rows = worst_first(inspection)
    figure = chart(rows, inspection.miou) if chart is iou_bars else chart(rows)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    legends = figure.legends + ([ax.get_legend()] if ax.get_legend() else [])
    taken = [ax.get_window_extent(renderer), ax.xaxis.get_tightbbox(renderer),
             ax.yaxis.get_tightbbox(renderer), ax.title.get_window_extent(renderer)]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    assert not any(box.overlaps(other) for other in taken)     # bars, ticks, labels, title
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)


# --- 6. progress in a log is lines, not carriage-return frames -----------------------------------

@pytest.mark.parametrize("count,most_lines", [(3, 3), (25, 13)])
def test_predict_prints_plain_progress_lines_when_not_a_terminal(tmp_path, monkeypatch, capsys,
                                                                 count, most_lines):
    """tqdm redrew its bar with carriage returns into a log file: one long line of frames."""
    for i in range(count):
        save(tmp_path / "in", f"im{i:02d}.png", np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(predict_job, "predict", predict_sending_ctrl_c(on_call=0, times=0))
    predict_files(PREDICTOR, [str(tmp_path / "in")], tmp_path / "out",
                  PredictOptions(progress=True))
    err = capsys.readouterr().err                              # a capture is no terminal
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith("images: ")]
    assert 0 < len(progress) <= most_lines                     # about one per tenth
    assert progress[-1].startswith(f"images: {count}/{count} images")
