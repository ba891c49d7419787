"""Is ``--precision auto`` ever slower than fp32 here? The check that was a timed test.

`unetseg.precision.decide_precision` times fp32 and bf16 training steps of the run's own
model and keeps the faster (or fp32 where the CPU has no native bf16). This times the chosen
precision again against fp32, alternately (`harness.alternate`), on a base-8 and a base-32
U-Net, and prints the ratio: chosen / fp32 at or below 1 is the choice paying off, a little
above 1 is the noise of a shared machine; well above it would be a wrong choice.

    .venv/bin/python benchmarks/precision_choice.py [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from harness import RESULTS, alternate, machine, print_table, printed, write_results

from unetseg.model import UNetConfig
from unetseg.precision import decide_precision, measure_step

SHAPES = ((UNetConfig(3, 3, base=8), 2, 64), (UNetConfig(3, 3, base=32), 4, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    rows = []
    for config, batch, size in SHAPES:
        choice = decide_precision("auto", torch.device("cpu"), config, batch, size)
        steps = {name: measure_step(config, batch, size, name)
                 for name in dict.fromkeys([choice.precision, "fp32"])}
        timings = alternate(steps, args.repeats)
        chosen, fp32 = timings[choice.precision], timings["fp32"]
        rows.append([f"base {config.base}, batch {batch}, {size} px", choice.precision,
                     chosen.median, fp32.median, chosen.median / fp32.median])
    print_table("--precision auto against fp32 (training step, seconds)",
                ["model and shapes", "chosen", "chosen s", "fp32 s", "chosen / fp32"], rows)
    write_results(RESULTS / "precision_choice.json", tables=printed())


if __name__ == "__main__":
    main()
