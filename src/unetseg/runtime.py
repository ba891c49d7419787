"""How a model runs: on which device, under which autocast precision, in which memory layout.

`Runtime` bundles the three choices every forward pass makes, so training, evaluation and
scoring run a model the same way; `Accelerated` is a model run that way. Which precision is
`unetseg.precision`'s decision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .precision import PrecisionChoice

__all__ = ["Runtime", "Accelerated", "pick_device", "autocast"]


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when available, else the CPU.

    Raises ValueError, naming the flag, for a name torch does not know (``gpu``) and for a
    CUDA device this PyTorch build or machine cannot provide.
    """
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device name; expected cpu, cuda or "
                         f"cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "has no CUDA" if torch.version.cuda is None else "sees no GPU"
            raise ValueError(f"--device {name}: this PyTorch ({torch.__version__}) {build}; "
                             f"use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} GPUs "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Runtime:
    """How a model runs: on ``device``, under a resolved ``precision`` (fp32, bf16 or fp16)
    autocast, with images in the channels_last layout or not."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """A batch moved to the device, in the memory layout the model runs in."""
        images = images.to(self.device, non_blocking=True)
        return (images.contiguous(memory_format=torch.channels_last) if self.channels_last
                else images)

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on the device, in the memory layout (in place, as ``Module.to`` is)."""
        return model.to(self.device, memory_format=(torch.channels_last if self.channels_last
                                                    else torch.contiguous_format))


class Accelerated(nn.Module):
    """``module`` run the fast way: inputs moved to the device in the memory layout, the
    forward pass under the runtime's autocast, logits returned in float32.

    Args:
        module: the network; its parameters are shared, not copied.
        runtime: device, resolved precision and layout (`Runtime`).
        compile: run the forward pass through ``torch.compile``.
        choice: how the precision was chosen (shown by ``describe``).
    """

    def __init__(self, module: nn.Module, runtime: Runtime, compile: bool = False,
                 choice: PrecisionChoice | None = None) -> None:
        super().__init__()
        self.module = runtime.model(module)
        self.runtime = runtime
        self.choice = choice
        # Not a registered submodule: the compiled wrapper shares the weights, and registering
        # it would list every parameter twice in the state dict.
        self.__dict__["_forward"] = torch.compile(self.module) if compile else self.module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            logits = self._forward(self.runtime.images(images))
        return logits.float()

    def describe(self) -> str:
        layout = "channels_last" if self.runtime.channels_last else "NCHW"
        precision = (self.choice.describe() if self.choice is not None
                     else f"precision {self.runtime.precision} (as given)")
        return f"{precision}, {layout}, on {self.runtime.device}"
