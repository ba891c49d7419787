"""The same code on a GPU: run by `benchmarks/gpu_check.sh` where CUDA is present, skipped
(with the reason) everywhere else. Each test compares the GPU's answer with the CPU's or checks
an invariant, never a speed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from unetseg import optimize_for_inference, optimize_for_training
from unetseg.checkpoint import load_model
from unetseg.infer import load_segmenter, predict
from unetseg.model import UNet
from unetseg.train import fit

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device here; benchmarks/gpu_check.sh runs "
                                        "these on a GPU")]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_training_on_the_gpu_runs_in_each_precision(tmp_path, make_tiny_config, precision):
    config = make_tiny_config(tmp_path / precision, epochs=2)
    config = replace(config, train=replace(config.train, device="cuda", precision=precision))
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    assert meta["precision"] in ("bf16", "fp16")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert 0.0 <= result.best_miou <= 1.0


def test_the_fast_paths_give_the_cpus_logits_on_the_gpu():
    torch.manual_seed(0)
    model = UNet(3, 3, base=8).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        cpu = optimize_for_inference(model, device="cpu", precision="fp32")(images)
        gpu = optimize_for_inference(model, device="cuda", precision="fp32")(images)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    fast = optimize_for_training(UNet(3, 3, base=8), device="cuda")
    assert fast.runtime.precision in ("bf16", "fp16")
    assert fast(images).dtype == torch.float32


def test_tiled_prediction_on_the_gpu_matches_the_cpu(shapes_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    masks = [predict(load_segmenter(shapes_checkpoint, device), image, tile=128,
                     precision="fp32").mask for device in ("cpu", "cuda")]
    assert (masks[0] == masks[1]).mean() >= 0.999
