"""Start-up on a large image/mask folder: building the datasets, and time to the first step.

Writes ``--pairs`` (default 10,000) pairs of 128 x 128 RGB PNG images (a colour gradient, a
brighter circle and square, noise) and 8-bit index masks (3 classes) into a temporary folder,
dated an hour back like any folder nobody is writing to (the folder index leaves out files
changed in the seconds before a scan). Then, each in a child process of its own:

- ``build_datasets, empty cache``: what a first run does: every mask decoded, images read from
  their headers, up to 256 images per split decoded for the normalisation statistics;
- ``build_datasets, cached``: the same again, answered by the index under ``$UNETSEG_CACHE_DIR``
  (another DDP rank, a resumed run, the next run);
- ``first step, empty cache`` / ``first step, cached``: the real ``unetseg train --data FOLDER``
  (base-8 U-Net, 64 px crops, batch 8, fp32, no workers) from the start of the process until its
  first optimiser step returns (``unetseg.train.train_step`` is wrapped to exit there):
  Python and torch imports, the data check, the model, the first batch.

"Pillow opens" counts the files the child opened (header reads included); "seconds" of a build
is the call alone, of a first step the whole process. Contenders take turns (A B C D A B C D).
About a minute on 2 cores at the defaults.

    .venv/bin/python benchmarks/folder_startup.py [--pairs 10000] [--side 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from harness import RESULTS, Timing, machine, print_table, printed, write_results
from PIL import Image

CLASSES = "background,circle,square"
CONTENDERS = {"build": "build_datasets", "train": "first step"}
AN_HOUR_NS = 3600 * 10**9


def write_pair(root: Path, index: int, side: int) -> None:
    rng = np.random.default_rng(index)
    rows, columns = np.mgrid[:side, :side]
    cy, cx = rng.integers(0, side, 2)
    radius, corner = rng.integers(side // 8, side // 3), rng.integers(0, side - side // 4, 2)
    mask = np.zeros((side, side), np.uint8)
    mask[(rows - cy) ** 2 + (columns - cx) ** 2 < radius**2] = 1
    mask[corner[0]:corner[0] + side // 4, corner[1]:corner[1] + side // 4] = 2
    gradient = np.stack([columns * 255 // side, rows * 255 // side, np.full_like(rows, 128)], -1)
    image = gradient + 40 * mask[..., None] + rng.integers(0, 16, (side, side, 3))
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{index:05d}.png")
    Image.fromarray(mask).save(root / "masks" / f"{index:05d}.png")


def make_folder(root: Path, pairs: int, side: int) -> None:
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:          # PNG encoding releases the GIL
        list(pool.map(lambda index: write_pair(root, index, side), range(pairs)))
    old = time.time_ns() - AN_HOUR_NS
    for path in root.rglob("*.png"):
        os.utime(path, ns=(old, old))


# --- inside a child process -----------------------------------------------------------------

def count_opens() -> list[int]:
    """A counter of the files Pillow opens from now on."""
    opened = [0]
    original = Image.open

    def counting(*args, **kwargs):
        opened[0] += 1
        return original(*args, **kwargs)

    Image.open = counting
    return opened


def child_build(folder: str) -> None:
    from unetseg.config import DataConfig
    from unetseg.data.build import build_datasets
    from unetseg.data.transforms import TrainTransform  # noqa: F401  (its import is not timed)

    opened = count_opens()
    start = time.perf_counter()
    data = build_datasets(DataConfig(source=folder, classes=CLASSES.split(",")))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "opened": opened[0],
                      "pairs": len(data.train) + len(data.val)}))


def child_train(folder: str, out: str) -> None:
    from unetseg import train
    from unetseg.cli import main

    if not hasattr(train, "train_step"):
        raise SystemExit("unetseg.train has no train_step any more: update this benchmark")
    opened = count_opens()
    step = train.train_step

    def first_step(*args, **kwargs):
        step(*args, **kwargs)
        print(json.dumps({"opened": opened[0]}), flush=True)
        os._exit(0)                                       # no epoch, no teardown: timed here

    train.train_step = first_step
    sys.exit(main(["train", "--data", folder, "--classes", CLASSES, "--size", "64",
                   "--batch-size", "8", "--base", "8", "--epochs", "1", "--precision", "fp32",
                   "--out", out, "--overwrite", "--quiet"]))


# --- the parent -----------------------------------------------------------------------------

def run_child(kind: str, folder: Path, cache: Path, out: Path) -> dict:
    env = {**os.environ, "UNETSEG_CACHE_DIR": str(cache)}
    command = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--out",
               str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": wall, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=128, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "build":
        return child_build(args.folder)
    if args.child == "train":
        return child_train(args.folder, args.out)

    with tempfile.TemporaryDirectory(prefix="folder-startup-") as temporary:
        root = Path(temporary)
        start = time.perf_counter()
        make_folder(root / "data", args.pairs, args.side)
        made = time.perf_counter() - start
        runs: dict[tuple[str, str], list[dict]] = {}
        for repeat in range(args.repeats):
            for kind in CONTENDERS:
                cache = root / f"cache-{kind}-{repeat}"        # empty, then kept
                for state in ("empty cache", "cached"):
                    runs.setdefault((kind, state), []).append(
                        run_child(kind, root / "data", cache, root / "run"))
    rows = []
    for (kind, state), figures in runs.items():
        timing = Timing([figure["seconds"] for figure in figures])
        rows.append([f"{CONTENDERS[kind]}, {state}", f"{timing.median:.2f}", timing.spread(),
                     max(figure["opened"] for figure in figures)])
    print(machine())
    print_table(f"Start-up on {args.pairs} pairs of {args.side} x {args.side} RGB PNG + index "
                f"mask PNG (written in {made:.0f} s), {args.repeats} runs each",
                ["what", "seconds (median)", "min-max", "Pillow opens"], rows)
    write_results(RESULTS / "folder_startup.json", tables=printed())


if __name__ == "__main__":
    main()
