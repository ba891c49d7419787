"""Training and inference speed of the U-Net under each precision and memory layout.

Why the defaults are what they are: ``unetseg train`` uses channels_last everywhere and, on a
CPU with native bf16 (AVX-512 BF16 or AMX), times fp32 against bf16 at the run's shapes and
keeps the faster (`unetseg.tuning`): the flag alone does not say which is. This script times
one optimiser step and one forward pass in each combination, in one process, and prints each
as a ratio to plain fp32 NCHW, so the choice can be checked on any machine.

    .venv/bin/python benchmarks/train_speed.py [--base 32 --size 256 --batch 8 --steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from unetseg.losses import ce_dice_loss
from unetseg.model import UNet
from unetseg.runtime import autocast, cpu_has_bf16, tune_malloc

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def seconds_per_step(model, images, masks, precision: str, channels_last: bool, steps: int,
                     train: bool) -> float:
    device = torch.device("cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)
    times = []
    for _ in range(steps + 1):                     # the first step warms up and is dropped
        start = time.perf_counter()
        if train:
            with autocast(device, precision):
                logits = model(images)
            loss = ce_dice_loss(logits.float(), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode(), autocast(device, precision):
                model(images)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]  # the median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    masks = torch.randint(0, 3, (args.batch, args.size, args.size))
    print(f"U-Net base {args.base}, batch {args.batch} x 3 x {args.size} x {args.size}, "
          f"{torch.get_num_threads()} threads, native CPU bf16: {cpu_has_bf16()}")
    print(f"{'precision':<10}{'layout':<15}{'train s/step':>13}{'x fp32':>8}"
          f"{'infer s/batch':>15}{'x fp32':>8}")
    baseline = None
    for precision, channels_last in SETTINGS:
        state = UNet(3, 3, base=args.base).state_dict()
        timings = []
        for train in (True, False):
            model = UNet(3, 3, base=args.base)
            model.load_state_dict(state)
            timings.append(seconds_per_step(model, images, masks, precision, channels_last,
                                            args.steps, train))
        baseline = baseline or timings
        layout = "channels_last" if channels_last else "NCHW"
        print(f"{precision:<10}{layout:<15}{timings[0]:>13.3f}{baseline[0] / timings[0]:>8.2f}"
              f"{timings[1]:>15.3f}{baseline[1] / timings[1]:>8.2f}")


if __name__ == "__main__":
    main()
