"""ONNX export of a checkpoint (`unetseg.export`): the exported graph gives the checkpoint's
logits at any size, `unetseg export` never overwrites, and `unetseg predict` with the ONNX file
writes the checkpoint's masks."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from test_infer import margin, scene
from unetseg.cli import main
from unetseg.infer import load_segmenter


@pytest.fixture(scope="module")
def checkpoint(shapes_checkpoint):
    """The session's U-Net trained on synthetic shapes (see conftest.py)."""
    return shapes_checkpoint


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, size in enumerate([(70, 90), (128, 64)]):
        Image.fromarray(scene(128, seed=10 + i)[: size[0], : size[1]]).save(folder / f"im{i}.png")
    return folder


@pytest.fixture(scope="module")
def onnx_export(checkpoint, tmp_path_factory):
    """The exported file, and what the export wrote to file descriptor 2 (where torch's own
    log handler writes, whatever sys.stderr is) and warned."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("onnx")
    out, said = folder / "model.onnx", folder / "stderr.txt"
    saved_fd = os.dup(2)
    with open(said, "wb") as capture, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        os.dup2(capture.fileno(), 2)
        try:
            assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 0
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
    return out, said.read_text(), [str(w.message) for w in warned]


@pytest.fixture(scope="module")
def onnx_model(onnx_export):
    return onnx_export[0]


def test_export_says_nothing_of_torchvision_or_deprecations(onnx_export):
    """Issue 22: every export printed four torchvision lines and a FutureWarning."""
    _, said, warned = onnx_export
    assert "torchvision" not in said and "FutureWarning" not in said
    assert not [message for message in warned if "LeafSpec" in message]


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 100, 17),
                                   (3, 3, 1, 1), (1, 3, 250, 130)])
def test_onnx_logits_match_pytorch(checkpoint, onnx_model, shape):
    from unetseg.export import OnnxSegmenter

    segmenter = load_segmenter(checkpoint)
    runner = OnnxSegmenter(onnx_model)
    assert runner.class_names == segmenter.class_names and runner.colours == segmenter.colours
    assert runner.training_crop == segmenter.training_crop      # the default predict tile
    x = torch.rand(*shape)
    with torch.inference_mode():
        expected = segmenter(x)
    assert (runner(x) - expected).abs().max().item() < 1e-4


def test_export_refuses_to_overwrite(checkpoint, onnx_model, capsys):
    before = onnx_model.read_bytes()
    assert main(["export", str(checkpoint), "--out", str(onnx_model)]) == 2
    assert "exists; choose another --out, or pass --overwrite" in capsys.readouterr().err
    assert onnx_model.read_bytes() == before


def test_predict_with_the_onnx_model_writes_the_same_masks(checkpoint, onnx_model, images,
                                                           tmp_path):
    """Logits agree to about 1e-4 (test above), so masks can differ only at near-ties."""
    for model, name in ((checkpoint, "torch"), (onnx_model, "onnx")):
        assert main(["predict", str(model), str(images), "--out", str(tmp_path / name),
                     "--tile", "64", "--precision", "fp32", "--probs", "--quiet"]) == 0
    for stem in ("im0", "im1"):
        torch_mask = np.asarray(Image.open(tmp_path / "torch" / f"{stem}.png"))
        onnx_mask = np.asarray(Image.open(tmp_path / "onnx" / f"{stem}.png"))
        torch_probs = np.load(tmp_path / "torch" / f"{stem}_probs.npy")
        assert (margin(torch_probs)[torch_mask != onnx_mask] <= 1e-3).all()
