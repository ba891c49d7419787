"""Prediction: the tile grid, blending without seams, TTA, BatchNorm folding, bounded memory,
and the `unetseg predict` command (ONNX export and prediction: tests/test_export.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from unetseg.checkpoint import load_model
from unetseg.cli import main
from unetseg.data.synthetic import NOISE_SIGMA, RADIUS_RANGE, Shape
from unetseg.infer import (
    fold_batchnorm,
    importance_map,
    load_segmenter,
    predict,
    tile_for,
    tile_starts,
)
from unetseg.metrics import labels_from_logits
from unetseg.model import UNet


@pytest.fixture(scope="session")
def checkpoint(shapes_checkpoint):
    """The session's U-Net trained on synthetic shapes (see conftest.py)."""
    return shapes_checkpoint


def scene(size: int, seed: int = 0, shapes_per_4096_px: float = 2.0) -> np.ndarray:
    """A size x size uint8 RGB scene like the training images, only larger: one uniform
    background colour, circles and squares of the trained radii (4 to 12 px) anywhere, noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = rng.uniform(0, 1, 3)
    for _ in range(round(size * size / 4096 * shapes_per_4096_px)):
        cy, cx = rng.uniform(0, size - 1, 2)
        shape = Shape(int(rng.integers(1, 3)), cy, cx, rng.uniform(*RADIUS_RANGE),
                      tuple(rng.uniform(0, 1, 3)))
        image[shape.pixels(size)] = shape.colour
    image += rng.normal(0, NOISE_SIGMA, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


# --- the grid and the weights -------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 0.25), (256, 256, 0.5),
                                                  (300, 64, 0.5), (65, 64, 0.0), (10, 64, 0.25)])
def test_tiles_cover_every_pixel_with_the_requested_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(max(length, tile), dtype=int)
    for start in starts:
        covered[start:start + tile] += 1
    assert covered[:length].min() >= 1
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    gaps = np.diff(starts)
    assert (gaps <= round(tile * (1 - overlap))).all() and (gaps >= 1).all()


def test_gaussian_importance_is_one_at_the_centre_symmetric_and_floored():
    weights = importance_map(64)
    assert weights.shape == (64, 64) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(weights, weights[::-1])
    np.testing.assert_array_equal(weights, weights.T)
    assert weights.min() == pytest.approx(1e-3)
    # sigma = 64 / 8 = 8: one sigma from the centre (31.5) the profile is exp(-1/2).
    assert weights[32, 40] / weights[32, 32] == pytest.approx(np.exp(-(8.5**2 - 0.5**2) / 128))
    assert (importance_map(8, "constant") == 1).all()


# --- equal results, whatever the path ---------------------------------------------------------

def test_folded_batchnorm_gives_the_same_logits():
    torch.manual_seed(0)
    model = UNet(3, 4, base=8)
    for module in model.modules():          # statistics and affine terms far from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 45, 70)
    with torch.inference_mode():
        assert (model(x) - folded(x)).abs().max().item() < 1e-4


def margin(probs: np.ndarray) -> np.ndarray:
    """(C, H, W) probabilities -> (H, W) lead of the winning class over the runner-up."""
    top = np.sort(probs.astype(np.float32), axis=0)
    return top[-1] - top[-2]


@pytest.mark.parametrize("height,width", [(64, 64), (50, 61)])
def test_a_tile_covering_the_image_gives_the_whole_image_prediction(checkpoint, height, width):
    """With one tile, tiling adds nothing: the same padded input, weights that divide out."""
    segmenter = load_segmenter(checkpoint)
    image = scene(64, seed=4)[:height, :width]
    whole = predict(segmenter, image, precision="fp32", probs=True)
    constant = predict(segmenter, image, tile=64, blend="constant", precision="fp32",
                       probs=True)
    np.testing.assert_array_equal(constant.mask, whole.mask)
    np.testing.assert_array_equal(constant.probs, whole.probs)
    # Gaussian weights divide out up to float rounding: labels can differ only at exact ties.
    gaussian = predict(segmenter, image, tile=64, precision="fp32", probs=True)
    np.testing.assert_allclose(gaussian.probs.astype(np.float32),
                               whole.probs.astype(np.float32), atol=1e-3)
    differs = gaussian.mask != whole.mask
    assert (margin(whole.probs)[differs] <= 1e-3).all()


def test_an_image_smaller_than_the_tile_is_predicted_whole_as_evaluate_sees_it(checkpoint):
    """Padded out to the default 256-pixel tile, a 64 x 64 image changed about 5% of its
    pixels (and `--tile 2048` took 28 s): an image one tile holds is predicted whole, so its
    mask is evaluate's (the checkpoint's model on the normalised image at its own size) up
    to exact ties."""
    segmenter = load_segmenter(checkpoint)
    image = scene(64, seed=4)
    whole = predict(segmenter, image, precision="fp32", probs=True)
    for tile in (256, 2048):
        fitted = predict(segmenter, image, tile=tile, precision="fp32", probs=True)
        np.testing.assert_array_equal(fitted.mask, whole.mask)
        np.testing.assert_array_equal(fitted.probs, whole.probs)
    model, meta = load_model(checkpoint)
    mean, std = (torch.tensor(meta["normalisation"][key])[:, None, None]
                 for key in ("mean", "std"))
    pixels = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    with torch.inference_mode():
        evaluated = labels_from_logits(model(pixels[None]))[0].numpy()
    differs = evaluated != whole.mask
    assert (margin(whole.probs)[differs] <= 1e-3).all()


class ConstantLogits(torch.nn.Module):
    """A stand-in model: the same logits at every pixel, whatever the input."""

    in_channels = 3

    def __init__(self, logits) -> None:
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        return self.logits[None, :, None, None].expand(n, -1, h, w).clone()


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("size,tile,overlap", [((150, 97), 64, 0.25), ((64, 200), 32, 0.5),
                                               ((33, 33), 16, 0.0)])
def test_blending_weights_are_normalised_at_every_pixel(blend, size, tile, overlap):
    """The accumulator is divided by the summed weights (module docstring): tiles that all say
    the same give exactly that, at every pixel, seams and image corners included."""
    model = ConstantLogits([0.3, -1.2, 2.0])
    expected = torch.tensor([0.3, -1.2, 2.0]).softmax(0).numpy()
    image = np.zeros((*size, 3), dtype=np.uint8)
    result = predict(model, image, tile=tile, overlap=overlap, blend=blend, probs=True)
    np.testing.assert_allclose(result.probs.astype(np.float32),
                               np.broadcast_to(expected[:, None, None], (3, *size)), atol=1e-3)
    assert (result.mask == 2).all()


def seam_band(size: int, tile: int, overlap: float) -> np.ndarray:
    """Pixels within 1 px of a tile edge on the grid of `tile_starts`."""
    band = np.zeros((size, size), dtype=bool)
    for start in tile_starts(size, tile, overlap):
        for edge in (start, start + tile - 1):
            band[max(edge - 1, 0):edge + 2, :] = True
            band[:, max(edge - 1, 0):edge + 2] = True
    return band


def test_blended_tiles_leave_no_seams(checkpoint):
    """Against whole-image prediction, blended tiles disagree no more along tile edges than
    elsewhere, while plain tiling without overlap or weights (the seamy way) disagrees at its
    edges at least as much. Both compare rates within one run, not a tuned level."""
    segmenter = load_segmenter(checkpoint)
    image = scene(512, seed=1)
    whole = predict(segmenter, image, precision="fp32").mask
    blended = predict(segmenter, image, tile=64, overlap=0.5, precision="fp32").mask != whole
    band = seam_band(512, 64, 0.5)
    rate_band, rate_rest = blended[band].mean(), blended[~band].mean()
    # Binomial noise of the rate over the band: three standard errors.
    noise = 3 * np.sqrt(max(rate_rest, 1 / band.sum()) / band.sum())
    assert rate_band <= rate_rest + noise
    plain = predict(segmenter, image, tile=64, overlap=0.0, blend="constant",
                    precision="fp32").mask != whole
    plain_band = seam_band(512, 64, 0.0)
    assert plain[plain_band].mean() >= blended[plain_band].mean()


def test_any_size_comes_back_at_exactly_that_size(checkpoint):
    segmenter = load_segmenter(checkpoint)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    result = predict(segmenter, image, tile=256, batch_size=8, probs=True)
    assert result.mask.shape == (700, 1000) and result.mask.dtype == np.uint8
    assert result.probs.shape == (3, 700, 1000) and result.probs.dtype == np.float16
    np.testing.assert_allclose(result.probs[:, ::97, ::89].astype(np.float32).sum(0), 1,
                               atol=3e-3)
    for shape in [(1, 1, 3), (17, 33, 3), (5, 300, 3)]:
        small = rng.integers(0, 256, shape, dtype=np.uint8)
        assert predict(segmenter, small).mask.shape == shape[:2]
        assert predict(segmenter, small, tile=16).mask.shape == shape[:2]


def test_tta_is_flip_equivariant(checkpoint):
    """Averaging over the four flips gives the same answer for an image and its mirror."""
    segmenter = load_segmenter(checkpoint)
    image = scene(128, seed=2)
    direct = predict(segmenter, image, tile=64, overlap=0.5, tta=True, probs=True,
                     precision="fp32").probs.astype(np.float32)
    mirrored = predict(segmenter, image[:, ::-1], tile=64, overlap=0.5, tta=True, probs=True,
                       precision="fp32").probs.astype(np.float32)[:, :, ::-1]
    assert np.abs(direct - mirrored).max() < 2e-3


def test_bf16_prediction_changes_only_near_ties(checkpoint):
    """bf16 moves probabilities by its rounding, and flips a label only where fp32 itself was
    nearly tied: true of any weights, so no tuned agreement level."""
    segmenter = load_segmenter(checkpoint)
    image = scene(256, seed=3)
    fp32 = predict(segmenter, image, tile=128, precision="fp32", probs=True)
    bf16 = predict(segmenter, image, tile=128, precision="bf16", probs=True)
    difference = np.abs(fp32.probs.astype(np.float32) - bf16.probs.astype(np.float32))
    assert difference.mean() < 0.01
    assert (margin(fp32.probs)[fp32.mask != bf16.mask] < 0.1).all()


def test_wrong_channel_count_is_refused_naming_both(checkpoint):
    segmenter = load_segmenter(checkpoint)
    with pytest.raises(ValueError, match="expects 3 channels, found 1"):
        predict(segmenter, np.zeros((32, 32), dtype=np.uint8))


def test_bad_predict_arguments_are_refused(checkpoint):
    segmenter = load_segmenter(checkpoint)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="--batch-size must be a whole number >= 1, found 0"):
        predict(segmenter, image, tile=16, batch_size=0)
    with pytest.raises(ValueError, match="uint8, uint16 or float pixels .* found int64"):
        predict(segmenter, image.astype(np.int64))


def test_folding_keeps_the_convolutions_dtype():
    model = UNet(3, 2, base=4).double().eval()
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64)
    with torch.inference_mode():
        assert (fold_batchnorm(model)(x) - model(x)).abs().max().item() < 1e-10


# --- bounded memory -----------------------------------------------------------------------------

PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    from unetseg.infer import Segmenter, predict
    from unetseg.model import UNet
    from unetseg.allocator import tune_malloc
    tune_malloc()
    torch.manual_seed(0)
    size = int(sys.argv[1])
    model = Segmenter(UNet(3, 3, base=8).eval(), [0.5] * 3, [0.25] * 3, "abc", [(0, 0, 0)] * 3)
    model = model.to(memory_format=torch.channels_last)
    predict(model, np.zeros((64, 64, 3), np.uint8), tile=64)          # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = predict(model, image, tile=256, batch_size=4).mask
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before * 1024, peak * 1024, image.nbytes + mask.nbytes)
""")


