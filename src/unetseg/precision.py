"""The one precision decision: which autocast precision a model trains, predicts and is
scored in, on which device, and why.

- An explicit ``--precision`` (fp32, bf16, fp16) is kept; fp16 autocast needs a CUDA device.
- A resumed run keeps the precision it started with (``recorded``); a checkpoint is scored in
  the precision it recorded (`replayed_precision`), fp32 where that was CUDA-only fp16.
- ``auto`` on a GPU is bf16 (fp16 where bf16 is missing): always the faster there.
- ``auto`` on a CPU is *measured*, not guessed from a CPU flag. A CPU that advertises bf16
  instructions is not always faster in bf16: on the AMD EPYC this project was developed on,
  bf16 autocast trained a base-32 U-Net about 2x faster than fp32; on an Intel Xeon with the
  same AVX-512 BF16 flag it was slower. So a few real optimiser steps (`measure_step`), or
  forward passes for prediction (`measure_forward`), of each candidate are timed at the run's
  own shapes (model, batch, crop), alternating them so that a busy machine slows both alike,
  and the faster is kept. The answer is cached per CPU model, PyTorch version and shapes
  (`unetseg.files.cache_dir`), so a run pays for the measurement once. The flag is necessary
  but not sufficient: without it bf16 is emulated, always slower, and nothing is measured.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

import torch
from torch import nn

from .architectures import build_model
from .files import cache_dir, write_json
from .losses import CEDiceLoss
from .model import UNetConfig
from .runtime import autocast

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["PRECISIONS", "PrecisionChoice", "decide_precision", "replayed_precision",
           "measure_step", "measure_forward", "describe_model", "cpu_model", "cpu_kind",
           "cpu_flags", "cpu_has_bf16", "ROUNDS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What is timed: a module as it is, or a fresh network from its configuration.
Network = Union[nn.Module, "ModelConfig", UNetConfig]

# Timed steps per candidate, after one warm-up step each; alternated A B A B ..., and the
# fastest of each kept (interference from other work only ever adds time).
ROUNDS = 2
# Steps are timed on at most this many images of the run's crop size: the kernels are the
# run's, and the measurement takes seconds instead of a minute at batch 8.
MEASURE_BATCH = 2
# bf16 must win by this much to be chosen: within the noise of a shared machine, fp32 (exact,
# and the same on every CPU) is the better default.
MARGIN = 0.05


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    seconds: dict[str, float] = field(default_factory=dict)   # fastest step per candidate
    reason: str = ""
    fell_back: bool = False      # non-finite steps in bf16 or fp16 made the run go on in fp32

    def describe(self) -> str:
        if not self.seconds:
            return f"precision {self.precision} ({self.reason})"
        times = ", ".join(f"{name} {value:.3g} s" for name, value in self.seconds.items())
        return f"precision {self.precision} (timed: {times}; {self.reason})"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "seconds": self.seconds, "reason": self.reason,
                **({"fell_back": True} if self.fell_back else {})}


# The instruction sets a training step's speed turns on: native bf16 (AVX-512 BF16, AMX) and
# the vector width.
SPEED_FLAGS = ("avx512_bf16", "amx_bf16", "avx2")


def cpu_flags() -> tuple[str, ...]:
    """Which of `SPEED_FLAGS` this CPU has (none where /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    return tuple(name for name in SPEED_FLAGS if f" {name}" in text)


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX-512 BF16 or AMX). Without it bf16 is
    emulated and slower than fp32; with it, it may still be slower (see the module docstring),
    so ``auto`` then measures."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """The CPU as far as speed goes, what timings are kept under: its model name, `cpu_flags`
    and the kernels torch dispatches to (``ATEN_CPU_CAPABILITY`` may lower them). A model name
    alone can hide different CPUs: cloud machines named "AMD EPYC" came with and without
    AVX-512 BF16."""
    return (f"{cpu_model()} ({', '.join(cpu_flags())}; "
            f"ATen {torch.backends.cpu.get_cpu_capability()})")


def _input_channels(model: Network) -> int:
    """The image channels a model takes: its config's, else its first convolution's."""
    if isinstance(getattr(model, "in_channels", None), int):          # a config, a Segmenter
        return model.in_channels
    if isinstance(getattr(getattr(model, "config", None), "in_channels", None), int):
        return model.config.in_channels
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"cannot tell how many image channels {type(model).__name__} takes")


def measure_step(model: Network, batch: int, size: int, precision: str,
                 channels_last: bool = True,
                 device: torch.device | None = None) -> Callable[[], float]:
    """A function that runs one training step (forward, CE + Dice, backward, AdamW) at these
    shapes under ``precision`` on ``device`` (the CPU by default) and returns its seconds: of a
    fresh network for a configuration, of a copy of a module (so the measurement never changes
    the caller's weights)."""
    torch.manual_seed(0)
    device = device or torch.device("cpu")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    network = (copy.deepcopy(model) if isinstance(model, nn.Module)
               else build_model(model)).train().to(device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    images = torch.rand(batch, _input_channels(model), size, size, device=device).contiguous(
        memory_format=memory_format)
    loss_fn = CEDiceLoss()

    def finished() -> float:
        if device.type == "cuda":                # kernels run asynchronously: wait for them
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def step() -> float:
        start = finished()
        with autocast(device, precision):
            logits = network(images)
        classes = logits.shape[1]
        masks = torch.randint(0, max(classes, 2), (batch, size, size), device=device)
        loss = (loss_fn(logits.float(), masks) if classes > 1 else logits.float().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return finished() - start

    return step


def measure_forward(model: Network, batch: int, size: int, precision: str,
                    channels_last: bool = True) -> Callable[[], float]:
    """A function that runs one inference forward pass at these shapes under ``precision``
    and returns its seconds. A module is run as it is (already in eval mode and its layout)."""
    network = model if isinstance(model, nn.Module) else build_model(model).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if not isinstance(model, nn.Module):
        network = network.to(memory_format=memory_format)
    images = torch.rand(batch, _input_channels(model), size, size).contiguous(
        memory_format=memory_format)
    device = torch.device("cpu")

    def forward() -> float:
        start = time.perf_counter()
        with torch.inference_mode(), autocast(device, precision):
            network(images)
        return time.perf_counter() - start

    return forward


def decide_precision(requested: str, device: torch.device,
                     model: Network | None = None, batch: int = 1,
                     size: int = 256, measure: Callable | None = None,
                     recorded: dict | None = None) -> PrecisionChoice:
    """The precision ``model`` runs in on ``device``: ``requested`` (fp32, bf16, fp16) as
    given; fp32 when ``recorded`` says the run fell back to it (`unetseg.health`); for
    ``"auto"``, the one ``recorded`` when a resumed run started, else bf16 (or fp16)
    on a GPU, else on a CPU with native bf16 the faster of fp32 and bf16 timed with ``measure``
    (`measure_step` for training, the default; `measure_forward` for prediction) on ``batch``
    images of ``size`` x ``size``, else fp32. Without a ``model`` to time, a CPU runs fp32.

    Raises ValueError, naming the flag, for an unknown precision and for fp16 off CUDA.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, found "
                         f"{requested!r}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16: fp16 autocast needs a CUDA device; use bf16 or "
                         "fp32 on the CPU")
    if recorded and recorded.get("fell_back"):
        return PrecisionChoice("fp32", recorded.get("seconds", {}), recorded["reason"], True)
    if requested != "auto":
        return PrecisionChoice(requested, reason="as requested")
    if recorded:
        return PrecisionChoice(recorded["precision"], recorded.get("seconds", {}),
                               "as when the run started")
    if device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return PrecisionChoice(precision, reason="a GPU")
    if device.type != "cpu" or not cpu_has_bf16():
        return PrecisionChoice("fp32", reason="no native bf16 on this CPU")
    if model is None:
        return PrecisionChoice("fp32", reason="no model to time")
    return _measured(model, batch, size, measure or measure_step)


def replayed_precision(recorded: str, device: torch.device) -> str:
    """The precision a checkpoint recorded, to score it as it ran in training: fp16 autocast
    is CUDA-only, so a GPU's fp16 run is scored in fp32 on a CPU."""
    return "fp32" if recorded == "fp16" and device.type != "cuda" else recorded


def _measured(model: Network, batch: int, size: int,
              measure: Callable) -> PrecisionChoice:
    """The faster of fp32 and bf16 on this CPU, timed with ``measure`` (or cached)."""
    task = "inference" if measure is measure_forward else "training"
    key = f"{cpu_kind()} | torch {torch.__version__} | {describe_model(model)} | {task} | " \
          f"batch {batch} | {size}x{size} | {torch.get_num_threads()} threads"
    cache = cache_dir() / "precision.json"
    known = _read_cache(cache)
    if key in known:
        found = known[key]
        return PrecisionChoice(found["precision"], found["seconds"],
                               f"measured earlier, cached in {cache}")
    # The run's own random stream must not depend on whether this was measured or cached.
    with torch.random.fork_rng(devices=[]):
        steps = {name: measure(model, min(batch, MEASURE_BATCH), size, name)
                 for name in ("fp32", "bf16")}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            step()                                            # warm-up: allocations, kernels
        for _ in range(ROUNDS):
            for name, step in steps.items():
                times[name].append(step())
    seconds = {name: min(values) for name, values in times.items()}
    faster = "bf16" if seconds["bf16"] < (1 - MARGIN) * seconds["fp32"] else "fp32"
    choice = PrecisionChoice(faster, seconds, f"the faster here, cached in {cache}")
    known[key] = choice.to_dict()
    try:
        write_json(cache, known, indent=1)
    except OSError:                       # a read-only home: measure again next time
        pass
    return choice


def describe_model(model: Network) -> str:
    """What the cache key says about a model: a U-Net's config, else the class and a digest
    of its parameter shapes (two models with the same layers cost the same)."""
    config = getattr(model, "config", None) if isinstance(model, nn.Module) else model
    if is_dataclass(config):
        return str(sorted(vars(config).items()))
    shapes = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    return f"{type(model).__name__} {hashlib.sha1(shapes.encode()).hexdigest()[:12]}"


def _read_cache(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}
