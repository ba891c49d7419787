"""Time the mask inspector on CamVid's 101 validation masks (480 x 360, 11 classes).

The predictions are the true masks shifted by (3, 5) pixels with one block of classes swapped
per image, so every class has boundary, extent and segment errors to analyse. Prints the
seconds of ``--repeats`` whole inspections (median and range; the table goes to
benchmarks/results/inspector_speed.json) and, with ``--json FILE``, writes report.json's
numbers so that two versions of the inspector can be compared byte for byte.

    .venv/bin/python benchmarks/inspector_speed.py [--root ../shared/datasets/camvid]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from harness import RESULTS, Timing, machine, print_table, printed, write_results
from PIL import Image

from unetseg.data.presets import CAMVID
from unetseg.files import json_ready
from unetseg.inspector import Inspector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared"
                                              / "datasets" / "camvid"))
    parser.add_argument("--json", help="also write the inspection's numbers here")
    parser.add_argument("--repeats", type=int, default=3, help="whole inspections timed")
    args = parser.parse_args()
    folder = Path(args.root) / "valannot"
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no CamVid validation masks; pass --root")
    names = sorted(path.name for path in folder.iterdir())
    truths = [np.asarray(Image.open(folder / name)).astype(np.int64) for name in names]
    truths = [np.where(t == 11, 255, t) for t in truths]          # 11 is void
    rng = np.random.default_rng(0)
    preds = []
    for truth in truths:
        pred = np.roll(truth, (3, 5), axis=(0, 1))
        pred[pred == 255] = 3
        swap = rng.integers(0, 11, size=11)
        top, left = rng.integers(0, 300), rng.integers(0, 400)
        block = pred[top:top + 60, left:left + 80]
        pred[top:top + 60, left:left + 80] = swap[block % 11]
        preds.append(pred)
    print(machine())
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        inspector = Inspector(CAMVID.class_names, 255)
        for pred, truth, name in zip(preds, truths, names):
            inspector.add(pred, truth, name)
        result = inspector.result()
        seconds.append(time.perf_counter() - start)
    timing = Timing(seconds)
    print_table(f"The mask inspector on {len(names)} CamVid validation masks (480 x 360, "
                f"11 classes), {args.repeats} runs",
                ["what", "seconds (median)", "min-max", "ms per image"],
                [["Inspector.add for each, then result()", timing.median, timing.spread(),
                  1000 * timing.median / len(names)]])
    write_results(RESULTS / "inspector_speed.json", tables=printed())
    if args.json:
        Path(args.json).write_text(json.dumps(json_ready(result.to_dict()), indent=1,
                                              sort_keys=True))


if __name__ == "__main__":
    main()
