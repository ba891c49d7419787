"""Planned against classic, as a user runs them: ``unetseg train --data FOLDER --time-budget B``
(planned) and the same with ``--plan none`` (the classic settings), each on one thread, then
``unetseg evaluate best.safetensors --split test``: scored on test/ images that chose nothing
(neither the plan, which reads the training split only, nor the checkpoint, chosen on a part
of train/).

    .venv/bin/python experiments/plan_study.py --budget 15 --seeds 0 1 2 \\
        ../shared/datasets/weizmann-horse ../shared/datasets/drive

Folders must be laid out as train/ and test/. Two runs go at a time (2 cores, one thread
each). Every run keeps its folder under experiments/results/plan_study/ and is skipped when its
evaluation.json exists, so an interrupted study resumes. The table is printed and written, with
the machine, the commit and the command, to docs/results/plan_study.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "results" / "plan_study"
RESULTS = HERE.parent / "docs" / "results" / "plan_study.json"
CONTENDERS = {"planned": [], "classic": ["--plan", "none"]}


def _unetseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetseg", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_one(folder: Path, contender: str, seed: int, budget: float) -> dict:
    run = RUNS / f"{folder.name}-{contender}-b{budget:g}-s{seed}"
    scored = run / "test" / "evaluation.json"
    if not scored.is_file():
        if not (run / "best.safetensors").is_file():
            done = _unetseg("train", "--data", str(folder), "--time-budget", str(budget),
                            "--seed", str(seed), "--data-seed", str(seed), "--quiet",
                            "--overwrite", "--out", str(run), *CONTENDERS[contender])
            if done.returncode != 0:
                raise SystemExit(f"{run}: training failed\n{done.stderr[-2000:]}")
            (run / "train.log").write_text(done.stdout)
        done = _unetseg("evaluate", str(run / "best.safetensors"), "--split", "test",
                        "--out", str(run / "test"), "--quiet", "--overwrite")
        if done.returncode != 0:
            raise SystemExit(f"{run}: evaluation failed\n{done.stderr[-2000:]}")
    evaluation = json.loads(scored.read_text())
    log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
    return {"dataset": folder.name, "contender": contender, "seed": seed, "budget_min": budget,
            "test_images": evaluation["images"], "split": evaluation["split"],
            "miou": evaluation["miou"],
            "iou": {row["class"]: row["iou"] for row in evaluation["classes"]},
            "plan": [line.strip() for line in log.splitlines() if line.startswith("  --")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--budget", type=float, default=15.0, help="minutes (default: 15)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    jobs = [(folder, contender, seed) for folder in args.folders for seed in args.seeds
            for contender in CONTENDERS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(lambda job: run_one(*job, args.budget), jobs))
    print("| dataset | contender | seed | test mIoU | IoU per class |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        ious = ", ".join(f"{name} {value:.3f}" for name, value in row["iou"].items())
        print(f"| {row['dataset']} | {row['contender']} | {row['seed']} | {row['miou']:.4f} | "
              f"{ious} |")
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from harness import machine

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "commit": commit,
                                   "command": " ".join(["python", *sys.argv]), "rows": rows},
                                  indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
