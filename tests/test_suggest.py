"""`unetseg suggest`: the uncertainty score against scipy's entropy, the diverse ranking on a
hand-made case, the outputs, and a run on ISBI's unlabelled slices."""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import entropy

from unetseg.checkpoint import read_metadata
from unetseg.cli import main
from unetseg.infer import load_segmenter, predict, tile_for
from unetseg.uncertainty import (
    image_score,
    normalised_entropy,
    rank_diverse,
    rarity_weights,
)

# As in tests/test_data.py: the shared datasets beside the checkout, or UNETSEG_DATASETS.
ISBI = Path(os.environ.get("UNETSEG_DATASETS", Path(__file__).resolve().parents[2] / "shared"
                           / "datasets")) / "isbi2012-membrane"


def test_entropy_is_0_for_a_sure_pixel_and_1_for_a_uniform_guess():
    probs = np.array([[1.0, 1 / 3, 0.5], [0.0, 1 / 3, 0.5], [0.0, 1 / 3, 0.0]])[:, None, :]
    found = normalised_entropy(probs)[0]
    assert found == pytest.approx([0.0, 1.0, math.log(2) / math.log(3)], abs=1e-6)


def test_rare_classes_weigh_more_and_the_median_class_weighs_one():
    weights = rarity_weights([0.81, 0.09, 0.01, 0.0], 4)
    # median of the present shares (0.81, 0.09, 0.01) is 0.09; the absent class weighs as
    # the rarest present one.
    assert weights == pytest.approx([1 / 3, 1.0, 3.0, 3.0])
    assert (rarity_weights(None, 3) == 1).all()


def test_the_score_is_the_mean_of_weighted_entropy():
    entropy_map = np.array([[0.5, 1.0], [0.0, 0.2]])
    labels = np.array([[0, 1], [1, 0]])
    assert image_score(entropy_map, labels, np.array([2.0, 1.0])) == pytest.approx(
        (1.0 + 1.0 + 0.0 + 0.4) / 4)


def test_near_duplicates_of_a_suggestion_are_left_out_naming_it():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    hashes = [0b1111, 0b1110, 0xF0F0, 0x0F0F0000, 0xFFFF0000]     # 1 is 1 bit from 0
    ranked = rank_diverse(scores, hashes, n=2, max_distance=2)
    assert [(r.index, r.rank, r.duplicate_of) for r in ranked] == [
        (0, 1, None), (1, None, 0), (2, 2, None), (3, None, None), (4, None, None)]


# --- the command ---------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "unlabelled"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (40, 56)), ("b", (64, 48)), ("c", (300, 40)), ("d", (48, 48))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            images / f"{name}.png")
    shutil.copy(images / "a.png", images / "e.png")                  # a near-duplicate
    (images / "broken.png").write_bytes(b"not a png")
    return images


def rows(out: Path) -> list[dict]:
    with open(out / "suggest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_suggest_ranks_by_weighted_entropy_and_leaves_duplicates_out(shapes_checkpoint, folder,
                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["suggest", str(shapes_checkpoint), str(folder), "--n", "3", "--out", str(out),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "label these 3 of 5 images first" in printed and "broken.png" not in printed
    table = rows(out)
    assert len(table) == 5
    # Every image, best first; the suggestions ranked 1..3 among them.
    scores = [float(row["score"]) for row in table]
    assert scores == sorted(scores, reverse=True)
    assert [row["rank"] for row in table if row["rank"]] == ["1", "2", "3"]
    by_name = {Path(row["image"]).name: row for row in table}
    duplicate = by_name["e.png"] if by_name["e.png"]["duplicate_of"] else by_name["a.png"]
    assert Path(duplicate["duplicate_of"]).name in {"a.png", "e.png"} and not duplicate["rank"]
    # The score, from scipy's entropy of the calibrated probabilities and the training shares.
    segmenter = load_segmenter(shapes_checkpoint)
    shares = read_metadata(shapes_checkpoint)["data_check"].get("classes")
    weights = rarity_weights(None if not shares else
                             [shares[n]["share"] for n in segmenter.class_names], 3)
    image = np.asarray(Image.open(folder / "c.png"))
    result = predict(segmenter, image, tile=tile_for(segmenter.training_crop), probs=True,
                     temperature=segmenter.temperature)      # 300 px tall: in tiles
    oracle = entropy(result.probs.astype(np.float64), axis=0) / math.log(3)
    assert float(by_name["c.png"]["score"]) == pytest.approx(
        (weights[result.mask] * oracle).mean(), abs=1e-3)
    assert float(by_name["c.png"]["mean_entropy"]) == pytest.approx(oracle.mean(), abs=1e-3)
    sheet = Image.open(out / "suggest.png")
    assert sheet.mode == "RGB" and sheet.size[1] >= 3 * 96
    page = (out / "suggest.html").read_text()
    assert page.count("<img") == 3 and "http" not in page and "near-duplicate of" in page


def test_suggest_refuses_existing_outputs_and_a_count_below_one(shapes_checkpoint, folder,
                                                                tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["suggest", str(shapes_checkpoint), str(folder), "--out", str(out),
                 "--quiet"]) == 0
    before = (out / "suggest.csv").read_bytes()
    assert main(["suggest", str(shapes_checkpoint), str(folder), "--out", str(out),
                 "--quiet"]) == 2
    assert main(["suggest", str(shapes_checkpoint), str(folder), "--n", "0", "--out",
                 str(tmp_path / "other"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "suggest.csv" in err and "--overwrite" in err and "--n must be at least 1" in err
    assert (out / "suggest.csv").read_bytes() == before


@pytest.mark.skipif(not (ISBI / "unlabeled").is_dir(),
                    reason="ISBI-2012 is not in ../shared/datasets here")
def test_suggest_ranks_isbis_unlabelled_slices(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "isbi", "--root", str(ISBI), "--plan", "none",
                 "--max-steps", "2", "--base", "4", "--size", "64", "--batch-size", "2",
                 "--precision", "fp32", "--out", str(run), "--quiet"]) == 0
    assert main(["suggest", str(run / "best.safetensors"), str(ISBI / "unlabeled"), "--n", "5",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = rows(tmp_path / "out")
    assert len(table) == 30 and sum(bool(row["rank"]) for row in table) == 5
