"""The fast paths `unetseg train` and `unetseg predict` run, for any model a user builds.

Three things make a convolutional network fast on the same hardware, and each is measured
before it is chosen (``benchmarks/train_step.py`` times them against plain code):

- the channels_last memory layout, in which the CPU's (oneDNN) and the GPU's (cuDNN)
  convolution kernels run without reordering their inputs;
- the autocast precision: bf16 where it is faster here, which `unetseg.precision` measures at
  the model's own shapes instead of trusting a CPU flag (bf16 is 2x faster on one AVX-512-BF16
  CPU and slower on another);
- for inference, BatchNorm folded into the convolution before it (one pass over memory, not
  two).

``torch.compile`` is available but off by default: on the 2-core CPUs we measured it made a
base-32 training step slower (1.05 s to 1.63 s in bf16) after a 40 s compilation.

`optimize_for_training` and `optimize_for_inference` return a `unetseg.runtime.Accelerated`
model: it takes float32 NCHW images like the original and returns float32 logits, so code
around it is unchanged; its ``module`` is the original network (the one whose weights are saved).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .precision import decide_precision, measure_forward, measure_step
from .runtime import Accelerated, Runtime, pick_device

__all__ = ["optimize_for_training", "optimize_for_inference", "fold_batchnorm"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm2d folded into the Conv2d before it
    in the same block: ``conv(x) * g / sqrt(v + eps) + (b - m * g / sqrt(v + eps))`` is one
    convolution with scaled weights and a bias, so each block does one pass over memory instead
    of two. The BatchNorm becomes an ``nn.Identity``; dtype and device stay the convolution's.
    ``model`` itself is left as it was."""
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        children = list(block.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(block, conv_name, nn.utils.fusion.fuse_conv_bn_eval(conv, norm))
                setattr(block, norm_name, nn.Identity())
    return folded


def optimize_for_training(model: nn.Module, *, batch_size: int = 8, size: int = 256,
                          device: torch.device | str | None = None, precision: str = "auto",
                          channels_last: bool = True, compile: bool = False) -> Accelerated:
    """``model`` prepared to train as ``unetseg train`` trains it.

    ``precision="auto"`` times a few optimiser steps of fp32 and bf16 on a copy of the model
    at ``batch_size`` images of ``size`` x ``size`` (seconds, once: the answer is cached) and
    keeps the faster; on a GPU it is bf16 (fp16 where bf16 is missing, which needs a
    ``torch.amp.GradScaler`` in the loop). Give the optimiser the returned model's parameters
    (they are the original's); save ``result.module``.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    choice = decide_precision(precision, device, model, batch_size, size, measure_step)
    runtime = Runtime(device, choice.precision, channels_last)
    return Accelerated(model.train(), runtime, compile, choice)


def optimize_for_inference(model: nn.Module, *, batch_size: int = 1, size: int = 256,
                           device: torch.device | str | None = None, precision: str = "auto",
                           channels_last: bool = True, fold: bool = True,
                           compile: bool = False) -> Accelerated:
    """A copy of ``model`` prepared to predict as ``unetseg predict`` does: eval mode,
    BatchNorm folded (``fold``), channels_last, and the precision measured on forward passes
    of ``batch_size`` images of ``size`` x ``size`` (``"auto"``). Call it under
    ``torch.inference_mode()``. The original ``model`` is left as it was.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    network = fold_batchnorm(model) if fold else copy.deepcopy(model).eval()
    runtime = Runtime(device, "fp32", channels_last)
    network = runtime.model(network)
    choice = decide_precision(precision, device, network, batch_size, size, measure_forward)
    return Accelerated(network, Runtime(device, choice.precision, channels_last), compile,
                       choice)
