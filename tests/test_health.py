"""The training health monitor: each finding on hand-made histories, and each case the issue
names provoked on a tiny run (0/255 masks with ignore 255 forced, an lr of 10, a class planted
in one image, NaN injected in bf16), with a healthy run reporting none."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import unetseg.train as train_module
from unetseg.checkpoint import load_checkpoint
from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
from unetseg.health import (
    DataFacts,
    class_shares,
    collapse_streak,
    nonfinite_event,
    validation_events,
)
from unetseg.precision import PrecisionChoice, decide_precision
from unetseg.rundir import read_run_config
from unetseg.train import fit

NAMES = ("background", "road", "sign")


def facts(**changes) -> DataFacts:
    base = DataFacts(NAMES, 255, 0.0, (0.7, 0.25, 0.05), (10, 10, 8), 10, 3e-3, None, ())
    return replace(base, **changes)


def row(epoch, predicted, true=(0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.3), train_loss=1.0,
        val_loss=1.0, miou=0.6) -> dict:
    return {"epoch": epoch, "step": 10 * epoch, "val_true_share": list(true),
            "val_predicted_share": list(predicted), "val_iou": list(iou),
            "train_loss": train_loss, "val_loss": val_loss, "val_miou": miou}


def kinds(events) -> list[tuple[str, str | None]]:
    return [(event.kind, event.class_name) for event in events]


def test_class_shares_are_the_matrix_row_and_column_sums_over_the_counted_pixels():
    matrix = np.array([[50, 10, 0], [5, 30, 5], [0, 0, 0]])
    true, predicted = class_shares(torch.tensor(matrix))
    assert true == pytest.approx(matrix.sum(1) / matrix.sum())
    assert predicted == pytest.approx(matrix.sum(0) / matrix.sum())
    assert class_shares(np.zeros((2, 2))) == ([0.0, 0.0], [0.0, 0.0])


# --- findings on hand-made histories ---------------------------------------------------------

def test_a_collapse_is_reported_once_at_its_second_validation_in_a_row():
    healthy, gone = (0.7, 0.25, 0.05), (0.75, 0.25, 0.0)
    history = [row(1, healthy), row(2, gone)]
    assert validation_events(history, facts()) == []            # one low validation: not yet
    history.append(row(3, gone))
    assert kinds(validation_events(history, facts())) == [("collapse", "sign")]
    history.append(row(4, gone))
    assert validation_events(history, facts()) == []            # said once
    assert collapse_streak(history) == 3


def test_a_class_below_one_percent_of_the_truth_is_never_called_collapsed():
    true = (0.795, 0.2, 0.005)
    history = [row(1, (0.8, 0.2, 0.0), true), row(2, (0.8, 0.2, 0.0), true)]
    assert validation_events(history, facts()) == []
    assert collapse_streak(history) == 0


def test_the_cause_of_a_collapse_comes_from_the_data_check_and_the_losses():
    gone = (0.75, 0.25, 0.0)
    history = [row(1, gone), row(2, gone)]
    (ignored,) = validation_events(history, facts(ignored_share=0.4))
    assert "40.0% of the training pixels are ignore_index 255" in ignored.cause
    assert "remove it" in ignored.fix
    (one_image,) = validation_events(history, facts(images=(10, 10, 1)))
    assert "sign is in 1 of the 10 training images" in one_image.cause
    exploded = [row(1, gone, val_loss=0.5), row(2, gone, val_loss=900.0)]
    (lr,) = validation_events(exploded, facts(lr=10.0))
    assert "learning rate (10) is too high" in lr.cause and "--lr (try 1)" in lr.fix
    (rare,) = validation_events(history, facts(pixel_share=(0.79, 0.2, 0.005)))
    assert "--class-weights sqrt-median" in rare.fix


def test_one_class_everywhere_is_named_when_the_truth_is_one_class_too():
    all_background = (1.0, 0.0, 0.0)
    history = [row(1, all_background, true=all_background),
               row(2, all_background, true=all_background)]
    (event,) = validation_events(history, facts(ignored_share=0.3))
    assert event.kind == "one_class" and "predicts background on 100.00%" in event.seen
    assert "ignore_index 255" in event.cause


def test_a_class_that_rose_and_fell_below_half_its_best_is_reported_once():
    history = [row(1, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.05)),
               row(2, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.4)),
               row(3, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.25))]
    assert validation_events(history, facts()) == []            # 0.25 is above half of 0.4
    history.append(row(4, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.1)))
    (event,) = validation_events(history, facts())
    assert (event.kind, event.class_name) == ("fell_back", "sign")
    assert "fell to 0.100 from its best 0.400 (epoch 2)" in event.seen
    history.append(row(5, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.05)))
    assert validation_events(history, facts()) == []            # still down: said once


def test_a_class_that_never_rose_above_a_tenth_is_not_called_fallen():
    history = [row(1, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.09)),
               row(2, (0.7, 0.25, 0.05), iou=(0.9, 0.6, 0.01))]
    assert validation_events(history, facts()) == []


def test_overfitting_is_validation_loss_rising_three_times_while_training_loss_falls():
    losses = [(1.0, 0.80), (0.8, 0.60), (0.6, 0.70), (0.5, 0.75), (0.4, 0.80)]
    history = []
    found = []
    for epoch, (train_loss, val_loss) in enumerate(losses, 1):
        history.append(row(epoch, (0.7, 0.25, 0.05), train_loss=train_loss, val_loss=val_loss,
                           miou=0.7 - 0.01 * epoch))
        found.append(kinds(validation_events(history, facts())))
    assert found == [[], [], [], [], [("overfitting", None)]]
    event = validation_events(history, facts())[0]
    assert "from 0.6 (epoch 2, its lowest) to 0.8" in event.seen
    assert "keeps epoch 1" in event.fix                          # the best mIoU's
    both_rise = [dict(r, train_loss=1.0 + 0.1 * i) for i, r in enumerate(history)]
    assert validation_events(both_rise, facts()) == []


def test_a_non_finite_streak_in_bf16_falls_back_to_fp32_and_in_fp32_names_the_lr():
    assert nonfinite_event(2, 10, 2, 1, 10, "bf16", 1e-3) is None
    bf16 = nonfinite_event(3, 10, 3, 1, 10, "bf16", 1e-3)
    assert bf16.action == "fp32" and "3 of the last 10 steps" in bf16.seen
    fp32 = nonfinite_event(5, 10, 5, 1, 10, "fp32", 1e-2)
    assert fp32.action is None and "--lr (try 0.001)" in fp32.fix
    assert nonfinite_event(1, 10, 1, 1, 10, "fp32", 1e-2, at_least=1) is not None
    # fp16's gradient scaler skips steps while it finds its scale: only a streak counts.
    assert nonfinite_event(6, 10, 2, 1, 10, "fp16", 1e-3, at_least=5) is None
    assert nonfinite_event(6, 10, 5, 1, 10, "fp16", 1e-3, at_least=5).action == "fp32"


def test_a_run_that_fell_back_resumes_in_fp32_whatever_it_asks():
    recorded = PrecisionChoice("fp32", {}, "fell back from bf16 at step 5", True).to_dict()
    choice = decide_precision("bf16", torch.device("cpu"), recorded=recorded)
    assert (choice.precision, choice.fell_back) == ("fp32", True)
    assert "fell_back" not in PrecisionChoice("bf16").to_dict()


def test_rows_written_before_the_monitor_are_not_judged():
    old = [{k: v for k, v in row(e, (1.0, 0.0, 0.0)).items() if k != "val_predicted_share"}
           for e in (1, 2)]
    assert validation_events(old, facts()) == [] and collapse_streak(old) == 0


# --- each case provoked on a tiny run --------------------------------------------------------

def health_rows(run) -> list[list[dict]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["health"] for line in lines]


def folder_config(source, out, **train) -> RunConfig:
    return RunConfig(data=DataConfig(source=str(source), size=32, batch_size=4, val_ratio=0.25),
                     model=UNetConfig(base=4),
                     train=TrainConfig(**{"out": str(out), "epochs": 3, "lr": 1e-2,
                                          "progress": False, "precision": "fp32", **train}))


def test_a_healthy_run_reports_nothing(tiny_run):
    # A run that predicts every class by its second validation. A 6-step run that has not
    # yet predicted a class is told so, as a young run may be: a finding, not health.
    _, result = tiny_run
    assert all(row["health"] == [] for row in result.history)
    assert all(events == [] for events in health_rows(result.run_dir))


def test_0_255_masks_with_ignore_255_forced_are_named_as_the_cause(tmp_path, make_box_folder,
                                                                   caplog):
    caplog.set_level(logging.INFO, logger="unetseg")
    data = make_box_folder(tmp_path / "data", 16, size=(40, 56), seed=0)
    for mask in (data / "masks").glob("*.png"):
        Image.fromarray((np.array(Image.open(mask)) * 255).astype(np.uint8)).save(mask)
    (data / "dataset.yaml").write_text(yaml.safe_dump({"classes": ["background", "box"],
                                                       "ignore_index": 255}))
    result = fit(folder_config(data, tmp_path / "run"))
    events = [event for events in health_rows(result.run_dir) for event in events]
    assert [event["kind"] for event in events] == ["one_class"]
    assert "ignore_index 255" in events[0]["cause"]
    assert "health (epoch 2, step 6): the model predicts background" in caplog.text


def test_an_lr_of_10_collapses_the_classes_and_names_the_lr_and_patience_stops_it(
        tmp_path, make_tiny_config, caplog):
    caplog.set_level(logging.INFO, logger="unetseg")
    result = fit(make_tiny_config(tmp_path / "run", epochs=8, lr=10.0, precision="fp32",
                                  patience=2))
    events = [event for events in health_rows(result.run_dir) for event in events]
    kinds_found = {event["kind"] for event in events}
    # The classes vanish; a class that had risen may be named as fallen back too.
    assert kinds_found & {"collapse", "one_class"}
    assert kinds_found <= {"collapse", "one_class", "fell_back"}
    assert any("learning rate (10) is too high" in event["cause"] for event in events)
    assert "health (epoch" in caplog.text
    assert len(result.history) < 8                               # stopped early


def test_a_class_planted_in_one_image_is_reported_with_its_image_count(tmp_path,
                                                                       make_box_folder):
    make_box_folder(tmp_path / "data" / "train", 12, size=(40, 56), seed=0, dataset_file=False)
    make_box_folder(tmp_path / "data" / "val", 4, size=(40, 56), seed=1, dataset_file=False)
    mask = tmp_path / "data" / "val" / "masks" / "0.png"
    planted = np.array(Image.open(mask))
    planted[:16, -16:] = 2
    Image.fromarray(planted).save(mask)
    (tmp_path / "data" / "dataset.yaml").write_text(
        yaml.safe_dump({"classes": ["background", "box", "rare"]}))
    result = fit(folder_config(tmp_path / "data", tmp_path / "run"))
    events = [event for events in health_rows(result.run_dir) for event in events]
    assert [(event["kind"], event["class_name"]) for event in events] == [("collapse", "rare")]
    assert "rare is in 0 of the 12 training images" in events[0]["cause"]


def test_nan_in_bf16_falls_back_to_fp32_for_the_rest_of_the_run(tmp_path, make_tiny_config,
                                                                monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="unetseg")
    real = train_module.build_model

    def nan_under_autocast(*args, **kwargs):      # what a bf16 overflow looks like downstream
        model = real(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: output * float("nan")
                                    if torch.is_autocast_enabled("cpu") else output)
        return model

    monkeypatch.setattr(train_module, "build_model", nan_under_autocast)
    result = fit(make_tiny_config(tmp_path / "run", epochs=2, precision="bf16"))
    (event,) = health_rows(result.run_dir)[0]
    assert (event["kind"], event["action"]) == ("nonfinite", "fp32")
    assert "falls back to fp32" in caplog.text
    assert read_run_config(result.run_dir)["runtime"]["fell_back"] is True
    assert load_checkpoint(result.run_dir / "last.safetensors").metadata["precision"] == "fp32"
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    assert len(result.history) == 2                               # it went on to the end
