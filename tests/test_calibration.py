"""Calibration: ECE against torchmetrics and a hand-computed case, the temperature against
its closed form, the pixel sample's independence from batching."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchmetrics.classification import MulticlassCalibrationError

from unetseg import calibration
from unetseg.calibration import (
    CalibrationBins,
    PixelSample,
    fit_temperature,
    probabilities,
)
from unetseg.checkpoint import add_metadata, load_model, read_metadata
from unetseg.cli import main
from unetseg.infer import load_segmenter, predict
from unetseg.report.images import confidence_grey


def test_ece_of_a_hand_computed_case():
    # Four pixels of 2 classes. Confidences 0.9, 0.9 (bin 13), 0.6 (bin 9), 0.55 (bin 8);
    # right, wrong, right, wrong. Bin gaps: |0.9 - 0.5| * 2, |0.6 - 1|, |0.55 - 0|.
    p = torch.tensor([0.9, 0.9, 0.6, 0.45])               # probability of class 1
    probs = torch.stack([1 - p, p])[None, :, None, :]      # (1, 2, 1, 4)
    truth = torch.tensor([[[1, 0, 1, 1]]])
    bins = CalibrationBins(2, ignore_index=None)
    bins.update(probs, truth)
    found = bins.compute()
    assert found.ece == pytest.approx((0.8 + 0.4 + 0.55) / 4)
    # Class 1 was predicted on pixels 0-2, class 0 on pixel 3 (confidence 0.55, wrong).
    assert found.class_ece == pytest.approx([0.55, (0.8 + 0.4) / 3])
    assert found.counts[13] == 2 and found.accuracy[13] == pytest.approx(0.5)
    assert np.isnan(found.confidence[0])                    # an empty bin


def test_ece_equals_torchmetrics_over_the_counted_pixels_of_many_batches():
    generator = torch.Generator().manual_seed(0)
    metric = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1", ignore_index=255)
    bins = CalibrationBins(4, ignore_index=255)
    for _ in range(3):
        probs = (torch.randn(2, 4, 16, 20, generator=generator) * 2).softmax(1)
        truth = torch.randint(0, 4, (2, 16, 20), generator=generator)
        truth[:, :3] = 255
        metric.update(probs, truth)
        bins.update(probs, truth)
    assert bins.compute().ece == pytest.approx(metric.compute().item(), abs=1e-6)


def test_a_single_binary_logit_gives_the_sigmoid_and_its_complement():
    z = torch.tensor([-2.0, 0.0, 3.0]).view(1, 1, 1, 3)
    probs = probabilities(z, temperature=2.0)
    assert probs[0, 1, 0] == pytest.approx(torch.sigmoid(z / 2)[0, 0, 0])
    assert probs.sum(1) == pytest.approx(torch.ones(1, 1, 3))


def test_the_temperature_is_the_closed_form_of_a_hand_made_case():
    # Every pixel has logits (0, 2), and 3 in 4 are class 1: the NLL is least where
    # sigmoid(2 / T) = 3/4, at T = 2 / ln 3.
    logits = torch.tensor([[0.0, 2.0]]).repeat(400, 1)
    labels = torch.tensor([1, 1, 1, 0]).repeat(100)
    assert fit_temperature(logits, labels) == pytest.approx(2 / math.log(3), rel=1e-4)
    # A binary model's one logit gives the same.
    assert fit_temperature(logits[:, 1:], labels) == pytest.approx(2 / math.log(3), rel=1e-4)
    assert fit_temperature(torch.empty(0, 2), torch.empty(0, dtype=torch.long)) == 1.0


def test_scaling_an_over_confident_model_lowers_its_ece_and_keeps_its_predictions():
    generator = torch.Generator().manual_seed(1)
    truth = torch.randint(0, 3, (4, 24, 24), generator=generator)
    # Logits that favour the truth a little, made 5x too sharp.
    logits = 5 * (torch.nn.functional.one_hot(truth, 3).permute(0, 3, 1, 2) * 1.0
                  + torch.randn(4, 3, 24, 24, generator=generator))
    sample = PixelSample()
    sample.add(logits, truth, None)
    temperature = fit_temperature(sample.logits, sample.labels)
    assert temperature > 1
    before, after = CalibrationBins(3, None), CalibrationBins(3, None)
    before.update(probabilities(logits), truth)
    after.update(probabilities(logits, temperature), truth)
    assert after.compute().ece < before.compute().ece
    assert torch.equal(probabilities(logits).argmax(1),
                       probabilities(logits, temperature).argmax(1))
    # Every image equally over-confident: the T fitted on half of them carries over to the
    # other half, so it is applied.
    fitted = calibration.fit_sample(sample, 3)
    assert fitted.temperature == fitted.fitted == pytest.approx(temperature)
    assert fitted.crossed[1] < fitted.crossed[0]


def test_the_pixel_sample_does_not_depend_on_how_the_pixels_are_batched():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, 10, 10, generator=generator)
    masks = torch.randint(0, 3, (4, 10, 10), generator=generator)
    masks[0, 0] = 255
    whole, batched = PixelSample(limit=50), PixelSample(limit=50)
    whole.add(logits, masks, 255)
    for i in range(4):
        batched.add(logits[i:i + 1], masks[i:i + 1], 255)
    order = whole.keys.argsort(), batched.keys.argsort()
    assert len(whole.labels) == 50 and (whole.labels != 255).all()
    assert torch.equal(whole.logits[order[0]], batched.logits[order[1]])


# --- in training and evaluation ------------------------------------------------------------

def test_training_records_a_temperature_that_does_not_raise_the_validation_nll(tiny_run):
    _, result = tiny_run
    recorded = read_metadata(result.run_dir / "best.safetensors")["calibration"]
    assert recorded["temperature"] > 0 and recorded["fitted_on"] == "validation"
    assert recorded["pixels"] == 24 * 32 * 32             # the whole (small) split
    # T = 1 is among the candidates, so the fitted T can only lower the NLL.
    assert recorded["nll_after"] <= recorded["nll_before"] + 1e-6
    # Applied only where the cross-check between halves of the images did not get worse.
    applied = recorded["temperature"] == recorded["fitted_temperature"]
    assert applied == (recorded["crossed_ece_after"] <= recorded["crossed_ece_before"])
    assert load_model(result.run_dir / "best.safetensors")[0] is not None


def test_evaluate_reports_ece_before_and_after_as_the_fit_measured_it(tiny_run, tmp_path,
                                                                        capsys):
    _, result = tiny_run
    best = result.run_dir / "best.safetensors"
    assert main(["evaluate", str(best), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "calibration error (ECE, 15 bins)" in out and "after temperature scaling" in out
    found = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["calibration"]
    recorded = read_metadata(best)["calibration"]
    assert found["temperature"] == recorded["temperature"]
    # The fit saw every validation pixel, so the split's ECE is the fit's.
    assert found["before"]["ece"] == pytest.approx(recorded["ece_before"], abs=1e-4)
    assert found["after"]["ece"] == pytest.approx(recorded["ece_after"], abs=1e-4)
    assert set(found["after"]["class_ece"]) == {"background", "circle", "square"}
    # The inspector's report draws them as a reliability diagram and keeps the numbers.
    report = json.loads((tmp_path / "eval" / "report.json").read_text())["calibration"]
    assert report["after"]["ece"] == found["after"]["ece"]
    assert "alt='Reliability'" in (tmp_path / "eval" / "report.html").read_text()


# --- the confidence map ----------------------------------------------------------------------

def test_the_confidence_map_is_the_top_scaled_softmax_whole_and_tiled(shapes_checkpoint):
    segmenter = load_segmenter(shapes_checkpoint)
    temperature = read_metadata(shapes_checkpoint)["calibration"]["temperature"]
    assert segmenter.temperature == temperature
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    whole = predict(segmenter, image, precision="fp32", temperature=temperature,
                    confidence=True)
    with torch.inference_mode():
        logits = segmenter(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    expected = (logits / temperature).softmax(1).max(1).values[0].numpy()
    np.testing.assert_allclose(whole.confidence, expected, atol=1e-6)
    # One tile covering the image, constant weights: the whole image's map, exactly.
    covering = predict(segmenter, image, tile=48, blend="constant", precision="fp32",
                       temperature=temperature, confidence=True)
    np.testing.assert_array_equal(covering.confidence, whole.confidence)
    # Overlapping tiles: the top class's share of the blended (scaled) probabilities.
    large = np.random.default_rng(1).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    tiled = predict(segmenter, large, tile=32, overlap=0.5, precision="fp32",
                    temperature=temperature, confidence=True, probs=True)
    np.testing.assert_allclose(tiled.confidence, tiled.probs.astype(np.float32).max(0),
                               atol=1e-3)


def test_predict_writes_the_confidence_map_as_8_bit_grey(shapes_checkpoint, tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["predict", str(shapes_checkpoint), str(tmp_path / "in"), "--out", str(out),
                 "--confidence", "--precision", "fp32", "--quiet"]) == 0
    written = Image.open(out / "a_confidence.png")
    assert written.mode == "L" and written.size == (56, 40)
    segmenter = load_segmenter(shapes_checkpoint)
    expected = predict(segmenter, image, precision="fp32", temperature=segmenter.temperature,
                       confidence=True).confidence
    np.testing.assert_array_equal(np.asarray(written), confidence_grey(expected))


def test_calibrate_fits_an_older_checkpoint_as_training_does_and_keeps_every_tensor(
        tiny_run, tmp_path, capsys):
    _, result = tiny_run
    best = result.run_dir / "best.safetensors"
    older = tmp_path / "older.safetensors"
    metadata = {k: v for k, v in read_metadata(best).items() if k != "calibration"}
    add_metadata(best, older, {})                         # a copy...
    path = tmp_path / "older-plain.safetensors"
    save_file(load_file(older), path, metadata={"unetseg": json.dumps(metadata)})
    assert "calibration" not in read_metadata(path)       # ...from before calibration
    assert main(["calibrate", str(path), "--out", str(tmp_path / "calibrated.safetensors")]) == 0
    assert "calibration: temperature" in capsys.readouterr().out
    fitted = read_metadata(tmp_path / "calibrated.safetensors")["calibration"]
    assert fitted["temperature"] == pytest.approx(
        read_metadata(best)["calibration"]["temperature"], rel=1e-4)
    before, after = load_file(path), load_file(tmp_path / "calibrated.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert "calibration" not in read_metadata(path)       # --out: the original is left alone


def test_a_temperature_that_would_raise_the_ece_is_not_applied(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 3, 16, 16, generator=generator)
    # Labels drawn from the model's own probabilities: calibrated as it is.
    labels = torch.multinomial(logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3), 1,
                               generator=generator).view(1, 16, 16)
    sample = PixelSample()
    sample.add(logits, labels, None)
    monkeypatch.setattr(calibration, "fit_temperature", lambda logits, labels: 4.0)
    kept = calibration.fit_sample(sample, 3)
    assert (kept.temperature, kept.fitted) == (1.0, 4.0)
    assert kept.ece[0] == kept.ece[1] and "not applied" in kept.describe()
    assert kept.to_dict()["fitted_temperature"] == 4.0


def test_a_temperature_that_does_not_carry_over_between_images_is_not_applied():
    """Even images 4x over-confident, odd ones 4x under-confident: the T fitted on either
    half makes the other half worse, so none is applied, whatever it does on all of them."""
    generator = torch.Generator().manual_seed(4)
    fair = torch.randn(6, 3, 16, 16, generator=generator) * 2
    labels = torch.multinomial(fair.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3), 1,
                               generator=generator).view(6, 16, 16)
    scale = torch.tensor([4.0, 0.25] * 3).view(6, 1, 1, 1)
    sample = PixelSample()
    for i in range(0, 6, 2):                              # in batches, as a loader gives them
        sample.add(fair[i:i + 2] * scale[i:i + 2], labels[i:i + 2], None)
    assert sample.images.tolist() == [i for i in range(6) for _ in range(256)]
    kept = calibration.fit_sample(sample, 3)
    assert kept.temperature == 1.0 and kept.fitted != 1.0
    assert kept.crossed[1] > kept.crossed[0]
    assert "does not carry over" in kept.describe()
    assert kept.to_dict()["crossed_ece_after"] == kept.crossed[1]


def test_the_printout_says_why_no_temperature_divides_the_probabilities():
    """Three cases, three reasons: a temperature applied; one fitted but not applied (it did
    not carry over between halves of the validation images: a fresh run can record that); and
    none ever fitted (a checkpoint from before calibration)."""
    from unetseg.cli.commands import _temperature_note

    applied = _temperature_note(1.3, 0.01, {"temperature": 1.3, "fitted_temperature": 1.3})
    assert "after temperature scaling (T = 1.3" in applied
    rejected = _temperature_note(1.0, 0.02, {"temperature": 1.0, "fitted_temperature": 1.7})
    assert "T = 1.7" in rejected and "did not carry over" in rejected
    assert "before calibration" not in rejected
    assert "before calibration" in _temperature_note(1.0, 0.02, None)
    assert "did not carry over" in _temperature_note(1.0, 0.02, {"temperature": 1.0})
