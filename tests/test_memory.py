"""Will it fit (`unetseg.memory`): a model or a tile too large for the machine's memory is
refused, naming what to lower, before anything large is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from unetseg import infer
from unetseg.cli import main
from unetseg.infer import predict

TINY = ["--data", "synthetic", "--size", "32", "--train-samples", "32", "--val-samples", "8",
        "--base", "4", "--batch-size", "8", "--quiet"]


def test_a_model_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path, capsys):
    out = tmp_path / "huge"
    assert main(["train", *TINY, "--depth", "9", "--base", "64", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "M parameters" in err and "GiB" in err and "lower --batch-size" in err
    assert not out.exists()


def test_a_tile_too_large_for_memory_is_refused_before_timing_in_prediction_words(
        monkeypatch):
    """`--tile 100000` timed the precisions at that size (about 80 GB) before any memory
    check, and the refusal said "0.0 M parameters, about 1285 GiB to train": the memory is
    checked first, in prediction's words (an image one tile holds is predicted whole)."""
    monkeypatch.setattr(infer, "prediction_precision",
                        lambda *args: pytest.fail("precisions timed before the memory check"))
    model = lambda images: images[:, :2]                            # noqa: E731
    wide = np.zeros((64, 100_001, 3), np.uint8)                     # wider than the tile
    with pytest.raises(ValueError, match=r"needs about [\d.]+ GiB to predict \(tile buffers "
                                         r".* lower --tile or --batch-size"):
        predict(model, wide, tile=100_000)