def peak_memory(*sizes: int) -> list[tuple[int, int, int]]:
    """(RSS before, peak RSS, bytes of image and mask) of a prediction at each size, each in a
    process of its own (a peak is per process), the processes side by side."""
    # One thread each: two processes side by side on two cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([sys.executable, "-c", PEAK_SCRIPT, str(size)], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                 for size in sizes]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append(tuple(int(v) for v in out.split()))
    return results


@pytest.mark.slow
def test_peak_memory_grows_with_the_image_arrays_not_with_a_float_accumulator():
    (base_2k, peak_2k, arrays_2k), (base_4k, peak_4k, arrays_4k) = peak_memory(2048, 4096)
    # The criterion: beyond the growth of the image arrays, the 4096^2 peak is less
    # than twice the 2048^2 peak.
    assert peak_4k - (arrays_4k - arrays_2k) < 2 * peak_2k
    # And sharper: what the prediction itself adds (beyond the arrays and the process before
    # it) grows by far less than a float32 (3, H, W) accumulator would (150 MB more at 4096^2).
    extra_2k = peak_2k - base_2k - arrays_2k
    extra_4k = peak_4k - base_4k - arrays_4k
    assert extra_4k - extra_2k < 0.25 * 3 * 4 * (4096**2 - 2048**2)


