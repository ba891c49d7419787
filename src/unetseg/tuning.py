"""Which precision trains fastest here: measured, not guessed from a CPU flag.

A CPU that advertises bf16 instructions is not always faster in bf16: on the AMD EPYC this
project was developed on, bf16 autocast trained a base-32 U-Net about 2x faster than fp32; on
an Intel Xeon with the same AVX-512 BF16 flag it was slower. So ``--precision auto`` on such a
CPU times a few real optimiser steps of each candidate at the run's own shapes (model, batch,
crop), alternating them so that a busy machine slows both alike, and keeps the faster. The
answer is cached per CPU model, PyTorch version and shapes (`cache_dir`), so a run pays for the
measurement once; a resumed run keeps the precision it started with.

GPUs are not measured: bf16 (or fp16 where bf16 is missing) is always the faster there.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .files import atomic_write_text
from .losses import CEDiceLoss
from .model import UNet, UNetConfig
from .runtime import autocast, cpu_has_bf16, pick_precision

__all__ = ["PrecisionChoice", "training_precision", "choose_precision", "measure_step",
           "cache_dir", "ROUNDS"]

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

    def describe(self) -> str:
        if not self.seconds:
            return f"precision {self.precision} ({self.reason})"
        times = ", ".join(f"{name} {value:.3g} s" for name, value in self.seconds.items())
        return f"precision {self.precision} (measured per step: {times}; {self.reason})"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "seconds": self.seconds, "reason": self.reason}


def cache_dir() -> Path:
    """``$UNETSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/unetseg``, else ``~/.cache/unetseg``."""
    if os.environ.get("UNETSEG_CACHE_DIR"):
        return Path(os.environ["UNETSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetseg"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_step(config: UNetConfig, batch: int, size: int, precision: str,
                 channels_last: bool = True) -> Callable[[], float]:
    """A function that runs one training step (forward, CE + Dice, backward, AdamW) of a fresh
    model at these shapes under ``precision`` and returns its seconds."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = UNet.from_config(config).to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.rand(batch, config.in_channels, size, size).contiguous(
        memory_format=memory_format)
    masks = torch.randint(0, max(config.num_classes, 2), (batch, size, size))
    loss_fn = CEDiceLoss() if config.num_classes > 1 else None
    device = torch.device("cpu")

    def step() -> float:
        start = time.perf_counter()
        with autocast(device, precision):
            logits = model(images)
        loss = (loss_fn(logits.float(), masks) if loss_fn is not None
                else logits.float().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def training_precision(config, batch: int, device: torch.device,
                       recorded: dict | None = None) -> PrecisionChoice:
    """The precision a run (a `RunConfig` whose model section has its data shapes) trains in:
    its ``--precision``; for ``auto``, the one ``recorded`` when a resumed run started, else
    `choose_precision` at the run's crop size and this process's ``batch``."""
    requested = config.train.precision
    if requested != "auto":
        return PrecisionChoice(pick_precision(requested, device), reason="--precision")
    if recorded:
        return PrecisionChoice(recorded["precision"], recorded.get("seconds", {}),
                               "as when the run started")
    return choose_precision(config.model, batch, config.data.size, device)


def choose_precision(config: UNetConfig, batch: int, size: int, device: torch.device,
                     measure: Callable = measure_step) -> PrecisionChoice:
    """The precision ``--precision auto`` trains in on ``device``; see the module docstring.
    ``measure`` is `measure_step` (a test may pass a stand-in)."""
    if device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return PrecisionChoice(precision, reason="a GPU")
    if device.type != "cpu" or not cpu_has_bf16():
        return PrecisionChoice("fp32", reason="no native bf16 on this CPU")
    key = f"{_cpu_model()} | torch {torch.__version__} | {sorted(vars(config).items())} | " \
          f"batch {batch} | {size}x{size} | {torch.get_num_threads()} threads"
    cache = cache_dir() / "precision.json"
    known = _read_cache(cache)
    if key in known:
        found = known[key]
        return PrecisionChoice(found["precision"], found["seconds"],
                               f"measured earlier, cached in {cache}")
    # The run's own random stream must not depend on whether this was measured or cached.
    with torch.random.fork_rng(devices=[]):
        steps = {name: measure(config, min(batch, MEASURE_BATCH), size, name)
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
        atomic_write_text(cache, json.dumps(known, indent=1))
    except OSError:                       # a read-only home: measure again next time
        pass
    return choice


def _read_cache(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}
