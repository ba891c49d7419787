"""The README's demo figures: ``unetseg demo`` run as `make demo` runs it, timed, its printout
kept.

    .venv/bin/python benchmarks/demo_figures.py [--out docs/results/demo.json]

The demo runs in a fresh temporary folder (so its printout names ``runs/demo``, as a user's
first run does), on this machine's threads, with nothing else running: its wall time is the
figure the README quotes. The printout and the times go, with the machine, the commit and the
command, to docs/results/demo.json; `held_out`, `inspector` and `timing` render the README's
blocks from it (docs/figures.py). The first three of the run's overlays (image | truth |
prediction), one above the other, become docs/images/demo-overlays.png, the picture the
README shows beside that printout.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from harness import write_results
from PIL import Image

from unetseg.report.images import stacked

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = "Held-out synthetic images"
INSPECTOR = "Why each class scores as it does"


def run(shown: int = 3) -> tuple[dict, np.ndarray]:
    """The demo's timings and printout, and its first ``shown`` overlays stacked."""
    unetseg = Path(sys.executable).parent / "unetseg"
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        done = subprocess.run([str(unetseg), "demo", "--quiet"], cwd=folder,
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        overlays = Path(folder) / "runs" / "demo" / "overlays"
        sheet = stacked([np.asarray(Image.open(overlays / f"{index}.png").convert("RGB"))
                         for index in range(shown)])
    total = re.search(r"^total (\d+) s$", done.stdout, re.M)
    return {"wall_seconds": round(wall, 1), "demo_seconds": int(total[1]),
            "printout": done.stdout[done.stdout.index(HELD_OUT):total.start()].rstrip()}, sheet


def _part(printout: str, start: str, end: str | None) -> str:
    """The printout's lines from the one beginning ``start`` to before the one beginning
    ``end``."""
    text = printout[printout.index(start):]
    return text[:text.index(end)].rstrip() if end else text


def held_out(document: dict) -> str:
    return "```\n" + _part(document["printout"], HELD_OUT, "overlays") + "\n```"


def inspector(document: dict) -> str:
    return "```\n" + _part(document["printout"], INSPECTOR, None) + "\n```"


def timing(document: dict) -> str:
    return textwrap.fill(
        f"Measured on {document['machine']}, with `.venv` already built, at commit "
        f"{document['commit']}: the demo took {document['wall_seconds']:.0f} s wall, "
        f"{document['demo_seconds']} s of it training, scoring and the report "
        f"(`.venv/bin/python benchmarks/demo_figures.py` measures it again).", width=95,
        break_on_hyphens=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "demo.json")
    parser.add_argument("--overlays", type=Path,
                        default=ROOT / "docs" / "images" / "demo-overlays.png")
    args = parser.parse_args()
    measured, sheet = run()
    print(measured["printout"])
    print(f"wall {measured['wall_seconds']} s")
    write_results(args.out, **measured)
    Image.fromarray(sheet).save(args.overlays)
    print(f"wrote {args.overlays}")


if __name__ == "__main__":
    main()
