"""The jobs behind the commands: one scoring path for evaluate, inspect and the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from unetseg.cli import main
from unetseg.config import DataConfig
from unetseg.jobs.evaluate import evaluate_checkpoint
from unetseg.jobs.inspect import inspect_checkpoint
from unetseg.jobs.scoring import data_with_overrides, score_split


def shapes_folder(root, count: int, height: int = 40, width: int = 56):
    """An images/ + masks/ folder of ``count`` grey images holding a bright rectangle (class 1)
    on a dark background, with a dataset file."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        mask = np.zeros((height, width), dtype=np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top:top + height // 3, left:left + width // 3] = 1
        image = (40 + 160 * mask + rng.normal(0, 20, mask.shape)).clip(0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": ["background", "box"]}))
    return root


def test_evaluate_and_inspect_give_the_same_confusion_matrix(tmp_path):
    """One scoring path: on a height that is not a multiple of 16 (40 px), where padding would
    change the predictions, both commands count exactly the same pixels."""
    data = shapes_folder(tmp_path / "data", 10)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--size", "32", "--batch-size", "4",
                 "--epochs", "1", "--base", "4", "--quiet", "--out", str(run)]) == 0
    checkpoint = run / "best.safetensors"
    evaluated = evaluate_checkpoint(checkpoint, tmp_path / "evaluation")
    inspection = inspect_checkpoint(checkpoint, tmp_path / "inspection")
    assert evaluated.dataset.sizes == {(40, 56)}
    np.testing.assert_array_equal(evaluated.evaluation.scores.matrix.numpy(),
                                  inspection.confusion)
    np.testing.assert_array_equal(evaluated.inspection.confusion, inspection.confusion)
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert evaluated.evaluation.scores.miou == pytest.approx(logged["val_miou"], abs=1e-12)
    assert evaluated.evaluation.loss == pytest.approx(logged["val_loss"], rel=1e-9)


def test_score_split_reproduces_the_logged_validation(tiny_run):
    _, result = tiny_run
    row = result.history[-1]
    scored = score_split(result.run_dir / "last.safetensors")
    assert scored.evaluation.scores.miou == pytest.approx(row["val_miou"], abs=1e-12)
    assert scored.evaluation.loss == pytest.approx(row["val_loss"], rel=1e-9)
    assert scored.evaluation.scores.iou.tolist() == pytest.approx(row["val_iou"], abs=1e-12)


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


def test_evaluate_writes_the_image_count(tiny_run, tmp_path, capsys):
    config, result = tiny_run
    assert main(["evaluate", str(result.run_dir / "best.safetensors"), "--out",
                 str(tmp_path / "ev"), "--quiet"]) == 0
    assert f"over {config.data.val_samples} images" in capsys.readouterr().out
    written = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert written["images"] == config.data.val_samples and written["split"] == "val"
