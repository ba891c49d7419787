"""Will it fit? Memory estimated before anything large is allocated.

A model too deep or a crop too large for the machine used to end in the kernel's OOM killer
after minutes of decoding data, with no checkpoint written. The estimate runs the model on
PyTorch's ``meta`` device, where tensors have shapes but no storage: it builds the real
network and traces one real forward pass for free, counting the parameters and every tensor
autograd saves for the backward pass. Training then needs about

    parameters x 4 copies (weights, gradients, AdamW's two moments) + saved activations,

plus workspace, for which `HEADROOM` leaves room.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .architectures import build_model, import_smp

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["Estimate", "training_estimate", "prediction_estimate", "available_bytes",
           "check_fits", "check_training_fits", "HEADROOM"]

# Room for convolution workspaces, the allocator's slack and the data pipeline. Measured peak
# RSS growth over two AdamW steps (2-core AMD EPYC, one thread) against the estimate before
# headroom: base 32, batch 8, 256 x 256: 1.89 GiB against 1.96 in fp32, 1.14 against 1.96 in
# bf16 (autocast's casts are counted as if all were kept); base 16, batch 16, 64 x 64: 0.26 GiB
# against 0.15 (fixed overheads dominate a small run, which fits anyway).
HEADROOM = 1.5
# Warn above this share of the memory available.
WARN_SHARE = 0.7
GIB = 2**30


@dataclass(frozen=True)
class Estimate:
    parameters: int
    parameter_bytes: int          # weights, gradients and AdamW's two moments
    activation_bytes: int         # tensors saved for the backward pass of one batch
    task: str = "train"           # or "predict": what the bytes are for, in the message

    @property
    def total_bytes(self) -> int:
        return int(HEADROOM * (self.parameter_bytes + self.activation_bytes))

    def describe(self) -> str:
        if self.task == "predict":
            return (f"about {self.total_bytes / GIB:.1f} GiB to predict (tile buffers and "
                    f"their accumulators)")
        return (f"{self.parameters / 1e6:.1f} M parameters, about "
                f"{self.total_bytes / GIB:.1f} GiB to train ({self.activation_bytes / GIB:.1f} "
                f"GiB of activations per batch)")


def training_estimate(config: ModelConfig, batch: int, height: int, width: int,
                      precision: str = "fp32") -> Estimate:
    """Parameters and saved activations of one training step, traced on the meta device."""
    if config.arch != "unet":
        import_smp()          # first outside the meta device: tensors made on import stay real
    with torch.device("meta"):
        model = build_model(replace(config))
        images = torch.empty(batch, config.in_channels, height, width)
    saved = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    autocast = (torch.autocast("cpu", dtype=dtype) if precision in ("bf16", "fp16")
                else torch.autocast("cpu", enabled=False))
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor), autocast:
        model(images)
    parameters = sum(p.numel() for p in model.parameters())
    return Estimate(parameters, parameters * 4 * 4, saved)


def prediction_estimate(tile: int, width: int, classes: int, batch: int,
                        in_channels: int) -> Estimate:
    """Tiled prediction's big buffers: the band accumulators (class sums and weights, float32,
    ``tile`` rows by ``max(width, tile)``) and a batch of input tiles with their class
    probabilities. The network's own activations come on top, once per tile batch."""
    accumulators = 4 * (classes + 1) * tile * max(width, tile)
    tiles = 4 * batch * (in_channels + 2 * classes) * tile * tile
    return Estimate(0, 0, accumulators + tiles, task="predict")


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can use: free GPU memory, or the kernel's MemAvailable (Linux);
    None where neither can be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(estimate: Estimate, device: torch.device, flags: str) -> str | None:
    """Refuse (ValueError) when ``estimate`` exceeds the available memory; return a warning
    when it takes most of it, else None. ``flags`` names what the user can lower."""
    available = available_bytes(device)
    if available is None:
        return None
    need = estimate.total_bytes
    where = "GPU" if device.type == "cuda" else "RAM"
    if need > available:
        raise ValueError(f"this run needs {estimate.describe()}, but only "
                         f"{available / GIB:.1f} GiB of {where} is available; lower {flags}")
    if need > WARN_SHARE * available:
        return (f"warning: this run needs {estimate.describe()}, {need / available:.0%} of the "
                f"{available / GIB:.1f} GiB of {where} available; lower {flags} if it is "
                f"killed")
    return None


def check_training_fits(config, world_size: int, runtime) -> str | None:
    """`check_fits` for a run: a `RunConfig` whose model section has its data shapes, one
    process's share of the batch, square training crops, under ``runtime``'s precision."""
    size, batch = config.data.size, config.data.batch_size // world_size
    estimate = training_estimate(config.model, batch, size, size, runtime.precision)
    return check_fits(estimate, runtime.device, "--batch-size, --size, --base or --depth")
