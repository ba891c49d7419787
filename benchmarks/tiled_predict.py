"""Tiled prediction of large images: `unetseg.predict` against MONAI's `sliding_window_inference`.

Same model, tile (256), overlap (0.25), Gaussian blending and tiles per forward pass (4) for
every contender:

- ``unetseg``: ``predict(segmenter, image, tile=256)`` with its defaults (precision "auto",
  BatchNorm folded and channels_last by `load_segmenter`), from the uint8 image to the uint8 mask;
- ``monai``: MONAI as its documentation shows it, a plain fp32 model (BatchNorm not folded,
  NCHW): ``sliding_window_inference(inputs, 256, 4, model, 0.25, mode="gaussian")`` on the
  image as a float32 (1, 3, H, W) tensor, then the argmax;
- ``monai-fast``: the same call given unetseg's fast model (folded, channels_last) under the
  autocast precision unetseg chose, so that the two tiling engines alone are compared.

Each run is a child process of its own (so its peak resident memory, VmHWM, is its own), with
all cores, after a warm-up prediction of a 512 x 512 crop in the same process; contenders take
turns (A B C A B C ...). The model is a base-16 U-Net, 3 classes (random weights: the cost does
not depend on them; BatchNorm statistics and head biases are fitted to the test image so that
every class takes a share of the mask), on a 2048 x 2048 image (3 runs each) and an
8192 x 8192 one (1 run each: 1849 tiles, about 30 s for unetseg and 85 s for MONAI's fp32 row on
2 cores; the script takes about 4 minutes). ``--large-model pixel`` runs a per-pixel stand-in (a
1 x 1 convolution) at the large size instead, which times the tiling engines alone in a minute.
Masks are compared with unetseg's (share of equal pixels).

    .venv/bin/python benchmarks/tiled_predict.py [--quick] [--repeats 3] [--base 16]
        [--size 2048] [--large-size 8192] [--large-model unet|pixel] [--large-repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import RESULTS, Timing, machine, print_table, printed, write_results

CONTENDERS = ("unetseg", "monai", "monai-fast")
TILE, OVERLAP, TILES_PER_PASS = 256, 0.25, 4
CLASSES = ["background", "circle", "square"]


# --- inside a child process -----------------------------------------------------------------

def make_image(size: int) -> np.ndarray:
    """(size, size, 3) uint8: smooth random colour fields (blocks of 64 px, linearly blended)."""
    rng = np.random.default_rng(0)
    cells = size // 64 + 2
    coarse = rng.random((cells, cells, 3), dtype=np.float32)
    axis = np.arange(size, dtype=np.float32) / 64
    i, f = axis.astype(int), (axis % 1)[:, None]
    rows = coarse[i] * (1 - f[..., None]) + coarse[i + 1] * f[..., None]     # (size, cells, 3)
    image = np.empty((size, size, 3), dtype=np.uint8)
    for top in range(0, size, 1024):         # in bands: no float32 copy of the whole image
        band = rows[top:top + 1024]
        mixed = band[:, i] * (1 - f[None]) + band[:, i + 1] * f[None]
        image[top:top + 1024] = (mixed * 255).astype(np.uint8)
    return image


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    from harness import peak_rss_mib
    return peak_rss_mib()


def build_model(kind: str, checkpoint: str, fast: bool):
    """The `Segmenter` (normalisation included) a contender runs: from the U-Net checkpoint,
    folded and channels_last (``fast``) or as saved; or the per-pixel stand-in."""
    import torch

    from unetseg.infer import Segmenter, load_segmenter

    if kind == "unet":
        model = load_segmenter(checkpoint, fold=fast)
    else:
        torch.manual_seed(0)
        model = Segmenter(torch.nn.Conv2d(3, len(CLASSES), 1), [0.5] * 3, [0.25] * 3, CLASSES,
                          [(0, 0, 0)] * len(CLASSES)).eval()
    layout = torch.channels_last if fast else torch.contiguous_format
    return model.to(memory_format=layout)


def unetseg_runner(model):
    from unetseg.infer import predict

    return lambda image: predict(model, image, tile=TILE, overlap=OVERLAP, blend="gaussian",
                                 batch_size=TILES_PER_PASS).mask


def chosen_precision(model) -> str:
    """The precision `unetseg.predict` resolves "auto" to for this model and these tiles."""
    import torch

    from unetseg import infer

    return infer.prediction_precision(model, "auto", TILE, TILES_PER_PASS, torch.device("cpu"))


def monai_runner(model, precision: str | None):
    """MONAI's sliding window from the uint8 image to the uint8 mask; with ``precision``, the
    predictor runs channels_last under that autocast (the fast row)."""
    import torch
    from monai.inferers import sliding_window_inference

    from unetseg.runtime import autocast

    def predictor(x: torch.Tensor) -> torch.Tensor:
        if precision is None:
            return model(x)
        with autocast(torch.device("cpu"), precision):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    @torch.inference_mode()
    def run(image: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous().float().div_(255)
        out = sliding_window_inference(inputs, TILE, TILES_PER_PASS, predictor, OVERLAP,
                                       mode="gaussian")
        return out.argmax(1)[0].to(torch.uint8).numpy()

    return run


def child(args: argparse.Namespace) -> None:
    """One timed prediction; prints a JSON line of its figures."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    image = make_image(args.size)
    model = build_model(args.model, args.checkpoint, fast=args.contender != "monai")
    precision = "fp32"
    if args.contender == "unetseg":
        run = unetseg_runner(model)
        precision = chosen_precision(model)
    elif args.contender == "monai":
        run = monai_runner(model, None)
    else:
        precision = args.precision
        run = monai_runner(model, precision)
    run(image[:512, :512].copy())                        # warm-up: kernels, allocator
    before = status_mib("VmRSS")
    start = time.perf_counter()
    mask = run(image)
    seconds = time.perf_counter() - start
    peak = status_mib("VmHWM")
    if args.mask_out:
        np.save(args.mask_out, mask)
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "before_mib": before,
                      "precision": precision, "threads": torch.get_num_threads()}))


