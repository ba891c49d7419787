"""Metric speed: `ConfusionMatrix` against torchmetrics, and boundary F1 / the inspector per image.

1. ``ConfusionMatrix.update`` + ``compute`` on a (16, 512, 512) batch of 21 classes (int64
   predicted labels; int64 targets with 5% of pixels 255, ignored) against torchmetrics'
   ``MulticlassJaccardIndex`` as it comes (``validate_args=True``) and with
   ``validate_args=False``. Ours validates every batch (an out-of-range label is refused);
   torchmetrics without validation counts whatever it is given. A uint8 target (how masks often
   arrive) is timed as well. The mIoUs must agree.
2. Per 480 x 360 CamVid validation mask (11 classes, void ignored): `boundary_f1`,
   `Inspector.add` (with its ``result`` once per pass), and MONAI's ``compute_surface_dice``,
   the nearest thing MONAI has to the BF score: the normalised surface Dice pools the
   boundary pixels within the tolerance of the other boundary, where BF is the harmonic mean
   of the two directions, so their values differ. Same tolerance (0.75% of the diagonal)
   for both; predictions are the true masks shifted by (3, 5) px with one block of classes
   swapped, as in ``inspector_speed.py``. Skipped, saying why, without CamVid.

Contenders take turns after a warm-up; tables give medians, min-max and ratios from one run.

    .venv/bin/python benchmarks/metrics_speed.py [--quick] [--repeats 7] [--images 16]
        [--root ../shared/datasets/camvid]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from harness import RESULTS, alternate, machine, print_table, printed, write_results
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from unetseg.inspector import Inspector
from unetseg.metrics import ConfusionMatrix, boundary_f1, default_tolerance

CAMVID_CLASSES = 11
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"


def confusion_table(shape: tuple[int, int, int], num_classes: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, num_classes, shape, generator=g)
    noise = torch.randint(0, num_classes, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, noise)
    target = torch.where(torch.rand(shape, generator=g) < 0.05, 255, target)
    target_u8 = target.to(torch.uint8)
    ours = ConfusionMatrix(num_classes, ignore_index=255)
    checked = MulticlassJaccardIndex(num_classes, ignore_index=255)
    unchecked = MulticlassJaccardIndex(num_classes, ignore_index=255, validate_args=False)

    def run(metric, t):
        def call():
            metric.update(pred, t)
            value = metric.compute()
            metric.reset()
            return value
        return call

    contenders = {
        "unetseg ConfusionMatrix": run(ours, target),
        "unetseg ConfusionMatrix, uint8 target": run(ours, target_u8),
        "torchmetrics validate_args=False": run(unchecked, target),
        "torchmetrics default": run(checked, target),
    }
    miou = {name: call() for name, call in contenders.items()}
    ours_miou, theirs = miou["unetseg ConfusionMatrix"].miou, float(miou["torchmetrics default"])
    assert abs(ours_miou - theirs) < 1e-6, (ours_miou, theirs)
    assert abs(miou["unetseg ConfusionMatrix, uint8 target"].miou - ours_miou) < 1e-12
    times = alternate(contenders, repeats=repeats, warmup=1)
    reference = times["torchmetrics validate_args=False"].median
    rows = [[name, f"{t.median * 1e3:.1f}", t.spread(3), f"{t.median / reference:.2f}",
             "yes" if "torchmetrics validate" not in name else "no"]
            for name, t in times.items()]
    print_table(f"update + compute, {shape} labels, {num_classes} classes, ignore_index 255 "
                f"(5% of pixels), {repeats} runs each; mIoU {ours_miou:.6f} in both",
                ["contender", "ms (median)", "min-max s", "time / torchmetrics unchecked",
                 "validates"], rows)


def camvid_pairs(root: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    folder = root / "valannot"
    if not folder.is_dir():
        print(f"\nper-image table skipped: no CamVid validation masks in {folder} (pass --root)")
        return None
    rng = np.random.default_rng(0)
    pairs = []
    for path in sorted(folder.iterdir())[:count]:
        truth = np.asarray(Image.open(path)).astype(np.int64)
        truth = np.where(truth == CAMVID_CLASSES, 255, truth)             # 11 is void
        pred = np.roll(truth, (3, 5), axis=(0, 1))
        pred[pred == 255] = 3
        swap = rng.integers(0, CAMVID_CLASSES, size=CAMVID_CLASSES)
        top, left = rng.integers(0, 300), rng.integers(0, 400)
        block = pred[top:top + 60, left:left + 80]
        pred[top:top + 60, left:left + 80] = swap[block % CAMVID_CLASSES]
        pairs.append((pred, truth))
    return pairs


def one_hot(labels: np.ndarray) -> torch.Tensor:
    """(1, C, H, W) one-hot of class indices; ignored pixels (255) are in no class."""
    tensor = torch.from_numpy(labels)
    return torch.stack([tensor == c for c in range(CAMVID_CLASSES)])[None]


def per_image_table(pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> None:
    from monai.metrics import compute_surface_dice

    # MONAI 1.5+ warns on every call about an argument it passes itself.
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")

    from unetseg.data.presets import CAMVID

    height, width = pairs[0][1].shape
    tolerance = default_tolerance(height, width)
    scores: dict[str, list[np.ndarray]] = {}

    def ours():
        scores["bf1"] = [boundary_f1(p, t, CAMVID_CLASSES) for p, t in pairs]

    def inspector():
        inspect = Inspector(CAMVID.class_names, 255)
        for index, (p, t) in enumerate(pairs):
            inspect.add(p, t, str(index))
        inspect.result()

    def monai():
        # The one-hot conversion is part of the cost a MONAI user pays.
        scores["nsd"] = [compute_surface_dice(one_hot(p), one_hot(t),
                                              [tolerance] * CAMVID_CLASSES,
                                              include_background=True)[0].numpy()
                         for p, t in pairs]

    contenders = {"unetseg boundary_f1": ours, "unetseg Inspector.add": inspector,
                  "MONAI compute_surface_dice": monai}
    times = alternate(contenders, repeats=repeats, warmup=1)
    reference = times["MONAI compute_surface_dice"].median
    with np.errstate(all="ignore"):
        bf1 = np.nanmean(np.nanmean(np.stack(scores["bf1"]), 0))
        nsd = np.nanmean(np.nanmean(np.stack(scores["nsd"]), 0))
    n = len(pairs)
    rows = [[name, f"{t.median / n * 1e3:.1f}", f"{min(t.values) / n * 1e3:.3g}-"
             f"{max(t.values) / n * 1e3:.3g}", f"{t.median / reference:.2f}"]
            for name, t in times.items()]
    print_table(f"per image, {n} CamVid validation masks {width} x {height}, 11 classes, "
                f"tolerance {tolerance:.2f} px, {repeats} runs each (mean over classes: "
                f"BF {bf1:.3f}, MONAI NSD {nsd:.3f})",
                ["contender", "ms per image (median)", "min-max", "time / MONAI's"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--images", type=int, default=16, help="CamVid masks per pass")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    shape = (16, 512, 512)
    if args.quick:
        shape, args.repeats, args.images = (4, 256, 256), 2, 2
    print(machine())
    start = time.perf_counter()
    confusion_table(shape, 21, args.repeats)
    pairs = camvid_pairs(args.root, args.images)
    if pairs:
        per_image_table(pairs, max(3, args.repeats // 2))
    print(f"({time.perf_counter() - start:.0f} s)")
    if not args.quick:
        write_results(RESULTS / "metrics_speed.json", tables=printed())


if __name__ == "__main__":
    main()
