"""Import and start-up: ``unetseg --help``, ``import unetseg``, and the time to the first
training step of ``unetseg train --data camvid``.

1. Commands in child processes, in turns after a warm-up of each: ``python -c pass`` (the
   interpreter alone), ``import unetseg``, ``unetseg --help``, ``unetseg train --help`` (whose
   flags come from the configuration, so it imports torch) and ``import torch`` for scale.
   Target: ``unetseg --help`` and ``import unetseg`` under 1 s. Then ``python -X importtime``
   of both help commands: the top-level imports that cost most.
2. ``unetseg train --data camvid --root ROOT --plan none`` (the classic settings: a plan's
   differ from one machine to the next), in a child process, until the first
   ``unetseg.train.train_step`` returns (the child exits there), with ``$UNETSEG_CACHE_DIR``
   empty (a first run: every mask decoded, fp32 and bf16 timed where the CPU has native bf16)
   and then kept (the next run). Phases come from wrapping the functions `fit` calls:
   interpreter and imports, data construction, precision choice, model, the rest of the
   set-up, the first batch and the first step. Skipped, saying why, without CamVid.

    .venv/bin/python benchmarks/startup.py [--quick] [--repeats 5] [--train-repeats 2]
        [--root ../shared/datasets/camvid]
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

from harness import RESULTS, Timing, alternate, machine, print_table, printed, write_results

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"
BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import unetseg'": [sys.executable, "-c", "import unetseg"],
    "unetseg --help": [str(BIN / "unetseg"), "--help"],
    "unetseg train --help": [str(BIN / "unetseg"), "train", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}
PHASES = ("interpreter and imports", "command line and config", "data construction",
          "precision choice", "model", "rest of the set-up", "first batch", "first step")


def run_quietly(command: list[str], env: dict | None = None) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)


def command_table(repeats: int) -> None:
    times = alternate({name: (lambda c=c: run_quietly(c)) for name, c in COMMANDS.items()},
                      repeats=repeats, warmup=1)
    rows = [[name, f"{t.median:.3f}", t.spread(), "yes" if t.median < 1 else "no"]
            for name, t in times.items()]
    print_table(f"start-up, child processes, {repeats} runs each (target < 1 s)",
                ["command", "seconds (median)", "min-max", "< 1 s"], rows)
    for name in ("unetseg --help", "unetseg train --help"):
        print(f"{name}: top-level imports by cumulative time (python -X importtime)")
        for module, seconds in top_imports(COMMANDS[name]):
            print(f"  {seconds:6.3f} s  {module}")
        print()


def top_imports(command: list[str], count: int = 6) -> list[tuple[str, float]]:
    """The top-level imports of a command with the most cumulative import time."""
    if command[0] != sys.executable:               # the console script: run its module
        command = [sys.executable, "-m", "unetseg", *command[1:]]
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]],
                          capture_output=True, text=True, check=True)
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        indent = len(line.rsplit("|", 1)[1]) - len(line.rsplit("|", 1)[1].lstrip())
        if indent <= 1:                             # imported by the program itself
            found.append((name, int(cumulative) / 1e6))
    return sorted(found, key=lambda item: -item[1])[:count]


# --- time to the first training step ---------------------------------------------------------

def child_train(root: str, out: str) -> None:
    """``unetseg train --data camvid`` until the first step returns; prints the timestamps."""
    stamps: dict[str, float | str] = {}
    from unetseg import train
    from unetseg.cli import main

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:                       # renamed: that phase is left out
            return

        def wrapper(*args, **kwargs):
            stamps[label + " start"] = time.time()
            result = original(*args, **kwargs)
            stamps[label + " end"] = time.time()
            return result

        setattr(owner, name, wrapper)

    if not hasattr(train, "train_step"):
        raise SystemExit("unetseg.train has no train_step any more: update this benchmark")
    timed(train, "build_datasets", "data")
    timed(train, "decide_precision", "precision")
    timed(train, "build_model", "model")
    timed(train, "progress", "run")                # the loop's first epoch starts
    step = train.train_step

    def first_step(*args, **kwargs):
        stamps["step start"] = time.time()
        step(*args, **kwargs)
        stamps["step end"] = time.time()
        stamps["precision"] = args[0].runtime.precision     # the Accelerated model's
        print(json.dumps(stamps), flush=True)
        os._exit(0)                                # no epoch, no teardown: timed to here

    train.train_step = first_step
    stamps["main"] = time.time()                   # torch and unetseg.train are imported
    sys.exit(main(["train", "--data", "camvid", "--root", root, "--plan", "none", "--out", out,
                   "--overwrite", "--quiet"]))


def first_step(root: Path, cache: Path, out: Path) -> dict[str, float | str]:
    env = {**os.environ, "UNETSEG_CACHE_DIR": str(cache)}
    spawned = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", "--root", str(root), "--out",
                           str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"unetseg train failed:\n{done.stderr[-3000:]}")
    s = json.loads(done.stdout.strip().splitlines()[-1])
    span = {label: s.get(label + " end", 0) - s.get(label + " start", 0)
            for label in ("data", "precision", "model", "step")}
    phases = {"interpreter and imports": s["main"] - spawned,
              "command line and config": s.get("data start", s["main"]) - s["main"],
              "data construction": span["data"], "precision choice": span["precision"],
              "model": span["model"],
              "first batch": s["step start"] - s.get("run start", s["step start"]),
              "first step": span["step"]}
    total = s["step end"] - spawned
    phases["rest of the set-up"] = total - sum(phases.values())
    return {**phases, "total": total, "precision": s["precision"]}


def train_table(root: Path, repeats: int) -> None:
    runs: dict[str, list[dict]] = {"empty cache": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="startup-") as temporary:
        for repeat in range(repeats):
            cache = Path(temporary) / f"cache-{repeat}"           # empty, then kept
            for state in runs:
                runs[state].append(first_step(root, cache, Path(temporary) / "run"))
    header = ["phase"] + [f"{state}: s (median)" for state in runs] + \
             [f"{state}: min-max" for state in runs]
    rows = []
    for phase in (*PHASES, "total"):
        timings = [Timing([run[phase] for run in runs[state]]) for state in runs]
        rows.append([phase, *(f"{t.median:.2f}" for t in timings),
                     *(t.spread() for t in timings)])
    precision = runs["cached"][0]["precision"]
    print_table(f"unetseg train --data camvid --plan none (classic: 64 px crops, batch 16, "
                f"base-32 U-Net, precision auto -> {precision}, workers 0) until the first "
                f"step returns, {repeats} runs each", header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per command")
    parser.add_argument("--train-repeats", type=int, default=2,
                        help="first-step runs per cache state")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_train(str(args.root), args.out)
    if args.quick:
        args.repeats, args.train_repeats = 1, 1
    print(machine())
    command_table(args.repeats)
    if (args.root / "train").is_dir():
        train_table(args.root, args.train_repeats)
    else:
        print(f"first-step table skipped: no CamVid at {args.root} (pass --root)")
    if not args.quick:
        write_results(RESULTS / "startup.json", tables=printed())


if __name__ == "__main__":
    main()
