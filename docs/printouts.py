"""The docs' example printouts, run again: each command as a user types it, from the
repository's root, its output kept.

    .venv/bin/python docs/printouts.py [NAME ...]

writes docs/results/printouts.json (with the machine, the commit and the command), from which
docs/figures.py renders each page's block: ``<!-- figures: docs/results/printouts.json
docs/printouts.py:check_isbi -->``. Naming printouts runs only those and keeps the others.
Data a printout reads lives in ../shared/datasets, or is a run a study trains; where it is
missing, that printout is skipped, saying so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "printouts.json"
SHARED = Path("..") / "shared" / "datasets"

CAMVID_RUN = Path("experiments") / "results" / "plan_study" / "camvid-planned-b15-s0"

# name: (the command after `unetseg`, the data it needs, the exit status it ends with)
COMMANDS = {
    "check_isbi": (["check", "isbi", "--root", str(SHARED / "isbi2012-membrane")],
                   SHARED / "isbi2012-membrane", 0),
    # The planning study's 15-minute CamVid run (experiments/plan_study.py trains it), on the
    # images that chose nothing there.
    "inspect_camvid": (["inspect", f"{CAMVID_RUN}/best.safetensors", "--split", "test",
                        "--out", f"{CAMVID_RUN}/inspection", "--overwrite"], CAMVID_RUN, 0),
    # A run that cannot fit is refused before any data is read: the estimate, then the fix.
    "refused_run": (["train", "--data", "synthetic", "--depth", "9", "--base", "64",
                     "--out", "/nonexistent/refused"], None, 2),
    # The health monitor on a tiny run at an lr a thousand times too high.
    "health_lr10": (["train", "--data", "synthetic", "--size", "32", "--base", "8",
                     "--train-samples", "96", "--val-samples", "24", "--epochs", "4",
                     "--lr", "10", "--precision", "fp32", "--out", "runs/health-lr10",
                     "--overwrite", "--quiet"], None, 0),
}


def run(name: str) -> dict:
    arguments, needs, status = COMMANDS[name]
    done = subprocess.run([str(Path(sys.executable).parent / "unetseg"), *arguments],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != status:
        raise SystemExit(f"{name}: exit status {done.returncode}, expected {status}\n"
                         f"{done.stderr[-2000:]}")
    # The report is on standard output; progress lines, and a refusal, on standard error.
    return {"command": "unetseg " + " ".join(arguments),
            "output": (done.stdout if done.stdout.strip() else done.stderr).rstrip()}


def _shown(name: str):
    def render(document: dict) -> str:
        shown = document["printouts"][name]
        return f"```\n$ {shown['command']}\n{shown['output']}\n```"
    render.__name__ = name
    return render


check_isbi = _shown("check_isbi")
inspect_camvid = _shown("inspect_camvid")
refused_run = _shown("refused_run")
health_lr10 = _shown("health_lr10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {', '.join(COMMANDS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.names) - set(COMMANDS)
    if unknown:
        parser.error(f"no printout {', '.join(sorted(unknown))}; there are {', '.join(COMMANDS)}")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from harness import write_results

    kept = json.loads(RESULTS.read_text())["printouts"] if RESULTS.is_file() else {}
    for name in args.names or COMMANDS:
        needs = COMMANDS[name][1]
        if needs is not None and not (ROOT / needs).is_dir():
            print(f"{name}: skipped, {needs} is missing")
            continue
        kept[name] = run(name)
        print(f"{name}:\n{kept[name]['output']}\n")
    write_results(RESULTS, printouts=kept)


if __name__ == "__main__":
    main()
