"""From a model configuration to the network it names: our `UNet`, or a model of
segmentation_models_pytorch (smp) behind the same contract.

``arch="unet"`` (the default) is this toolkit's U-Net and needs nothing else installed.
``arch="smp:NAME"`` is smp's decoder NAME (``smp:Unet``, ``smp:FPN``, ``smp:DeepLabV3Plus``,
``smp:Segformer``, ...) on the encoder ``encoder`` (``resnet34`` by default), built by
``smp.create_model``. smp needs timm and torchvision, so it is an optional extra
(``pip install -e ".[smp]"``; ``make exp-env`` builds an environment where it imports).

Everything downstream of the model (training, checkpoints, evaluation, tiled prediction, the
inspector, ONNX export, resume) sees the same thing either way: a module with a ``config`` (the
configuration that rebuilds it: a `UNetConfig`, or the smp model's `unetseg.config.ModelConfig`),
float images (N, C, H, W) in, logits (N, classes, H, W) out,
for any H and W. smp's encoders downsample 32 times and refuse other sizes, so `SmpModel`
pads the input up to a multiple of 32 and crops the logits back.

Pretrained encoder weights are downloaded by smp (smp 0.5 and later fetch them from the
Hugging Face Hub into ``~/.cache/huggingface/hub``; earlier versions into torch's hub cache,
``~/.cache/torch/hub/checkpoints``) only when a new run starts with
``encoder_weights="imagenet"``; a model rebuilt from a checkpoint never downloads anything:
its weights are in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .model import UNet, UNetConfig

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["build_model", "SmpModel", "size_multiple", "import_smp", "SMP_PREFIX"]

SMP_PREFIX = "smp:"


def build_model(config: ModelConfig | UNetConfig, pretrained: bool = False) -> nn.Module:
    """The network ``config`` describes, with fresh weights: a run's model section, or a
    U-Net's own `UNetConfig`.

    ``pretrained`` lets an smp encoder start from ``config.encoder_weights`` (a download on
    first use); without it every weight is random, as when a checkpoint is about to be loaded.
    """
    if isinstance(config, UNetConfig):
        return UNet.from_config(config)
    if config.arch == "unet":
        return UNet.from_config(config.unet())
    return SmpModel(config, pretrained)


def size_multiple(model: nn.Module) -> int:
    """The side that inputs are best padded to a multiple of: every pooling level exact."""
    if isinstance(model, SmpModel):
        return model.multiple
    config = getattr(model, "config", None)
    return 2 ** config.depth if isinstance(config, UNetConfig) else 16


def import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as error:
        raise ValueError(
            "--arch smp:* needs segmentation_models_pytorch (with timm and torchvision): "
            "pip install -e '.[smp]' in an environment whose torchvision imports beside its "
            "torch, or `make exp-env` for .venv-exp") from error
    return smp


class SmpModel(nn.Module):
    """An smp model with the `UNet` contract: ``config``, any input size, logits at the
    input's H x W.

    The input is padded at the bottom and right (edge values repeated) to a multiple of the
    encoder's output stride, and the logits are cropped back, so a 480 x 360 CamVid frame or a
    1 x 1 image works as it does with `UNet`.
    """

    def __init__(self, config: ModelConfig, pretrained: bool = False) -> None:
        super().__init__()
        smp = import_smp()
        self.config = config
        name = config.arch.removeprefix(SMP_PREFIX)
        weights = config.encoder_weights if pretrained and config.encoder_weights != "none" \
            else None
        try:
            self.net = smp.create_model(name, encoder_name=config.encoder,
                                        encoder_weights=weights,
                                        in_channels=config.in_channels,
                                        classes=config.num_classes)
        except (KeyError, ValueError) as error:
            raise ValueError(f"--arch {config.arch} --encoder {config.encoder}: smp cannot "
                             f"build it ({error})") from error
        self.multiple = int(getattr(self.net.encoder, "output_stride", 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"{self.config.arch} expects (N, {self.config.in_channels}, H, W) "
                             f"float images, found shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        # Always padded, by zero where the size fits: an exported graph then holds no branch
        # frozen to its example's size.
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return self.net(x)[..., :height, :width]
