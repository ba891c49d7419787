"""Training step and inference on one device, ours against the seed and MONAI, and the demo's
time to IoU 0.90: the timing half of `gpu_check.sh`.

Each contender in one process, on ``--device``, alternated round after round; the GPU is
synchronised around every timed call. Ours runs as ``unetseg train`` runs it
(`optimize_for_training`: channels_last, bf16 or fp16 autocast, fused AdamW, GradScaler for
fp16); the seed's plain U-Net and MONAI's BasicUNet run in fp32 as their tutorials do. Then the
synthetic demo data trains through `unetseg.fit` until both shape classes reach IoU 0.90.

    .venv/bin/python benchmarks/gpu_timing.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from harness import alternate, machine, print_table
from seed_unet import SeedUNet, train_step

from unetseg import CEDiceLoss, UNet, optimize_for_inference, optimize_for_training
from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
from unetseg.train import fit


def synchronised(device: torch.device, function):
    def call():
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def contenders(device, size: int, batch: int):
    """name -> (training step, inference at batch 1, inference at `batch`)."""
    from monai.networks.nets import BasicUNet

    images = torch.rand(batch, 3, size, size, device=device)
    masks = torch.randint(0, 3, (batch, size, size), device=device)
    found = {}
    fast = optimize_for_training(UNet(3, 3, base=32), batch_size=batch, size=size, device=device)
    optimizer = torch.optim.AdamW(fast.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=fast.runtime.precision == "fp16")
    loss_fn = CEDiceLoss()

    def ours_step():
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss_fn(fast(images), masks)).backward()
        scaler.step(optimizer)
        scaler.update()

    predictor = optimize_for_inference(fast.module, batch_size=batch, size=size, device=device)
    found[f"ours b32 ({fast.runtime.precision})"] = (ours_step, predictor)
    for name, model in (("seed (plain fp32)", SeedUNet(3, 3, base=32)),
                        ("MONAI BasicUNet (fp32)", BasicUNet(spatial_dims=2, in_channels=3,
                                                             out_channels=3))):
        model = model.to(device)
        plain_optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        found[name] = ((lambda m=model, o=plain_optimizer: train_step(m, o, images, masks)),
                       model)
    rows = {}
    for name, (step, net) in found.items():
        def infer(n, net=net):
            net.eval()
            with torch.inference_mode():
                net(images[:n])
        rows[name] = [synchronised(device, step),
                      synchronised(device, lambda net=net: infer(1, net)),
                      synchronised(device, lambda net=net: infer(batch, net))]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    device = torch.device(args.device)
    size, batch, repeats = (64, 2, 1) if args.quick else (256, 8, 5)
    print(machine())
    rows = contenders(device, size, batch)
    table = []
    for column, label in ((0, "train step"), (1, "inference b1"), (2, f"inference b{batch}")):
        times = alternate({name: calls[column] for name, calls in rows.items()}, repeats)
        seed = times["seed (plain fp32)"].median
        for name, timing in times.items():
            images = batch if column != 1 else 1
            table.append([label, name, images / timing.median, timing.spread(),
                          seed / timing.median])
    print_table(f"{device}, {size}x{size}, batch {batch}: img/s (median over {repeats})",
                ["what", "contender", "img/s", "s range", "x seed"], table)
    with tempfile.TemporaryDirectory() as out:
        epochs = 1 if args.quick else 12
        config = RunConfig(data=DataConfig(source="synthetic", size=64, batch_size=16,
                                           train_samples=64 if args.quick else 2000,
                                           val_samples=16 if args.quick else 200),
                           model=UNetConfig(base=16),
                           train=TrainConfig(out=out, epochs=epochs, device=args.device,
                                             progress=False))
        start = time.perf_counter()
        result = fit(config)
        seconds = time.perf_counter() - start
        reached = next((row for row in result.history
                        if min(row["val_iou"][1:]) >= 0.90), None)
    if reached:
        spent = sum(row["seconds"] for row in result.history[:reached["epoch"]])
        when = f"epoch {reached['epoch']}, {spent:.1f} s"
    else:
        when = f"not reached (best mIoU {result.best_miou:.3f})"
    print(f"demo data (synthetic 64x64, base 16, {epochs} epochs): {seconds:.1f} s in all; "
          f"circle and square IoU >= 0.90: {when}")


if __name__ == "__main__":
    main()
