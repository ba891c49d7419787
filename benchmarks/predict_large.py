"""Time and peak memory of `unetseg predict` on one large image, as a user runs it.

Builds a base-32 U-Net checkpoint (3 classes; the weights do not change the cost) and a
synthetic RGB PNG of the requested size, then runs the real command in a child process and
reads the child's peak resident memory from the kernel (``getrusage(RUSAGE_CHILDREN)``).

    .venv/bin/python benchmarks/predict_large.py [--size 8192] [--tile 256] [--base 32]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetseg.checkpoint import save_checkpoint
from unetseg.model import UNet


def make_checkpoint(path: Path, base: int) -> None:
    torch.manual_seed(0)
    model = UNet(3, 3, base=base)
    save_checkpoint(path, model, {"class_names": ["background", "circle", "square"],
                                  "colours": [[0, 0, 0], [230, 60, 60], [60, 120, 230]],
                                  "ignore_index": 255,
                                  "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}})


def make_image(path: Path, size: int) -> None:
    """Smooth random colour fields plus noise, written as an 8-bit RGB PNG."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (size // 256 + 1, size // 256 + 1, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(coarse, 256, axis=0), 256, axis=1)[:size, :size]
    Image.fromarray(image).save(path, compress_level=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_checkpoint(folder / "model.safetensors", args.base)
        make_image(folder / "big.png", args.size)
        command = [sys.executable, "-m", "unetseg", "predict", str(folder / "model.safetensors"),
                   str(folder / "big.png"), "--out", str(folder / "out"), "--tile",
                   str(args.tile), "--precision", args.precision, "--quiet"]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    image_bytes = args.size * args.size * 3
    print(f"unetseg predict, {args.size} x {args.size} RGB PNG, base-{args.base} U-Net, tile "
          f"{args.tile}, overlap 0.25, precision {args.precision}, "
          f"{torch.get_num_threads()} threads")
    print(f"wall time {seconds:.1f} s (reading and writing PNGs included), peak RSS "
          f"{peak / 2**30:.2f} GiB; the uint8 image alone is {image_bytes / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
