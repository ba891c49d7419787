"""How a model runs (`unetseg.runtime`): the autocast of a precision and the layout of a
`Runtime` (a device that is not there: tests/test_user_errors.py)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from unetseg.checkpoint import load_model
from unetseg.data.build import build_datasets
from unetseg.runtime import Runtime, autocast


def test_bf16_autocast_changes_only_near_ties(tiny_run):
    """bf16 + channels_last (the default where the CPU has native bf16) against fp32: the
    probabilities move by bf16's rounding, and a label changes only where fp32 itself was
    nearly tied between two classes. Both hold for any weights, trained well or not."""
    config, result = tiny_run
    model, _ = load_model(result.run_dir / "best.safetensors")
    images, _ = next(iter(DataLoader(build_datasets(config.data).val, batch_size=24)))
    with torch.inference_mode():
        high = model(images).float().softmax(1)
        with autocast(torch.device("cpu"), "bf16"):
            low = model.to(memory_format=torch.channels_last)(
                images.contiguous(memory_format=torch.channels_last)).float().softmax(1)
    assert (low - high).abs().mean().item() < 0.01
    top2 = high.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]                     # fp32's lead of the winning class
    changed = low.argmax(1) != high.argmax(1)
    assert (margin[changed] < 0.1).all()


def test_fp32_is_no_autocast_and_a_runtime_moves_batches_into_its_layout():
    assert not torch.is_autocast_enabled("cpu")
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with Runtime(precision="bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    images = torch.rand(2, 3, 8, 8)
    assert Runtime(channels_last=True).images(images).is_contiguous(
        memory_format=torch.channels_last)
    assert Runtime().images(images) is images

