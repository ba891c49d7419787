"""Wall time to a validation IoU, against the seed, MONAI and smp, on the same data and loss.

Two races: IoU >= 0.90 on both shape classes (circle, square) of the built-in synthetic data at
``unetseg train``'s data defaults (64 x 64, batch 16, 2000 training and 200 validation images),
and membrane IoU >= 0.65 on ISBI-2012 (``../shared/datasets/isbi2012-membrane``, skipped with
the reason when absent) with the README's recipe (256 x 256 crops, batch 4, its augmentation).
Every contender (`contenders.py`) reads the same batches in the same order from the same
datasets and minimises the same CE + Dice:

- ours: `unetseg.train.train_step` with every default of ``unetseg train`` (base 32,
  AdamW at lr 3e-3 with warm-up and cosine decay over the default epochs, 30 for ISBI as in
  the README, fused, clipped, channels_last, measured precision, tuned malloc);
- the seed's U-Net, MONAI ``BasicUNet`` and ``UNet`` and smp ``Unet(resnet34)``, each (a) as
  its own docs train it (`contenders.py`: the seed's fp32 loop; MONAI and smp under bf16 AMP;
  NCHW, default allocator, AdamW with torch's defaults, ``loss.item()`` every step) and (b)
  through unetseg's fast path (`unetseg.optimize_for_training`, a fused AdamW).

The clock counts training only (loading and augmenting batches, the steps), not the
validations: each contender is validated on the whole validation set (one confusion matrix,
`unetseg.metrics`) after every few seconds of its training, and stops at the threshold, at the
cap, or once it has trained for twice our time to the threshold plus one interval (our target,
at most half the time, is decided by then). The contenders run in child processes of their
own, taking turns between validations, so a slow minute slows all alike. Times are resolved
to one validation interval.

Then the precision guard: our default run trained for a fixed number of steps (2 epochs of
the 2000 synthetic training images, the default schedule compressed into them) in fp32 and in
bf16, same seed and batches; the validation mIoU of bf16 must stay within 0.5 points of fp32.

The defaults take about 8 minutes on a 2-core CPU (caps of 45 s and 30 s of training per
contender, then the guard's two 250-step runs); ``--full`` (150 s and 240 s) about 20.

``--bases 32,16`` adds our U-Net at other widths (the ratios stay those of the first).

    .venv/bin/python benchmarks/time_to_accuracy.py [--quick | --full] [--skip isbi,guard]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from contenders import (
    ROOT,
    Contender,
    FastTraining,
    WorkerFailed,
    epoch_batches,
    network,
    our_trainer,
    own_step,
    serve,
    set_up_process,
    standard,
    start_workers,
    validate,
    worker_spec,
)
from harness import RESULTS, machine, print_table, printed, write_results

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets

SCRIPT = Path(__file__).resolve()
ISBI_ROOT = ROOT.parent / "shared" / "datasets" / "isbi2012-membrane"
TARGET_SHARE = 0.5              # ours at most half of MONAI's and smp's time
GUARD_POINTS = 0.5              # bf16 within 0.5 mIoU points of fp32


@dataclass
class Race:
    """A dataset, the classes whose IoU must reach ``threshold``, and the time limits."""

    name: str
    data: dict                          # DataConfig fields
    classes: tuple[int, ...]
    threshold: float
    cap: float                          # seconds of training per contender
    every: float                        # seconds of training between validations
    epochs: int = 20                    # our schedule's length (unetseg train's default)
    val_batch: int = 16                 # validation images per forward pass
    class_names: tuple[str, ...] = field(default=())

    def reached(self, iou: list[float]) -> bool:
        return all(iou[c] >= self.threshold for c in self.classes)

    def score(self, iou: list[float]) -> float:
        """The lowest IoU of the classes that must reach the threshold (NaN counts as 0)."""
        return min(0.0 if math.isnan(iou[c]) else iou[c] for c in self.classes)


# --- in the workers ---------------------------------------------------------------------------

class TrainingRun:
    """One contender training on a race's data, on its own clock (see the module docstring)."""

    def __init__(self, spec: dict) -> None:
        contender: Contender = spec["contender"]
        set_up_process(contender, spec["threads"])
        config = DataConfig(**spec["data"])
        torch.manual_seed(0)
        if contender.kind == "ours":
            trainer = our_trainer(contender, config, epochs=spec["epochs"])
            self.data, self.model, self.step = trainer.data, trainer.model, trainer.step
            self.precision = trainer.precision.precision
        else:
            self.data = build_datasets(config)
            model = network(contender, self.data.in_channels, self.data.spec.num_classes)
            if contender.path == "fast":        # (b): through unetseg's fast path
                fast = FastTraining(model, config.batch_size, config.size)
                self.model, self.step = fast.model, fast.step
                self.precision = f"{fast.precision}, channels_last"
            else:                               # (a): as its own docs train it
                optimizer = torch.optim.AdamW(model.parameters())
                step = own_step(contender)
                self.model, self.precision = model.train(), contender.practice
                self.step = lambda images, masks: step(model, optimizer, images, masks)
        self.batch_size = config.batch_size
        self.val_batch = spec["val_batch"]
        self.batches = self._batches()
        self.clock, self.steps = 0.0, 0

    def _batches(self):
        epoch = 0
        while True:
            yield from epoch_batches(self.data.train, self.batch_size, epoch)
            epoch += 1

    def ready(self) -> dict:
        return {"precision": self.precision, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "steps_per_epoch":
                len(self.data.train) // self.batch_size or 1}

    def train(self, seconds: float | None = None, steps: int | None = None) -> dict:
        """Train for ``seconds`` more of the clock (whole steps) or ``steps`` more steps, then
        validate: the clock, the steps so far and the per-class validation IoU."""
        end_clock = self.clock + (math.inf if seconds is None else seconds)
        end_steps = self.steps + (math.inf if steps is None else steps)
        while self.clock < end_clock and self.steps < end_steps:
            start = time.perf_counter()
            images, masks = next(self.batches)
            self.step(images, masks)
            self.clock += time.perf_counter() - start
            self.steps += 1
        spec = self.data.spec
        scores = validate(self.model, self.data.val, spec.num_classes, spec.ignore_index,
                          self.val_batch)
        return {"seconds": self.clock, "steps": self.steps, "iou": scores.iou.tolist(),
                "miou": scores.miou}


# --- in the parent ----------------------------------------------------------------------------

def run_race(race: Race, contenders: list[Contender], threads: int) -> dict:
    """Every contender trained in turns until it reaches the threshold or its limit; the
    first contender is the reference (ours, at the defaults)."""
    reference = contenders[0].name
    skipped: dict[str, str] = {}
    workers = start_workers(SCRIPT, contenders, skipped, role="race", data=race.data,
                            epochs=race.epochs, threads=threads, val_batch=race.val_batch)
    history: dict[str, list[dict]] = {name: [] for name in workers}
    active, limit = dict(workers), race.cap
    while active:
        for name, worker in list(active.items()):
            done = history[name][-1]["seconds"] if history[name] else 0.0
            try:
                reply = worker.ask("train", seconds=min(race.every, limit - done))
            except WorkerFailed as error:
                skipped[name] = str(error)
                del active[name]
                continue
            history[name].append(reply)
            if name == reference and race.reached(reply["iou"]):
                # Whoever has not reached it by twice our time has lost the comparison.
                limit = min(race.cap, 2 * reply["seconds"] + race.every)
            if race.reached(reply["iou"]) or reply["seconds"] >= limit:
                worker.close()
                del active[name]
    return {"history": history, "skipped": skipped,
            "ready": {name: worker.ready for name, worker in workers.items()}}


def outcome(race: Race, history: list[dict]) -> dict:
    """When the threshold was first reached (or not), and the best score seen."""
    for reply in history:
        if race.reached(reply["iou"]):
            return {"seconds": reply["seconds"], "steps": reply["steps"], "reached": True,
                    "score": race.score(reply["iou"])}
    best = max(history, key=lambda reply: race.score(reply["iou"]))
    return {"seconds": history[-1]["seconds"], "steps": history[-1]["steps"],
            "reached": False, "score": race.score(best["iou"]), "best_at": best["seconds"]}


def report_race(race: Race, result: dict, names: list[str]) -> dict[str, tuple[float, bool]]:
    """The race's table; returns the reference's (``names[0]``) time over each other
    contender's, and whether that is only an upper bound (the other did not reach the
    threshold within its limit)."""
    outcomes = {name: outcome(race, history) for name, history in result["history"].items()
                if history}
    ours = outcomes.get(names[0])
    rows, shares = [], {}
    for name in names:
        if name not in outcomes:
            reason = result["skipped"].get(name, "no result").splitlines()[0][:90]
            rows.append([name, "", f"not run: {reason}", "", "", "", ""])
            continue
        found = outcomes[name]
        per_step = found["seconds"] / max(found["steps"], 1)
        if found["reached"]:
            when = f"{found['seconds']:.1f} s"
        else:
            when = (f"not reached: best {found['score']:.3f} after {found['best_at']:.0f} s "
                    f"(cap {race.cap:.0f} s)")
        ratio = ""
        if ours and ours["reached"] and name != names[0]:
            share = ours["seconds"] / found["seconds"]
            shares[name] = (share, not found["reached"])
            ratio = f"{share:.2f}" if found["reached"] else f"< {share:.2f}"
        rows.append([name, result["ready"][name]["precision"], when, found["steps"], per_step,
                     found["score"], ratio])
    classes = " and ".join(race.class_names[c] for c in race.classes)
    print_table(f"Time to IoU >= {race.threshold} on {classes}, {race.name} (training seconds; "
                f"validated every {race.every:.0f} s)",
                ["contender", "precision", "time to threshold", "steps", "s/step",
                 "score (lowest IoU)", "ours / theirs"], rows)
    return shares


def precision_guard(args) -> None:
    """Our default synthetic run for a fixed number of epochs in fp32 and in bf16."""
    contenders = [Contender(f"ours {p}", "ours", precision=p) for p in ("fp32", "bf16")]
    skipped: dict[str, str] = {}
    workers = start_workers(SCRIPT, contenders, skipped, role="race", data=args.guard_data,
                            epochs=args.guard_epochs, threads=args.threads, val_batch=16)
    if len(workers) < 2:
        print(f"precision guard not run: {skipped}")
        return
    total = args.guard_epochs * next(iter(workers.values())).ready["steps_per_epoch"]
    data = args.guard_data
    replies: dict[str, dict] = {}
    done = 0
    while done < total:                      # in turns, so both see the same machine
        chunk = min(args.guard_chunk, total - done)
        for name, worker in workers.items():
            replies[name] = worker.ask("train", steps=chunk)
        done += chunk
    for worker in workers.values():
        worker.close()
    fp32, bf16 = replies["ours fp32"], replies["ours bf16"]
    points = 100 * (bf16["miou"] - fp32["miou"])
    rows = [[name, reply["steps"], reply["seconds"], reply["miou"],
             " / ".join(f"{value:.4f}" for value in reply["iou"])]
            for name, reply in replies.items()]
    print_table(f"Precision guard: ours b32, synthetic data ({data['train_samples']} "
                f"training images), {args.guard_epochs} epochs ({total} steps, the default "
                f"schedule over them), same seed",
                ["run", "steps", "training s", "val mIoU", "IoU per class"], rows)
    verdict = "met" if abs(points) <= GUARD_POINTS else "missed"
    print(f"bf16 - fp32 validation mIoU: {points:+.2f} points (target within "
          f"{GUARD_POINTS} points: {verdict}); bf16 trained {fp32['seconds'] / bf16['seconds']:.2f}"
          f"x as fast.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="longer caps, for the documentation")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of every path: tiny data, seconds-long caps")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip", default="", help="comma-separated: synthetic, isbi, guard")
    parser.add_argument("--bases", default="32", help="our U-Net's bases; the first is the "
                        "reference of the ratios (32: unetseg train's default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # (cap, validation interval) in seconds of training, per race
    synthetic_clock, isbi_clock = ((150, 10), (240, 20)) if args.full else ((45, 5), (30, 10))
    synthetic = {"source": "synthetic"}
    isbi = {"source": "isbi", "root": str(ISBI_ROOT), "size": 256, "batch_size": 4}
    # Shorter runs end before the model settles, and two runs then differ by several points
    # whatever the precision (1000 images, 124 steps: 7.8 points apart).
    args.guard_data = {"source": "synthetic", "train_samples": 2000}
    args.guard_epochs, args.guard_chunk = 2, 25
    if args.quick:
        synthetic = {"source": "synthetic", "size": 32, "batch_size": 4, "train_samples": 16,
                     "val_samples": 8}
        isbi = {**isbi, "size": 64, "batch_size": 2}
        args.guard_data = {**synthetic}
        synthetic_clock, isbi_clock, args.guard_epochs, args.guard_chunk = (2, 1), (2, 2), 1, 2
    args.races = [
        Race("synthetic", synthetic, (1, 2), 0.90, *synthetic_clock,
             class_names=("background", "circle", "square")),
        Race("isbi", isbi, (1,), 0.65, *isbi_clock, epochs=30, val_batch=2,
             class_names=("cell", "membrane")),
    ]
    return args


def _verdict(share: float, bound: bool) -> str:
    if share <= TARGET_SHARE:
        return "met"
    return "not shown (raise the cap: --full)" if bound else "missed"


def main() -> None:
    spec = worker_spec(sys.argv)
    if spec is not None:
        serve(lambda: TrainingRun(spec))
        return
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    bases = [int(base) for base in args.bases.split(",")]
    contenders = [Contender(f"ours b{base}" + (" (defaults)" if base == 32 else ""), "ours",
                            base) for base in bases] + standard(())
    names = [c.name for c in contenders]
    skip = set(filter(None, args.skip.split(",")))
    shares: dict[str, dict[str, tuple[float, bool]]] = {}
    for race in args.races:
        if race.name in skip:
            continue
        if race.name == "isbi" and not ISBI_ROOT.is_dir():
            print(f"\nISBI race not run: {ISBI_ROOT} does not exist (see "
                  f"shared/datasets/README.md)")
            continue
        start = time.perf_counter()
        result = run_race(race, contenders, args.threads)
        print(f"({race.name} race: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
        shares[race.name] = report_race(race, result, names)
    rows = [[f"{race}: ours / {name}", f"{'< ' if bound else ''}{share:.2f}",
             f"<= {TARGET_SHARE}", _verdict(share, bound)]
            for race, found in shares.items() for name, (share, bound) in found.items()
            if name.startswith(("MONAI BasicUNet", "smp Unet r34"))]
    if rows:
        print_table(f"Target: the time to the threshold of {names[0]} at most half of MONAI's "
                    f"and smp's ('<' bounds: they did not reach it within their limit)",
                    ["race", "time ratio", "target", "verdict"], rows)
    if "guard" not in skip:
        precision_guard(args)
    if not args.quick:
        write_results(RESULTS / "time_to_accuracy.json", tables=printed())


if __name__ == "__main__":
    main()
