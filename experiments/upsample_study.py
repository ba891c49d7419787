"""Upsampling study: bilinear + convolution against transposed convolution in our U-Net.

Question: does the paper's learned 2x2 "up-convolution" (``upsample="transpose"``) buy accuracy
over parameter-free bilinear upsampling followed by the DoubleConv (``"bilinear"``, our
default), what does it cost in parameters and speed, and does it leave checkerboard artefacts
in the logits?

Datasets: ``synthetic`` (unetseg's circles and squares, 3 classes, 64 x 64) and ``isbi``
(ISBI-2012, cell and membrane). Both variants train with CE + Dice in the shared loop of
`common`: fp32, or with ``--precision bf16`` unetseg's training fast path for both alike.

Measured per variant, on the held-out test split (images that chose nothing: for synthetic a
draw of 200 from seeds neither training nor validation uses, for isbi slices 24-29): mIoU
(mean and min-max over seeds), parameters, median wall seconds of a training step (loading and
augmenting the batch included), median seconds of a whole-image forward pass on the first test
image (batch 1, after a warm-up), and the checkerboard score of the test logits
(`checkerboard_score`, the mean over the evaluated images). ``artefacts_<dataset>.png`` shows
where the high frequencies of the logits are (`high_pass`) for each variant on the first test
image, whole and magnified.

Full mode (defaults): 3 seeds; synthetic: batch 16, 300 steps, evaluated every 50 steps;
isbi: 128 px crops, batch 8, 300 steps, evaluated every 50 steps on the 6 whole 512 x 512
test slices; base-32 U-Net; inference timed 5 times. ``--steps N`` changes the steps of every
dataset. ``--quick``: 1 seed, 6 steps, 32 px ISBI crops, one or two test images, base 4, one
timing.

    .venv/bin/python experiments/upsample_study.py [--quick] [--out DIR] [--seeds N]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

# Run as a script, so experiments/ is on sys.path and its modules import by name.
from common import (
    Contender,
    Recipe,
    chosen_datasets,
    load_data,
    machine,
    predict_logits,
    study_parser,
    train_contender,
)
from reporting import fmt, markdown_table, plot_curves, write_json, write_results, write_summary

from unetseg.config import DataConfig

DATASETS = ("synthetic", "isbi")
VARIANTS = ("bilinear", "transpose")


# ---------------------------------------------------------------- the artefact measures

def checkerboard_score(logits: torch.Tensor) -> float:
    """Share of the logits' spectral energy at the period-2 (Nyquist) frequencies, in [0, 1].

    A stride-2 transposed convolution whose kernel overlaps unevenly paints a pattern that
    repeats every 2 pixels (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill
    2016); in the spectrum that is energy at half a cycle per pixel, along y, x or both.

    Definition, for ``logits`` of shape (..., H, W) (any leading dimensions, each (H, W) map
    treated alike): subtract each map's mean, multiply by a 2-D periodic Hann window, take
    |FFT2|^2, and divide the energy in the bins within 1.5 bins of the Nyquist frequency in
    either axis (``|k_y - H/2| <= 1.5`` or ``|k_x - W/2| <= 1.5``) by the total, summed over
    all maps. The window makes the map fade to 0 at its borders: without it the jump between
    opposite borders of the FFT's periodic extension (a ramp has one) would spread energy over
    every frequency, Nyquist included. The periodic Hann window spreads a frequency that falls
    on a bin over exactly three bins (an even side: Nyquist is bin H/2) and one between two
    bins (an odd side) over about four, hence the band. A pure checkerboard
    ``(-1)**(y + x)`` scores 1 (0.999 at 63 x 65), stripes ``(-1)**x`` too, a linear ramp or
    any smooth map about 0 (1e-10 at 64 x 64); a constant map (no energy) scores 0. Below
    about 16 pixels a side the band is a large share of all bins and the score means little.

    Why not compare the 2 x 2 phase sub-grids (``L[::2, ::2]``, ``L[1::2, ::2]``, ...) directly:
    on a ramp they differ by the slope, so that measure needs a detrending step and a
    normalisation to be ~0 on smooth logits; the spectral share needs neither.

    Limits: sharp class boundaries have a broadband spectrum, so real logits have a small
    non-zero floor; the score compares variants on the same images rather than being an
    absolute. Only the last upsampling's period-2 pattern is measured (deeper levels would
    leave period 4, 8, ... patterns, at frequencies real content also has).
    """
    maps = logits.detach().double().reshape(-1, *logits.shape[-2:])
    height, width = maps.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"checkerboard_score needs maps of at least 2 x 2, found "
                         f"{height} x {width}")
    window = (torch.hann_window(height, periodic=True, dtype=torch.float64)[:, None]
              * torch.hann_window(width, periodic=True, dtype=torch.float64)[None, :])
    centred = maps - maps.mean(dim=(-2, -1), keepdim=True)
    energy = torch.fft.fft2(centred * window).abs().square().sum(0)        # (H, W)
    near_y = (torch.arange(height, dtype=torch.float64) - height / 2).abs() <= 1.5
    near_x = (torch.arange(width, dtype=torch.float64) - width / 2).abs() <= 1.5
    band = near_y[:, None] | near_x[None, :]
    total = energy.sum().item()
    return energy[band].sum().item() / total if total > 0 else 0.0


def high_pass(logits: torch.Tensor) -> torch.Tensor:
    """Per pixel, the summed absolute difference between each logit map and its 3 x 3 local
    mean (edges replicated): (N, K, H, W) -> (N, H, W). Large at class boundaries and wherever
    a pixel-periodic pattern sits on otherwise smooth logits."""
    blurred = F.avg_pool2d(F.pad(logits, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (logits - blurred).abs().sum(1)


# ---------------------------------------------------------------- the study

def setup(dataset: str, quick: bool, args) -> tuple[DataConfig, Recipe, int]:
    """(data, recipe, U-Net base) of one dataset in full or quick mode."""
    if dataset == "synthetic":
        if quick:
            data = DataConfig(source="synthetic", size=64, train_samples=8, val_samples=2)
            return data, Recipe(batch_size=4, steps=6, eval_every=3, warmup_steps=2,
                                threads=args.threads), 4
        data = DataConfig(source="synthetic", size=64)
        return data, Recipe(batch_size=16, steps=300, eval_every=50, threads=args.threads), 32
    data = DataConfig(source="isbi", root=str(args.isbi_root), size=32 if quick else 128)
    if quick:
        return data, Recipe(batch_size=2, steps=6, eval_every=3, warmup_steps=2,
                            threads=args.threads, val_images=1), 4
    return data, Recipe(batch_size=8, steps=300, eval_every=50, threads=args.threads), 32


def inference_seconds(model: torch.nn.Module, image: torch.Tensor, repeats: int) -> float:
    """Median wall seconds of a whole-image forward pass (eval mode), after one warm-up."""
    model.eval()
    predict_logits(model, image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_logits(model, image)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def artefact_scores(model: torch.nn.Module, dataset, count: int) -> float:
    """Mean `checkerboard_score` of the logits of the first ``count`` test images."""
    model.eval()
    return statistics.mean(checkerboard_score(predict_logits(model, dataset[i][0][None]))
                           for i in range(count))


def save_artefact_figure(path: Path, image: torch.Tensor, mask: torch.Tensor,
                         logits: dict[str, torch.Tensor]) -> None:
    """Image, truth, and per variant the `high_pass` map, whole and a 48 x 48 centre patch
    magnified; the variants share one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    residuals = {name: high_pass(value)[0] for name, value in logits.items()}
    top = max(r.max().item() for r in residuals.values()) or 1.0
    height, width = mask.shape
    patch = (slice(max(0, height // 2 - 24), height // 2 + 24),
             slice(max(0, width // 2 - 24), width // 2 + 24))
    panels = [("image", image.mean(0), "gray", None), ("truth", mask.float(), "viridis", None)]
    for name, residual in residuals.items():
        panels += [(f"{name}: high-pass |L - blur(L)|", residual, "magma", top),
                   (f"{name}: centre 48 x 48", residual[patch], "magma", top)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for axis, (title, values, cmap, vmax) in zip(axes, panels):
        axis.imshow(values.numpy(), cmap=cmap, vmin=0 if vmax else None, vmax=vmax,
                    interpolation="nearest")
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for dataset in dict.fromkeys(run["dataset"] for run in runs):
        for variant in VARIANTS:
            members = [r for r in runs if r["dataset"] == dataset
                       and r["contender"]["upsample"] == variant]
            if not members:
                continue
            mious = [r["final"]["miou"] for r in members]
            rows.append({
                "dataset": dataset, "upsample": variant, "seeds": len(members),
                "miou_mean": statistics.mean(mious), "miou_min": min(mious),
                "miou_max": max(mious), "params": members[0]["params"],
                "step_wall_s": statistics.mean(r["step_wall_s"] for r in members),
                "inference_s": statistics.mean(r["inference_s"] for r in members),
                "checkerboard": statistics.mean(r["checkerboard"] for r in members)})
    return rows


def table(rows: list[dict]) -> str:
    header = ["dataset", "upsample", "seeds", "mIoU mean [min, max]", "params",
              "train s/step", "inference s/image", "checkerboard"]
    return markdown_table(header, [[
        r["dataset"], r["upsample"], r["seeds"],
        f"{fmt(r['miou_mean'])} [{fmt(r['miou_min'])}, {fmt(r['miou_max'])}]",
        f"{r['params']:,}", fmt(r["step_wall_s"], 4), fmt(r["inference_s"], 4),
        f"{r['checkerboard']:.2e}"] for r in rows])


def run_dataset(dataset: str, args, seeds: int, results: dict) -> None:
    """Both variants on one dataset, every seed; the figure from seed 0's models."""
    config, recipe, base = setup(dataset, args.quick, args)
    recipe = replace(recipe, precision=args.precision, steps=args.steps or recipe.steps)
    data, results["data"][dataset] = load_data(config, scored="test")
    shown = min(recipe.val_images or len(data.val), len(data.val))
    image, mask = data.val[0]
    logits = {}
    for seed in range(seeds):
        for variant in VARIANTS:
            contender = Contender(variant, "unet", "ce_dice", base=base, upsample=variant)
            model, run = train_contender(contender, data, recipe, seed)
            run["inference_s"] = inference_seconds(model, image[None], 1 if args.quick else 5)
            run["checkerboard"] = artefact_scores(model, data.val, shown)
            if seed == 0:
                logits[variant] = predict_logits(model, image[None])
            results["runs"].append({"dataset": dataset, **run})
            print(f"{dataset} {variant} seed {seed}: mIoU {fmt(run['final']['miou'])}, "
                  f"checkerboard {run['checkerboard']:.2e}", flush=True)
            results["machine"] = machine()
            write_json(args.out / "results.json", results)     # kept if a later run fails
    save_artefact_figure(args.out / f"artefacts_{dataset}.png", image, mask, logits)


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("upsample", __doc__, DATASETS)
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps per run on every dataset (default: the mode's)")
    args = parser.parse_args(argv)
    datasets = chosen_datasets(args, DATASETS)
    seeds = args.seeds or (1 if args.quick else 3)
    started = time.perf_counter()
    results = {"study": "upsample", "mode": "quick" if args.quick else "full",
               "command": " ".join(sys.argv),
               "overrides": {"seeds": args.seeds, "steps": args.steps, "precision": args.precision,
                             "datasets": args.datasets},
               "data": {}, "runs": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        run_dataset(dataset, args, seeds, results)
    rows = summarise(results["runs"])
    write_results(args.out, results, rows, started)
    plot_curves(results["runs"], "miou", args.out / "miou.png",
                "Test mIoU: bilinear vs transposed-conv upsampling")
    write_summary(args.out, results, table(rows), charts=(
        args.out / "miou.png", *(args.out / f"artefacts_{name}.png" for name in datasets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
