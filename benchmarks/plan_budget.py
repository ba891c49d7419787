"""Does a planned run hold its time budget? `unetseg train --data FOLDER --time-budget B` as a
user runs it, on one thread, for each folder given: the planning seconds, the run's own
seconds (from the first step to the end of the last validation and checkpoint, as its
metrics.jsonl records them) and the whole command's wall time, against the budget.

    .venv/bin/python benchmarks/plan_budget.py --budget 2 ../shared/datasets/weizmann-horse/train

The target (issue 23): the run within 10% of the budget on the 2-core CPU. Results are printed
as a table and written to benchmarks/results/plan_budget.json with the machine, the versions,
the commit and the command.
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

from harness import machine, write_results

RESULTS = Path(__file__).parent / "results" / "plan_budget.json"


def run_one(folder: Path, budget: float) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        command = [sys.executable, "-m", "unetseg", "train", "--data", str(folder),
                   "--time-budget", str(budget), "--out", str(out), "--quiet"]
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
        if finished.returncode != 0:
            raise SystemExit(f"{folder}: unetseg train failed:\n{finished.stderr}")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        run_seconds = sum(row["seconds"] for row in rows)    # each: since the line before
        plan = [line for line in finished.stdout.splitlines() if line.startswith("  --")]
    return {"folder": str(folder), "budget_s": budget * 60, "run_s": round(run_seconds, 1),
            "wall_s": round(wall, 1), "steps": rows[-1]["step"], "validations": len(rows),
            "run_over_budget": round(run_seconds / (budget * 60), 3), "plan": plan}


def report(document: dict) -> str:
    """The table docs/planning.md shows (docs/figures.py renders it from the results file)."""
    lines = ["| data | budget | the run (first step to last checkpoint) | the whole command | "
             "steps |", "| --- | --- | --- | --- | --- |"]
    for row in document["rows"]:
        over = 100 * (row["run_over_budget"] - 1)
        lines.append(f"| {Path(row['folder']).name} | {row['budget_s']:.0f} s | "
                     f"{row['run_s']:.0f} s ({over:+.1f}%) | {row['wall_s']:.0f} s | "
                     f"{row['steps']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--budget", type=float, default=2.0, help="minutes (default: 2)")
    args = parser.parse_args()
    rows = [run_one(folder, args.budget) for folder in args.folders]
    print(f"machine: {machine()}")
    print(report({"rows": rows}))
    write_results(RESULTS, run_threads=1, rows=rows)


if __name__ == "__main__":
    main()
