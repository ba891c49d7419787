"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), written to read top to bottom.

Building blocks first (`DoubleConv`, `Down`, `Up`), then the configuration, then the `UNet`
that assembles them. With ``depth=4`` the encoder halves the resolution four times and doubles
the channels each time: base, 2*base, 4*base, 8*base, then a 16*base bottleneck. The decoder
mirrors it, concatenating each encoder output (the skip) with the upsampled decoder features.

Any input size works, 1 x 1 included: max-pooling rounds up (``ceil_mode=True``) so no feature
map shrinks to zero, and whenever an upsampled map differs in size from its skip it is resized
to the skip's size, so the logits always come back at the input's H x W.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupNorm", "DoubleConv", "Down", "Up", "UNetConfig", "UNet"]

UPSAMPLE_MODES = ("bilinear", "transpose")
NORMS = ("batch", "group", "instance", "none")


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` that also takes a group holding a single value.

    torch refuses such a group (a 1 x 1 feature map with one channel per group, as at the
    bottleneck of a small image). The formula is still defined: the value normalises to 0 and
    the output is the learned shift. Calling the op directly skips only that refusal.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over ``channels`` feature maps.

    ``"instance"`` is written as a GroupNorm with one channel per group: numerically the same as
    ``nn.InstanceNorm2d(affine=True)``, but it accepts a 1 x 1 feature map, which the
    bottleneck of a small input is.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 32 groups is the GroupNorm paper's default; gcd keeps it a divisor for any base.
        return GroupNorm(math.gcd(32, channels), channels)
    if kind == "instance":
        return GroupNorm(channels, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, found {kind!r}")


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice; keeps H x W, maps ``in_channels`` to ``out_channels``.

    The convolutions have no bias when a norm follows, because the norm's shift replaces it.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a DoubleConv: (N, C_in, H, W) -> (N, C_out, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__(
            nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
            DoubleConv(in_channels, out_channels, norm),
        )


def _recording_graph() -> bool:
    """Whether an exporter (torch.export, ONNX, TorchScript tracing) is recording the graph.
    A Python ``if`` on a tensor size would then be frozen to the branch taken by the example
    input, so size-dependent code must take the general path."""
    return (torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing())


class Up(nn.Module):
    """Upsample x2, concatenate ``[skip, x]`` on channels, then a DoubleConv.

    ``"bilinear"`` upsampling has no weights and keeps the channels, so the DoubleConv sees
    ``skip_channels + in_channels``. ``"transpose"`` is the paper's learned 2x2 "up-convolution",
    which also halves the channels, so the DoubleConv sees ``skip_channels + in_channels // 2``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int,
        upsample: str = "bilinear", norm: str = "batch",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, found {upsample!r}")
        self.upsample = upsample
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            up_channels = in_channels // 2
        else:
            self.up = None
            up_channels = in_channels
        self.concat_channels = skip_channels + up_channels
        self.conv = DoubleConv(self.concat_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        if self.up is None:
            # Resizing straight to the skip's size is the x2 bilinear upsample when the skip is
            # exactly twice as large, and the size fix-up when pooling rounded up.
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        else:
            x = self.up(x)
            # Resizing to the same size is exact (bilinear at scale 1 copies), so the exported
            # graph may always resize.
            if _recording_graph() or x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip.shape[1] + x.shape[1] != self.concat_channels:
            raise ValueError(
                f"Up expects skip and upsampled channels to total {self.concat_channels}, "
                f"found skip {tuple(skip.shape)} and upsampled {tuple(x.shape)}"
            )
        return self.conv(torch.cat([skip, x], dim=1))


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a UNet (its constructor's arguments, checked); saved
    inside every checkpoint. The run configuration's model section
    (`unetseg.config.ModelConfig`) holds one, with the command-line help around it."""

    in_channels: int = 3
    num_classes: int = 2
    base: int = 32
    depth: int = 4
    upsample: str = "bilinear"
    norm: str = "batch"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, found {value!r}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, found {self.upsample!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, found {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), found {self.dropout!r}")


class UNet(nn.Module):
    """U-Net: float32 images (N, in_channels, H, W) -> logits (N, num_classes, H, W), any H, W >= 1.

    Args:
        in_channels: image channels (3 for RGB, 1 for grey).
        num_classes: output channels; one logit per class (1 for a binary task with BCE).
        base: channels of the first DoubleConv; level ``i`` has ``base * 2**i``.
        depth: number of Down (and Up) steps; the seed design is 4.
        upsample: ``"bilinear"`` (no weights) or ``"transpose"`` (learned 2x2, stride 2).
        norm: ``"batch"``, ``"group"``, ``"instance"`` or ``"none"``.
        dropout: channel dropout on the bottleneck, where the paper puts it ("at the end of
            the contracting path").

    In training mode BatchNorm needs more than one value per channel, so a batch of one image
    whose bottleneck is 1 x 1 (input of 16 x 16 or less at depth 4) is refused by torch; use a
    batch of two or more, or ``norm="group"``. Evaluation mode takes any size.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 2, base: int = 32, depth: int = 4,
        upsample: str = "bilinear", norm: str = "batch", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = UNetConfig(in_channels, num_classes, base, depth, upsample, norm, dropout)
        widths = [base * 2**i for i in range(depth + 1)]  # base, 2*base, ..., base*2**depth

        self.inc = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], norm) for i in range(depth)
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], upsample, norm) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> UNet:
        """Rebuild a model from a `UNetConfig` or its dict (as stored in a checkpoint; a run's
        model section, with ``arch="unet"``, too)."""
        if isinstance(config, UNetConfig):
            return cls(**asdict(config))
        values = dict(config)
        arch = values.pop("arch", "unet")
        if arch != "unet":
            raise ValueError(f"UNet.from_config: the config names --arch {arch}; build it with "
                             f"unetseg.architectures.build_model")
        values.pop("encoder", None)
        values.pop("encoder_weights", None)
        return cls(**values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        skips = []
        x = self.inc(x)                        # (N, base, H, W)
        for down in self.downs:
            skips.append(x)
            x = down(x)                        # (N, base*2**i, H/2**i, W/2**i), rounded up
        x = self.dropout(x)                    # (N, base*2**depth, ...): the bottleneck
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)                    # back up to the skip's size and width
        return self.head(x)                    # (N, num_classes, H, W)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                f"UNet expects a 4-D float tensor (N, {self.config.in_channels}, H, W), "
                f"found {x.ndim}-D {x.dtype} of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects {self.config.in_channels} input channels, "
                f"found {x.shape[1]} in shape {tuple(x.shape)}"
            )
