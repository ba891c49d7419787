"""Where and how fast to run: device, mixed precision, memory layout, and the C allocator.

`Runtime` bundles the three choices every forward pass makes (device, autocast precision,
memory layout), so training, evaluation and scoring run a model the same way; which precision
is `unetseg.precision`'s decision. `tune_malloc` changes the whole process: only the
command-line entry point calls it, never a library call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

import torch

__all__ = ["Runtime", "pick_device", "autocast", "tune_malloc"]

_malloc_tuned = False


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


def tune_malloc() -> bool:
    """Stop glibc from returning large freed blocks to the OS after every step.

    By default glibc serves blocks over 32 MiB with mmap and unmaps them on free, so every
    training step or tile pays page faults to map the same activations again (up to 2x slower
    on the 2-core machine we measured). Same effect as
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736``.
    Returns whether the settings were applied (only on glibc Linux); safe to call repeatedly.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False            # not glibc (musl has no mallopt): nothing to tune
    m_trim_threshold, m_mmap_max = -1, -4          # from glibc's malloc.h
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(m_mmap_max, 0) == 1
    # The largest int mallopt takes; freed memory is kept below 2 GiB of slack.
    ok = mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
    _malloc_tuned = ok
    return ok
