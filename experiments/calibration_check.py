"""Does temperature scaling make the probabilities more honest on images that chose nothing?

For each model, as a user would: ``unetseg calibrate`` fits the temperature on the run's
validation split (applied only where it carries over between halves of those images), then
``unetseg evaluate --split test`` measures the expected calibration error (ECE, 15 bins) on the
held-out test images, before and after scaling. The models:

- the demo (``unetseg demo``, trained here: synthetic shapes, scored on a fresh draw);
- the planning study's planned 15-minute run of each dataset (seed 0), copied first, so the
  study's own files are never changed.

    .venv/bin/python experiments/calibration_check.py [--datasets isbi weizmann-horse ...]

Each model's folder is experiments/results/calibration/NAME; a model already scored is
skipped. The rows go to docs/results/calibration.json (machine, commit, command), whose table
docs/training.md renders (`table`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from plan_study import RUNS as STUDY_RUNS
from plan_study import _run
from reporting import harness

from unetseg.checkpoint import read_metadata

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "calibration"
RESULTS = HERE.parent / "docs" / "results" / "calibration.json"
DATASETS = ("isbi", "weizmann-horse", "drive", "camvid")


def _unetseg(*arguments: str) -> None:
    done = _run("-m", "unetseg", *arguments)
    if done.returncode != 0:
        raise RuntimeError(f"unetseg {arguments[0]} failed\n{done.stderr[-2000:]}")


def measure(name: str, checkpoint: Path, folder: Path) -> dict:
    """Calibrate ``checkpoint`` (a copy in ``folder``) and score it on its test split."""
    scored = folder / "test" / "evaluation.json"
    if not scored.is_file():
        copy = folder / "model.safetensors"
        if copy.resolve() != checkpoint.resolve():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, copy)
        _unetseg("calibrate", str(copy))
        _unetseg("evaluate", str(copy), "--split", "test", "--out", str(folder / "test"),
                 "--quiet", "--overwrite", "--no-inspect")
    evaluation = json.loads(scored.read_text())
    calibration = evaluation["calibration"]
    fit = read_metadata(folder / "model.safetensors")["calibration"]
    return {"model": name, "split": evaluation["split"], "test_images": evaluation["images"],
            "temperature": calibration["temperature"],
            "fitted_temperature": fit["fitted_temperature"],
            "crossed_ece": [fit["crossed_ece_before"], fit["crossed_ece_after"]],
            "ece_before": calibration["before"]["ece"], "ece_after": calibration["after"]["ece"],
            "class_ece_before": calibration["before"]["class_ece"],
            "class_ece_after": calibration["after"]["class_ece"],
            "miou": evaluation["miou"]}


def table(document: dict) -> str:
    """ECE on the test images before and after temperature scaling, per model."""
    lines = ["| model | test images | fitted T | applied T | ECE before | ECE after | "
             "after ≤ before |", "| --- |" + " --- |" * 6]
    for row in document["rows"]:
        not_raised = "yes" if row["ece_after"] <= row["ece_before"] else "no"
        lines.append(f"| {row['model']} | {row['test_images']} | "
                     f"{row['fitted_temperature']:.3f} | {row['temperature']:.3f} | "
                     f"{row['ece_before']:.4f} | {row['ece_after']:.4f} | {not_raised} |")
    return "\n".join(lines) + f"\n\n(On {document['machine']}; at commit {document['commit']}.)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS),
                        help="the planning study's runs to calibrate (default: all four)")
    parser.add_argument("--no-demo", dest="demo", action="store_false",
                        help="leave the demo out (it trains for a few minutes)")
    args = parser.parse_args(argv)
    rows = []
    if args.demo:
        demo = OUT / "demo"
        if not (demo / "best.safetensors").is_file():
            _unetseg("demo", "--out", str(demo), "--quiet")
        rows.append(measure("demo (synthetic shapes)", demo / "best.safetensors", demo))
    for dataset in args.datasets:
        run = STUDY_RUNS / f"{dataset}-planned-b15-s0"
        if not (run / "best.safetensors").is_file():
            print(f"{dataset}: skipped, {run} has no best.safetensors (plan_study.py trains it)")
            continue
        rows.append(measure(f"{dataset}, planned 15 min", run / "best.safetensors",
                            OUT / dataset))
        print(f"{dataset}: ECE {rows[-1]['ece_before']:.4f} -> {rows[-1]['ece_after']:.4f}",
              flush=True)
    harness().write_results(RESULTS, rows=rows)
    print(table(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
