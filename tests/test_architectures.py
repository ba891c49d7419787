"""Other architectures behind the same toolkit (`unetseg.architectures`): the configuration's
rules, and an smp model through training, checkpoints, evaluation, tiled prediction and ONNX.

segmentation_models_pytorch needs a torchvision that imports beside torch, which the main
environment (.venv, CPU torch 2.13.0) cannot have; the tests marked ``smp`` skip there and run
in .venv-exp, where `make test` runs them when it exists (`make exp-env` builds it). Encoders
are built without pretrained weights: nothing is downloaded.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from unetseg.architectures import SmpModel, build_model, size_multiple
from unetseg.checkpoint import load_model, save_checkpoint
from unetseg.config import ModelConfig
from unetseg.model import UNet, UNetConfig

try:
    import segmentation_models_pytorch as smp
except ImportError:                      # the main environment: see the module docstring
    smp = None



def smp_test(function):
    """Marked ``smp`` (`make test` selects them in .venv-exp) and skipped without smp."""
    skip = pytest.mark.skipif(smp is None, reason="segmentation_models_pytorch is not "
                              "installed here; `make exp-env` builds .venv-exp, where `make "
                              "test` runs these")
    return pytest.mark.smp(skip(function))

SMALL = ModelConfig(in_channels=3, num_classes=3, arch="smp:Unet", encoder="resnet18")


# --- the configuration (no smp needed) --------------------------------------------------------

def test_the_default_is_our_unet_and_needs_no_smp():
    assert isinstance(build_model(UNetConfig(base=4)), UNet)
    assert isinstance(build_model(ModelConfig(base=4)), UNet)
    assert size_multiple(build_model(ModelConfig(base=4, depth=3))) == 8


@pytest.mark.parametrize("settings, message", [
    ({"arch": "smp"}, "--arch must be unet or smp:NAME"),
    ({"arch": "resnet"}, "--arch must be unet or smp:NAME"),
    ({"arch": "smp:Unet", "base": 16}, r"--base cannot be used with --arch smp:Unet"),
    ({"arch": "smp:FPN", "upsample": "transpose", "depth": 3},
     r"--depth, --upsample cannot be used with --arch smp:FPN"),
    ({"encoder": "resnet50"}, r"--encoder cannot be used with --arch unet"),
    ({"arch": "smp:Unet", "encoder_weights": "coco"}, "--encoder-weights must be imagenet or "
                                                      "none"),
])
def test_settings_that_do_not_fit_the_architecture_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**settings)


def test_unet_from_config_refuses_another_architecture():
    with pytest.raises(ValueError, match="build it with unetseg.architectures.build_model"):
        UNet.from_config(asdict(SMALL))                 # a checkpoint's model_config


def test_without_smp_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)   # import fails
    with pytest.raises(ValueError, match=r"needs segmentation_models_pytorch .*\[smp\]"):
        build_model(SMALL)


# --- an smp model through the toolkit ----------------------------------------------------------

@smp_test
@pytest.mark.parametrize("height, width", [(64, 64), (37, 50), (1, 1)])
def test_any_input_size_gives_logits_of_that_size(height, width):
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    assert isinstance(model, SmpModel) and size_multiple(model) == 32
    with torch.no_grad():
        logits = model(torch.rand(2, 3, height, width))
    assert logits.shape == (2, 3, height, width)


@smp_test
def test_padding_leaves_a_fitting_input_unchanged():
    """At a multiple of 32 the wrapper adds nothing: its logits are smp's own."""
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(images), model.net(images))


@smp_test
def test_checkpoint_round_trip_records_the_architecture_and_downloads_nothing(tmp_path,
                                                                             monkeypatch):
    torch.manual_seed(0)
    config = replace(SMALL, encoder_weights="imagenet")    # as a user's run would record it
    model = build_model(config).eval()                     # not pretrained: no download
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"class_names": ["a", "b", "c"]})

    asked = []
    real_create = smp.create_model

    def create_model(*args, **kwargs):      # what the rebuild asks smp for
        asked.append(kwargs.get("encoder_weights"))
        return real_create(*args, **kwargs)

    monkeypatch.setattr(smp, "create_model", create_model)
    loaded, metadata = load_model(path)
    assert metadata["model_config"]["arch"] == "smp:Unet"
    assert metadata["model_config"]["encoder"] == "resnet18"
    assert asked == [None]                  # the file's weights, never a download
    images = torch.rand(1, 3, 40, 72)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


@smp_test
def test_training_evaluation_and_tiled_prediction_run_unchanged(tmp_path):
    from unetseg.config import DataConfig, RunConfig, TrainConfig
    from unetseg.infer import load_segmenter, predict
    from unetseg.jobs.scoring import score_split
    from unetseg.train import fit

    config = RunConfig(
        data=DataConfig(source="synthetic", size=64, batch_size=8, train_samples=16,
                        val_samples=4),
        model=replace(SMALL, num_classes=2),             # set from the data by training
        train=TrainConfig(out=str(tmp_path / "run"), max_steps=3, progress=False))
    result = fit(config)
    assert [row["step"] for row in result.history] == [2, 3]
    scored = score_split(result.run_dir / "best.safetensors", inspect=True)
    assert scored.evaluation.scores.miou == pytest.approx(result.best_miou, abs=1e-9)
    assert scored.inspection is not None
    segmenter = load_segmenter(result.run_dir / "best.safetensors")
    image = np.random.default_rng(0).random((90, 130, 3)).astype(np.float32)
    whole = predict(segmenter, image, precision="fp32")
    tiled = predict(segmenter, image, tile=64, overlap=0.25, precision="fp32")
    assert whole.mask.shape == tiled.mask.shape == (90, 130)
