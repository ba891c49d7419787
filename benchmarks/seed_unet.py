"""The seed project's plain U-Net and training step: what a user who copies it gets.

A benchmark contender, not part of the package. The same architecture as `unetseg.UNet`
(DoubleConv of 3x3 conv, BatchNorm, ReLU twice; four max-pool downs doubling the channels;
bilinear x2 upsampling, concatenation with the skip, DoubleConv; a 1x1 head), written the way
the tutorial writes it: fp32, the default NCHW layout, the default allocator, a loss that reads
its parts back with ``.item()``. Kept apart from the package so that the comparison is with code
nobody tuned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


class Down(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch))

    def forward(self, x):
        return self.net(x)


class Up(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = DoubleConv(in_ch + skip_ch, out_ch)

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class SeedUNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 32) -> None:
        super().__init__()
        w = [base, base * 2, base * 4, base * 8, base * 16]
        self.inc = DoubleConv(in_channels, w[0])
        self.down1, self.down2 = Down(w[0], w[1]), Down(w[1], w[2])
        self.down3, self.down4 = Down(w[2], w[3]), Down(w[3], w[4])
        self.up1, self.up2 = Up(w[4], w[3], w[3]), Up(w[3], w[2], w[2])
        self.up3, self.up4 = Up(w[2], w[1], w[1]), Up(w[1], w[0], w[0])
        self.outc = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


def dice_loss(logits, target, eps: float = 1e-6):
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (probs * onehot).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


def train_step(model, optimizer, images, masks) -> float:
    """Forward, CE + Dice, backward, AdamW; returns the loss as the tutorial logs it."""
    logits = model(images)
    loss = F.cross_entropy(logits, masks) + dice_loss(logits, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
