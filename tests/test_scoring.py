"""Scoring a checkpoint on a split (`unetseg.jobs.scoring.score_split`), the one path behind
evaluate, inspect and the demo: it reproduces training's validation, picks the split asked
for, and reads other data with the run's settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetseg.cli import main
from unetseg.config import DataConfig
from unetseg.jobs.evaluate import evaluate_checkpoint
from unetseg.jobs.scoring import data_with_overrides, score_split


def test_evaluate_reproduces_the_validation_scores_training_logged(folder_run, tmp_path,
                                                                   capsys):
    """On images of 40 x 56, which scoring pads as validation did: the best checkpoint scores
    the mIoU and loss logged for its epoch, the last one every number of the last row, by
    `score_split`, by `evaluate_checkpoint` and by `unetseg evaluate`."""
    config, result = folder_run
    history = [json.loads(line) for line in
               (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    recorded = history[result.best_epoch - 1]
    assert recorded["val_miou"] == result.best_miou
    best = result.run_dir / "best.safetensors"

    evaluated = evaluate_checkpoint(best, tmp_path / "evaluation")
    assert evaluated.dataset.sizes == {(40, 56)} and evaluated.images == 4
    assert evaluated.evaluation.scores.miou == pytest.approx(recorded["val_miou"], abs=1e-12)
    assert evaluated.evaluation.loss == pytest.approx(recorded["val_loss"], rel=1e-9)
    assert (tmp_path / "evaluation" / "evaluation.json").is_file()
    assert (tmp_path / "evaluation" / "confusion.png").is_file()

    last = score_split(result.run_dir / "last.safetensors")
    assert last.evaluation.scores.miou == pytest.approx(history[-1]["val_miou"], abs=1e-12)
    assert last.evaluation.loss == pytest.approx(history[-1]["val_loss"], rel=1e-9)
    assert last.evaluation.scores.iou.tolist() == pytest.approx(history[-1]["val_iou"],
                                                                abs=1e-12)

    assert main(["evaluate", str(best), "--out", str(tmp_path / "ev"), "--no-inspect",
                 "--quiet"]) == 0
    assert "over 4 images" in capsys.readouterr().out
    written = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert written["miou"] == pytest.approx(recorded["val_miou"], abs=1e-9)
    assert written["images"] == 4 and written["split"] == "val"


def test_synthetic_splits_are_the_training_validation_and_a_fresh_draw(tiny_run):
    config, result = tiny_run
    checkpoint = result.run_dir / "best.safetensors"
    images = {split: score_split(checkpoint, split, inspect=False).dataset
              for split in ("train", "val", "test")}
    assert len(images["train"]) == config.data.train_samples
    assert len(images["val"]) == len(images["test"]) == config.data.val_samples
    firsts = [images[split].raw(0) for split in ("train", "val", "test")]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.array_equal(firsts[a], firsts[b])
    with pytest.raises(ValueError, match="--split must be one of train, val, test"):
        score_split(checkpoint, "validation")


def test_asking_for_another_source_drops_the_old_sources_file_settings(tmp_path):
    folder = DataConfig(source=str(tmp_path), classes=("a", "b"), val_ratio=0.3)
    moved = data_with_overrides(folder, {"source": "isbi", "root": str(tmp_path)})
    assert moved.source == "isbi" and moved.classes is None and moved.val_ratio == 0.3
    assert data_with_overrides(folder, {"root": None}) == folder