# --- unetseg predict ----------------------------------------------------------------------------

@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, size in enumerate([(70, 90), (128, 64)]):
        Image.fromarray(scene(128, seed=10 + i)[: size[0], : size[1]]).save(folder / f"im{i}.png")
    return folder


@pytest.mark.parametrize("crop,tile", [(None, 256), (64, 256), (256, 256), (300, 320),
                                       (512, 512)])
def test_the_default_tile_holds_a_training_crop_and_at_least_256_px(crop, tile):
    assert tile_for(crop) == tile


def test_predict_tiles_as_wide_as_the_checkpoints_training_crops_by_default(
        checkpoint, images, tmp_path, monkeypatch):
    from unetseg.checkpoint import read_metadata
    from unetseg.jobs import predict as job

    crop = read_metadata(checkpoint)["run_config"]["data"]["size"]
    assert load_segmenter(checkpoint).training_crop == crop
    tiles = []

    def recording(*args, **kwargs):
        tiles.append(kwargs["tile"])
        return predict(*args, **kwargs)

    monkeypatch.setattr(job, "predict", recording)
    assert main(["predict", str(checkpoint), str(images), "--out", str(tmp_path / "auto"),
                 "--quiet"]) == 0
    assert main(["predict", str(checkpoint), str(images), "--out", str(tmp_path / "whole"),
                 "--tile", "0", "--quiet"]) == 0
    assert tiles == [tile_for(crop)] * 2 + [None] * 2


