"""Is the DataLoader the bottleneck? CamVid samples/s against the model's training images/s.

At each crop size and batch of ``--crops`` (the defaults' 64 x 16, and 256 x 4, about the
planner's usual crop; augmentation on, the default U-Net with CamVid's 11 classes), three
things are timed, each alternated with its rivals after a warm-up:

1. one training step (forward, CE + Dice, backward, AdamW; channels_last) on a fixed batch,
   in fp32 and under bf16 autocast: the faster is the precision used below;
2. the training DataLoader alone over a whole epoch, built as `fit` builds it (a new
   loader each epoch, so worker start-up counts), with ``workers`` = 0, 1 and 2;
3. ``--fed-batches`` training steps fed by a new loader with ``workers`` = 0, 1 and 2, and the
   same steps on the fixed batch (no loading at all): on a 2-core machine workers take CPU
   from the step, so this is the figure that decides. The loader is no bottleneck where the
   fed steps take about as long as the fixed-batch ones.

    .venv/bin/python benchmarks/data_speed.py [--quick] [--repeats 2] [--fed-batches 8]
        [--crops 64x16,256x4] [--root ../shared/datasets/camvid] [--out FILE]

The target (issue 24): fed steps at most 1.15x the fixed-batch ones at both crops. The
tables are printed, and every timing is written with the machine, the commit and the command
to benchmarks/results/data_speed.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
from pathlib import Path

import torch
from harness import Timing, alternate, machine, print_table, write_results
from torch.utils.data import DataLoader

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets
from unetseg.losses import make_loss
from unetseg.model import UNet, UNetConfig
from unetseg.runtime import autocast

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = ROOT.parent / "shared" / "datasets" / "camvid"
RESULTS = ROOT / "benchmarks" / "results" / "data_speed.json"
WORKERS = (0, 1, 2)


def training_step(num_classes: int, precision: str, ignore_index: int):
    """A function running one optimiser step of a fresh default U-Net on a given batch."""
    torch.manual_seed(0)
    config = UNetConfig(in_channels=3, num_classes=num_classes)
    model = UNet.from_config(config).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = make_loss("ce_dice", ignore_index)
    cpu = torch.device("cpu")

    def step(images: torch.Tensor, masks: torch.Tensor) -> None:
        with autocast(cpu, precision):
            logits = model(images.contiguous(memory_format=torch.channels_last))
        loss = loss_fn(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def loader(dataset, batch_size: int, workers: int, epoch: int) -> DataLoader:
    """The training loader as `unetseg.train` builds it on the CPU."""
    dataset.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True,
                      generator=torch.Generator().manual_seed(epoch), drop_last=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender")
    parser.add_argument("--fed-batches", type=int, default=8,
                        help="training steps per fed run (default 8)")
    parser.add_argument("--crops", default="64x16,256x4", metavar="SIZExBATCH,...",
                        help="crop sizes and batch sizes measured (default: the defaults' "
                             "64 x 16, and 256 x 4, about the planner's usual crop)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"results file (default: {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="measure nothing: print the docs' tables of a results file")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    if not (args.root / "train").is_dir():
        print(f"skipped: no CamVid at {args.root} (pass --root)")
        return
    print(machine())
    crops = [tuple(int(n) for n in pair.split("x")) for pair in args.crops.split(",")]
    if args.quick:
        crops = [(size, min(batch, 4)) for size, batch in crops]
    results = [measure(args, size, batch) for size, batch in crops]
    write_results(args.out, root=str(args.root), repeats=args.repeats,
                  fed_batches=args.fed_batches, crops=results)


def measure(args: argparse.Namespace, size: int, batch: int) -> dict:
    """The three timings at crops of ``size`` in batches of ``batch``; prints their tables and
    returns their figures."""
    config = DataConfig(source="camvid", root=str(args.root), size=size, batch_size=batch)
    data = build_datasets(config)
    train = data.train
    epoch_batches, warmup, fed_batches, repeats = len(train) // batch, 1, args.fed_batches, \
        args.repeats
    if args.quick:
        epoch_batches, fed_batches, repeats, warmup = 2, 2, 1, 0
    fixed = [train[i] for i in range(batch)]
    images, masks = torch.stack([x for x, _ in fixed]), torch.stack([y for _, y in fixed])

    # 1. The step alone, in each precision.
    steps = {p: training_step(data.spec.num_classes, p, data.spec.ignore_index)
             for p in ("fp32", "bf16")}
    alone = alternate({p: (lambda s=s: s(images, masks)) for p, s in steps.items()},
                      repeats=1 if args.quick else 4, warmup=warmup)
    precision = min(alone, key=lambda p: alone[p].median)
    print_table(f"one training step on a fixed batch: default U-Net (base {UNetConfig().base}), "
                f"batch {batch} x 3 x {size} x {size}, 11 classes, CE + Dice, "
                f"AdamW, channels_last",
                ["precision", "s per step (median)", "min-max", "images/s"],
                [[p, f"{t.median:.3f}", t.spread(), f"{batch / t.median:.1f}"]
                 for p, t in alone.items()])
    step = steps[precision]

    # 2. The loader alone over a whole epoch. A new loader per run, as `fit` makes one per
    # epoch, so worker start-up counts. The files are in the page cache: build_datasets read
    # every one of them.
    epochs = itertools.count(1)

    def batches_of(workers: int, count: int):
        return itertools.islice(loader(train, batch, workers, next(epochs)), count)

    def load(workers: int) -> None:
        for _ in batches_of(workers, epoch_batches):
            pass

    loading = alternate({w: (lambda w=w: load(w)) for w in WORKERS}, repeats, warmup=0)
    samples = epoch_batches * batch
    print_table(f"the CamVid training loader alone: {samples} samples ({epoch_batches} "
                f"batches of {batch}), {size} px crops, augmentation on, {repeats} runs each",
                ["workers", "samples/s (median)", "min-max", "/ training images/s"],
                [[w, f"{samples / t.median:.0f}", _rate_spread(samples, t),
                  f"{samples / t.median / (batch / alone[precision].median):.1f}"]
                 for w, t in loading.items()])

    # 3. Training steps fed by the loader, against the same steps on a fixed batch.
    def fed(workers: int | None) -> None:
        if workers is None:
            for _ in range(fed_batches):
                step(images, masks)
            return
        for x, y in batches_of(workers, fed_batches):
            step(x, y)

    contenders = {"fixed batch, no loader": None, **{f"workers={w}": w for w in WORKERS}}
    training = alternate({name: (lambda w=w: fed(w)) for name, w in contenders.items()},
                         repeats, warmup=0)
    fed_samples = fed_batches * batch
    reference = training["fixed batch, no loader"].median
    print_table(f"{fed_batches} training steps ({precision}) fed by the loader (a new "
                f"loader per run), against the same steps on a fixed batch, {repeats} "
                f"runs each, {os.cpu_count()} cores",
                ["data", "images/s (median)", "min-max", "time / fixed batch's"],
                [[name, f"{fed_samples / t.median:.1f}", _rate_spread(fed_samples, t),
                  f"{t.median / reference:.2f}"] for name, t in training.items()])
    best = min(WORKERS, key=lambda w: training[f"workers={w}"].median)
    print(f"fastest fed training: workers={best} (DataConfig default: {config.workers})")
    return {"size": size, "batch": batch, "precision": precision,
            "step_s": {p: t.values for p, t in alone.items()},
            "loader_epoch_s": {str(w): t.values for w, t in loading.items()},
            "loader_samples": samples,
            "fed_s": {name: t.values for name, t in training.items()},
            "fed_ratio": {name: t.median / reference for name, t in training.items()}}


def report(document: dict) -> str:
    """docs/benchmarks.md's tables of a results file: per crop, the fed steps' images/s and
    their time against the fixed batch's (medians, the same run)."""
    blocks = []
    for crop in document["crops"]:
        batch = crop["batch"]
        images = crop["batch"] * document["fed_batches"]
        lines = [f"{crop['size']} px crops, batch {batch}, {crop['precision']}:", "",
                 "| data | img/s (median) | time / fixed batch's |", "|---|---|---|"]
        for name, values in crop["fed_s"].items():
            shown = f"`--{name.replace('=', ' ')}`" if name.startswith("workers") else name
            lines.append(f"| {shown} | {images / statistics.median(values):.1f} | "
                         f"{crop['fed_ratio'][name]:.2f} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def ratios(document: dict) -> str:
    """The fed steps' time against the fixed batch's at ``--workers 0``, per crop, in a line."""
    return ("At `--workers 0`: " + ", ".join(
        f"{crop['fed_ratio']['workers=0']:.2f}x at {crop['size']} px" for crop in
        document["crops"]) + f" (commit {document['commit']}, {document['machine']}).")


def _rate_spread(samples: int, timing: Timing) -> str:
    return f"{samples / max(timing.values):.1f}-{samples / min(timing.values):.1f}"


if __name__ == "__main__":
    main()
