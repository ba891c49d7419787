"""The optimiser and its learning-rate schedule.

AdamW, with weight decay on convolution weights only, and a per-step schedule: a linear
warm-up, then a cosine decay (or Smith's one-cycle end points).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .run_length import RunLength

__all__ = ["lr_factor", "parameter_groups", "make_optimizer", "follow_schedule"]


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step``: a linear warm-up, then a cosine decay.

    ``"cosine"`` warms up from 0 to the peak and decays to 0. ``"onecycle"`` follows Smith's
    one-cycle policy with ``torch.optim.lr_scheduler.OneCycleLR``'s default end points: it
    starts at peak/25 and ends at peak/25/1e4 (the warm-up here is linear, not cosine).
    """
    start, end = (0.0, 0.0) if schedule == "cosine" else (1 / 25, 1 / 25 / 1e4)
    if step < warmup_steps:
        return start + (1.0 - start) * (step + 1) / warmup_steps
    decayed = (step - warmup_steps) / max(1, total_steps - warmup_steps)   # share of the decay
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, decayed)))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on convolution weights (2 or more dimensions) only. Biases and
    norm scales and shifts (1 dimension) are not decayed, as in nanoGPT and timm: shrinking a
    norm's scale towards 0 fights the normalisation instead of regularising."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}]


def _fused_supported(model: nn.Module) -> bool:
    """Whether AdamW's fused kernel takes every parameter (floating point, on CPU or CUDA)."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
               for p in model.parameters())


def make_optimizer(model: nn.Module, train, length: RunLength):
    """AdamW (``lr``, ``weight_decay`` of a `TrainConfig`) and its per-step ``schedule`` over
    the steps of ``length``; returns ``(optimizer, scheduler)``. The schedule reads the length at
    every step, so a timed run's re-planned length moves the end of its cosine."""
    # The fused kernel: one pass over all parameters, and it takes the step's "found_inf" flag
    # on the device, so a non-finite step is skipped without reading anything back to the host.
    optimizer = torch.optim.AdamW(parameter_groups(model, train.weight_decay), lr=train.lr,
                                  fused=_fused_supported(model))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, length.total_steps, length.warmup_steps, train.schedule))
    return optimizer, scheduler


def follow_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set each group's learning rate from the schedule at the current step. The scheduler
    sets it once per step; when the length behind the schedule changes between steps (a timed
    run re-planned), the next step then follows the new length instead of the old one."""
    step = scheduler.last_epoch
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                   scheduler.lr_lambdas):
        group["lr"] = base * factor(step)
