"""The fast paths change speed, not answers: each is checked against the plain model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import unetseg.precision as precision
from unetseg import optimize_for_inference, optimize_for_training
from unetseg.fastpath import fold_batchnorm
from unetseg.losses import CEDiceLoss
from unetseg.model import UNet
from unetseg.runtime import Accelerated


def trained_unet(seed: int = 0) -> UNet:
    """A small U-Net whose BatchNorm statistics are not the initial 0 and 1."""
    torch.manual_seed(seed)
    model = UNet(3, 3, base=8)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return model.eval()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(tmp_path / "cache"))


def test_inference_in_fp32_gives_the_plain_models_logits():
    model = trained_unet()
    images = torch.rand(2, 3, 48, 40)
    with torch.inference_mode():
        expected = model(images)
        fast = optimize_for_inference(model, precision="fp32")
        found = fast(images)
    assert found.dtype == torch.float32 and found.shape == expected.shape
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)
    assert fast.module.inc[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_inference_in_bf16_stays_close_to_fp32():
    model = trained_unet()
    images = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(images)
        found = optimize_for_inference(model, precision="bf16")(images)
    # bf16 keeps 8 bits of mantissa: errors of a few parts in a hundred of the logits' range.
    assert (found - expected).abs().max() <= 0.05 * expected.abs().max()


def test_folding_batchnorm_leaves_the_original_model_alone():
    model = trained_unet().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_training_shares_the_weights_and_gives_the_plain_gradients_in_fp32():
    """The same batch through the fast path (channels_last) and the plain model (NCHW) in fp32:
    the same loss and the same gradients up to float rounding."""
    torch.manual_seed(0)
    plain, fast_model = UNet(3, 3, base=8), UNet(3, 3, base=8)
    fast_model.load_state_dict(plain.state_dict())
    fast = optimize_for_training(fast_model, precision="fp32")
    assert fast.module is fast_model
    assert {id(p) for p in fast.parameters()} == {id(p) for p in fast_model.parameters()}
    images, masks = torch.rand(4, 3, 32, 32), torch.randint(0, 3, (4, 32, 32))
    losses = []
    for model in (plain, fast):
        loss = CEDiceLoss()(model(images), masks)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(plain.parameters(), fast_model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6)


def test_auto_precision_is_measured_for_inference_and_fp32_without_native_bf16(monkeypatch):
    measured = []

    def fake_measure(model, batch, size, precision):
        def forward():
            measured.append((batch, size, precision))
            return {"fp32": 1.0, "bf16": 0.4}[precision]
        return forward

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr("unetseg.fastpath.measure_forward", fake_measure)
    fast = optimize_for_inference(trained_unet(), batch_size=4, size=64)
    assert fast.runtime.precision == "bf16" and "bf16" in fast.describe()
    assert {(b, s) for b, s, _ in measured} == {(precision.MEASURE_BATCH, 64)}
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert optimize_for_inference(trained_unet(), size=64).runtime.precision == "fp32"


def test_measuring_a_users_model_never_changes_its_weights(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    model = trained_unet().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_training(model, batch_size=2, size=32)     # real timed steps
    assert isinstance(fast, Accelerated) and fast.runtime.precision in ("fp32", "bf16")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