# --- the parent -----------------------------------------------------------------------------

def make_checkpoint(path: Path, base: int) -> None:
    import torch

    from unetseg.checkpoint import save_checkpoint
    from unetseg.model import UNet

    torch.manual_seed(0)
    model = UNet(3, len(CLASSES), base=base)
    # Random weights, with BatchNorm statistics and head biases fitted to the test image so
    # that the logits vary across it, every class gets a share of the mask, and the masks'
    # agreement means something.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None                      # a plain average over the batches
    crops = torch.from_numpy(make_image(1024)).permute(2, 0, 1).float().div(255)
    crops = crops.unfold(1, 256, 256).unfold(2, 256, 256).permute(1, 2, 0, 3, 4)
    crops = (crops.reshape(-1, 3, 256, 256) - 0.5) / 0.25
    with torch.no_grad():
        model.train()(crops)
        model.head.bias -= model.eval()(crops).mean((0, 2, 3))
    save_checkpoint(path, model.eval(),
                    {"class_names": CLASSES, "colours": [[0, 0, 0], [230, 60, 60], [60, 120, 230]],
                     "ignore_index": 255,
                     "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}})


def run_child(contender: str, size: int, model: str, checkpoint: Path, precision: str,
              mask_out: Path | None) -> dict:
    cores = str(os.cpu_count() or 1)
    env = {**os.environ, "OMP_NUM_THREADS": cores, "MKL_NUM_THREADS": cores}
    command = [sys.executable, __file__, "--child", contender, "--size", str(size), "--model",
               model, "--checkpoint", str(checkpoint), "--precision", precision]
    if mask_out is not None:
        command += ["--mask-out", str(mask_out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{contender} at {size} x {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(size: int, model: str, repeats: int, checkpoint: Path, folder: Path) -> dict:
    """Every contender ``repeats`` times in turns; the first run of each saves its mask."""
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    precision = "fp32"
    for repeat in range(repeats):
        for name in CONTENDERS:
            mask_out = folder / f"{name}-{size}.npy" if repeat == 0 else None
            figures = run_child(name, size, model, checkpoint, precision, mask_out)
            if name == "unetseg":
                precision = figures["precision"]        # monai-fast runs under the same
            runs[name].append(figures)
    return runs


def report(size: int, what: str, runs: dict, folder: Path) -> dict[str, float]:
    ours = Timing([r["seconds"] for r in runs["unetseg"]])
    ours_peak = max(r["peak_mib"] for r in runs["unetseg"])
    reference = np.load(folder / f"unetseg-{size}.npy")
    rows, ratios = [], {}
    for name, figures in runs.items():
        timing = Timing([r["seconds"] for r in figures])
        peak = max(r["peak_mib"] for r in figures)
        before = max(r["before_mib"] for r in figures)
        mask = np.load(folder / f"{name}-{size}.npy")
        agreement = 100.0 * float((mask == reference).mean())
        speed = timing.median / ours.median           # > 1: unetseg is faster
        rows.append([name, figures[0]["precision"], f"{timing.median:.2f}", timing.spread(),
                     f"{size * size / timing.median / 1e6:.2f}", f"{speed:.2f}",
                     f"{peak:.0f}", f"{before:.0f}", f"{peak / ours_peak:.2f}",
                     f"{agreement:.3f}"])
        ratios[name] = speed
        ratios[name + " memory"] = peak / ours_peak
    shares = np.bincount(reference.ravel(), minlength=len(CLASSES)) / reference.size
    print_table(f"Tiled prediction, {size} x {size} RGB, {what}, tile {TILE}, overlap "
                f"{OVERLAP}, gaussian, {TILES_PER_PASS} tiles per pass, {len(ours.values)} "
                f"runs each (unetseg's mask: class shares "
                f"{', '.join(f'{share:.0%}' for share in shares)})",
                ["contender", "precision", "seconds (median)", "min-max", "Mpx/s",
                 "time / unetseg's", "peak RSS MiB (max)", "RSS before MiB", "peak / unetseg's",
                 "mask = unetseg's %"], rows)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 512 and 1024 px, base 8, one run each")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (default 3)")
    parser.add_argument("--base", type=int, default=16, help="U-Net base channels (default 16)")
    parser.add_argument("--size", type=int, default=2048,
                        help="side of the U-Net throughput image (default 2048)")
    parser.add_argument("--large-size", type=int, default=8192,
                        help="side of the memory image (default 8192)")
    parser.add_argument("--large-model", choices=["unet", "pixel"], default="unet",
                        help="model at --large-size: the U-Net (default) or a per-pixel "
                             "stand-in that times the tiling engines alone")
    parser.add_argument("--large-repeats", type=int, default=1,
                        help="runs per contender at --large-size (default 1)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="unet", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--mask-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.contender = args.child
        child(args)
        return
    if args.quick:
        args.size, args.large_size, args.base, args.repeats, args.large_repeats = \
            512, 1024, 8, 1, 1
    print(machine())
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        checkpoint = folder / "unet.safetensors"
        make_checkpoint(checkpoint, args.base)
        unet = f"U-Net base {args.base}"
        small = report(args.size, unet,
                       measure(args.size, "unet", args.repeats, checkpoint, folder), folder)
        large = report(args.large_size, unet if args.large_model == "unet"
                       else "per-pixel stand-in model (1 x 1 conv)",
                       measure(args.large_size, args.large_model, args.large_repeats,
                               checkpoint, folder), folder)
    print_table(f"Ratios measured in this run (targets: throughput >= 2x MONAI; peak RSS at "
                f"{args.large_size} <= 0.33 of MONAI's)",
                ["image", "throughput / MONAI as documented", "/ MONAI with our fast model",
                 "peak RSS / MONAI's as documented", "/ MONAI-fast's"],
                [[f"{size} x {size}", f"{ratios['monai']:.2f}x", f"{ratios['monai-fast']:.2f}x",
                  f"{1 / ratios['monai memory']:.2f}", f"{1 / ratios['monai-fast memory']:.2f}"]
                 for size, ratios in ((args.size, small), (args.large_size, large))])
    if not args.quick:
        write_results(RESULTS / "tiled_predict.json", tables=printed())


if __name__ == "__main__":
    main()