def test_predict_a_folder_writes_masks_overlays_probs_and_summary(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(images), "--out", str(out), "--tile", "64",
                 "--probs", "--quiet"]) == 0
    for stem, (h, w) in {"im0": (70, 90), "im1": (128, 64)}.items():
        mask = Image.open(out / f"{stem}.png")
        assert mask.mode == "P" and mask.size == (w, h)
        assert np.asarray(mask).max() < 3
        assert mask.getpalette()[3:6] == list(load_segmenter(checkpoint).colours[1])
        assert Image.open(out / f"{stem}_overlay.png").size == (w, h)
        probs = np.load(out / f"{stem}_probs.npy")
        assert probs.shape == (3, h, w) and probs.dtype == np.float16
        # float16 probabilities may tie where float32 did not: compare away from ties.
        clear = margin(probs) > 1e-3
        np.testing.assert_array_equal(probs.argmax(0)[clear], np.asarray(mask)[clear])
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["images"]["im0"]["pixels"].values()) == 70 * 90
    assert summary["failed"] == {}
    assert not list(out.glob(".*.tmp"))


def test_predict_reports_a_corrupt_file_and_finishes_the_others(checkpoint, images, tmp_path,
                                                                capsys):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(images / "*.png"), "--out", str(out),
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "cannot be read as an image" in err
    assert (out / "im0.png").is_file() and (out / "im1.png").is_file()
    assert not (out / "broken.png").exists()
    assert "broken.png" in next(iter(json.loads((out / "summary.json").read_text())["failed"]))


def test_predict_never_overwrites_without_the_flag(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    one = str(images / "im0.png")
    assert main(["predict", str(checkpoint), one, "--out", str(out), "--quiet"]) == 0
    (out / "im0.png").write_bytes(b"keep me")
    assert main(["predict", str(checkpoint), one, "--out", str(out), "--quiet"]) == 2
    assert "already holds 2 of its outputs (im0.png, im0_overlay.png)" in capsys.readouterr().err
    assert (out / "im0.png").read_bytes() == b"keep me"
    assert main(["predict", str(checkpoint), one, "--out", str(out), "--quiet",
                 "--overwrite"]) == 0
    assert (out / "im0.png").read_bytes() != b"keep me"
    assert main(["predict", str(checkpoint), str(images / "nothing*.png"), "--out", str(out)]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["predict", str(checkpoint), one, "--out", str(tmp_path / "file")]) == 2


def test_predict_never_writes_over_an_input(checkpoint, images, capsys):
    before = (images / "im0.png").read_bytes()
    assert main(["predict", str(checkpoint), str(images), "--out", str(images), "--overwrite",
                 "--quiet"]) == 2
    assert "is an input and would be overwritten" in capsys.readouterr().err
    assert (images / "im0.png").read_bytes() == before
