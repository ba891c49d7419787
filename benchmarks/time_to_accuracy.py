"""Wall time to a held-out IoU, against the seed, MONAI and smp, each at its best learning
rate, on the same data, loss and schedule.

Two races: IoU >= 0.90 on both shape classes (circle, square) of the built-in synthetic data at
``unetseg train``'s data defaults (64 x 64, batch 16, 2000 training images), and membrane IoU
>= 0.65 on ISBI-2012 (``../shared/datasets/isbi2012-membrane``, skipped with the reason when
absent; 256 x 256 crops, batch 4, the isbi preset's augmentation). The thresholds were fixed
before these runs, from the targets the project set itself (issue 24 names 0.65 for ISBI; 0.90
is the demo's level for the shapes), not from any run's result.

Every contender (`contenders.py`) reads the same batches in the same order, minimises CE +
Dice, and follows the same schedule: a linear warm-up over the first 5% of the cap, then a
cosine decay to zero at the cap, both in seconds of its own training (so a slower network is
not given a longer schedule). Each runs at every learning rate of ``--lrs`` (the same three for
all) and with each of ``--seeds`` (initial weights and batch order):

- ours: `unetseg.train.train_step` as ``unetseg train`` steps it (base 32, fused AdamW,
  gradient clipping, channels_last, measured precision, tuned malloc);
- the seed's U-Net, MONAI ``BasicUNet`` and ``UNet`` and smp ``Unet(resnet34)``, each (a) as
  its own docs train it (`contenders.py`: the seed's fp32 loop; MONAI and smp under bf16 AMP;
  NCHW, default allocator, AdamW, ``loss.item()`` every step) and (b) through unetseg's fast
  path (`unetseg.optimize_for_training`, a fused AdamW).

The clock counts training only (loading and augmenting batches, the steps). After every
``every`` seconds of it, each contender is scored on the validation split and on the held-out
test split (ISBI's slices 24-29; a synthetic draw from seeds neither training nor validation
uses), so every contender is looked at equally often in its own training time. A run stops
once both splits reached the threshold, or at the cap. A contender's learning rate is the one whose
median time to the threshold on **validation** is the least; its reported time is that lr's
median time to the threshold on the **test** split over the seeds (with the range), so that
the figure comes from images that chose nothing. Times are resolved to one interval. The
contenders take turns between validations, so a slow minute slows all alike.

Then the precision guard: our default run trained for a fixed number of steps (2 epochs of
the 2000 synthetic training images, the default schedule compressed into them) in fp32 and in
bf16, same seed and batches; the validation mIoU of bf16 must stay within 0.5 points of fp32.

The defaults (one seed, lr 1e-3, caps of 45 s and 30 s) are a smoke-sized race, too short
on the project's CPUs for anyone to reach a threshold. ``--full`` is the documented one (3
seeds, lrs 3e-4, 1e-3, 3e-3; caps of 150 s and 300 s of training), hours long: run it as
``--full --jobs 2 --threads 1`` on an otherwise idle 2-core machine, two (lr, seed) runs at a
time on one thread each (each has a core of its own; ``--jobs`` x ``--threads`` may not exceed
the cores). Each finished run of ``--full`` is kept in
benchmarks/results/time_to_accuracy_full/ under its settings, the CPU and torch among them,
and the same command on the same kind of machine reads it back, so an interrupted race
resumes where it stopped and may be spread over sessions. Each race's tables go to a results
file of its own once all its runs are there (time_to_accuracy_full_synthetic.json,
_isbi.json; the guard's to _guard.json), so the races may also run in different sessions on
different machines: ``--full --skip isbi`` and ``--full --skip synthetic,guard``.

``--bases 32,16`` adds our U-Net at other widths (the ratios stay those of the first).

    .venv/bin/python benchmarks/time_to_accuracy.py [--quick | --full] [--skip isbi,guard]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
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
from harness import RESULTS, commit, machine, print_table, printed, write_results

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets, build_eval_dataset
from unetseg.files import atomic_write_text
from unetseg.precision import cpu_kind

SCRIPT = Path(__file__).resolve()
ISBI_ROOT = ROOT.parent / "shared" / "datasets" / "isbi2012-membrane"
TARGET_SHARE = 0.5              # ours at most half of MONAI's and smp's time
WARMUP = 0.05                   # of the cap: the race's linear warm-up
GUARD_POINTS = 0.5              # bf16 within 0.5 mIoU points of fp32
FULL_RUNS = RESULTS / "time_to_accuracy_full"   # --full's finished (lr, seed) runs


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
    lrs: tuple[float, ...] = (1e-3,)    # the same sweep for every contender
    seeds: int = 1

    def reached(self, iou: list[float]) -> bool:
        return all(iou[c] >= self.threshold for c in self.classes)

    def score(self, iou: list[float]) -> float:
        """The lowest IoU of the classes that must reach the threshold (NaN counts as 0)."""
        return min(0.0 if math.isnan(iou[c]) else iou[c] for c in self.classes)


# --- in the workers ---------------------------------------------------------------------------

class TrainingRun:
    """One contender training on a race's data at one learning rate and seed, on its own clock
    and schedule (see the module docstring)."""

    def __init__(self, spec: dict) -> None:
        contender: Contender = spec["contender"]
        set_up_process(contender, spec["threads"])
        config = DataConfig(**spec["data"])
        self.peak, self.cap = spec.get("lr"), spec.get("cap")
        torch.manual_seed(spec.get("seed", 0))
        if contender.kind == "ours":
            trainer = our_trainer(contender, config, epochs=spec["epochs"],
                                  seed=spec.get("seed", 0))
            self.data, self.model = trainer.data, trainer.model
            layout = "channels_last" if contender.channels_last else "NCHW"
            self.optimizer = trainer.parts.optimizer
            self.precision = f"{trainer.precision.precision}, {layout}"
            # The race's schedule replaces the loop's: without a peak lr, the loop's own.
            self.step = trainer.step if self.peak is None else trainer.step_only
        else:
            self.data = build_datasets(config)
            model = network(contender, self.data.in_channels, self.data.spec.num_classes)
            if contender.path == "fast":        # (b): through unetseg's fast path
                fast = FastTraining(model, config.batch_size, config.size)
                self.model, self.step, self.optimizer = fast.model, fast.step, fast.optimizer
                self.precision = f"{fast.precision}, channels_last"
            else:                               # (a): as its own docs train it
                optimizer = torch.optim.AdamW(model.parameters())
                step = own_step(contender)
                self.model, self.precision = model.train(), contender.practice
                self.optimizer = optimizer
                self.step = lambda images, masks: step(model, optimizer, images, masks)
        self.test = None
        if spec.get("test"):
            self.test = build_eval_dataset(config, self.data.mean, self.data.std, "test",
                                           self.data.spec.class_names)[0]
        self.batch_size = config.batch_size
        self.val_batch = spec["val_batch"]
        self.batches = self._batches(spec.get("seed", 0))
        self.clock, self.steps = 0.0, 0

    def _batches(self, seed: int):
        epoch = 0
        while True:
            yield from epoch_batches(self.data.train, self.batch_size, epoch, seed)
            epoch += 1

    def ready(self) -> dict:
        return {"precision": self.precision, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "steps_per_epoch":
                len(self.data.train) // self.batch_size or 1}

    def _follow_schedule(self) -> None:
        """The race's lr at this point of the clock: warm-up, then cosine to 0 at the cap."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak * time_schedule(self.clock / self.cap)

    def train(self, seconds: float | None = None, steps: int | None = None) -> dict:
        """Train for ``seconds`` more of the clock (whole steps) or ``steps`` more steps, then
        score: the clock, the steps so far and the per-class IoU on the validation split (and
        on the test split, where the race has one)."""
        end_clock = self.clock + (math.inf if seconds is None else seconds)
        end_steps = self.steps + (math.inf if steps is None else steps)
        while self.clock < end_clock and self.steps < end_steps:
            start = time.perf_counter()
            images, masks = next(self.batches)
            if self.peak is not None:
                self._follow_schedule()
            self.step(images, masks)
            self.clock += time.perf_counter() - start
            self.steps += 1
        spec = self.data.spec
        scores = validate(self.model, self.data.val, spec.num_classes, spec.ignore_index,
                          self.val_batch)
        reply = {"seconds": self.clock, "steps": self.steps, "iou": scores.iou.tolist(),
                 "miou": scores.miou}
        if self.test is not None:
            reply["test_iou"] = validate(self.model, self.test, spec.num_classes,
                                         spec.ignore_index, self.val_batch).iou.tolist()
        return reply


def time_schedule(progress: float) -> float:
    """The lr factor at ``progress`` (0 to 1) of the cap: linear warm-up over the first
    `WARMUP`, then a cosine decay to 0."""
    if progress < WARMUP:
        return max(progress / WARMUP, 0.01)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP) / (1 - WARMUP))))


# --- in the parent ----------------------------------------------------------------------------

def run_race(race: Race, contenders: list[Contender], threads: int, lr: float,
             seed: int) -> dict:
    """Every contender trained at ``lr`` from ``seed``, in turns, until it reaches the
    threshold on both validation and test, or its cap."""
    skipped: dict[str, str] = {}
    workers = start_workers(SCRIPT, contenders, skipped, role="race", data=race.data,
                            epochs=race.epochs, threads=threads, val_batch=race.val_batch,
                            lr=lr, seed=seed, cap=race.cap, test=True)
    history: dict[str, list[dict]] = {name: [] for name in workers}
    failed: dict[str, str] = {}         # stopped mid-run (a crash, an interrupt): not a result
    active = dict(workers)
    while active:
        for name, worker in list(active.items()):
            done = history[name][-1]["seconds"] if history[name] else 0.0
            try:
                reply = worker.ask("train", seconds=min(race.every, race.cap - done))
            except WorkerFailed as error:
                skipped[name] = failed[name] = str(error)
                del active[name]
                continue
            history[name].append(reply)
            # On until both splits reached it: the time reported is the test split's.
            reached = race.reached(reply["iou"]) and race.reached(reply["test_iou"])
            if reached or reply["seconds"] >= race.cap:
                worker.close()
                del active[name]
    return {"history": history, "skipped": skipped, "failed": failed,
            "ready": {name: worker.ready for name, worker in workers.items()}}


def kept_run(race: Race, contenders: list[Contender], threads: int, lr: float, seed: int,
             folder: Path | None) -> dict:
    """`run_race`, kept in ``folder`` (when given) under a name that holds its settings: the
    race, the contenders, the threads and where it runs (CPU, cores, torch), so runs of one
    race on different machines are never pooled. A run kept under the same settings is read
    back instead of run again, and an interrupted race resumes where it stopped; a run with
    other settings goes to a file of its own. A run in which a contender stopped mid-way (a
    crash, an interrupt) is not kept."""
    if folder is None:
        return run_race(race, contenders, threads, lr, seed)
    data = {key: (os.path.relpath(value, ROOT.parent) if key == "root" else value)
            for key, value in race.data.items()}
    settings = {
        "race": {**asdict(race), "data": data}, "contenders": [asdict(c) for c in contenders],
        "threads": threads, "lr": lr, "seed": seed,
        "machine": {"cpu": cpu_kind(), "cores": os.cpu_count(), "torch": torch.__version__}}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = folder / f"{race.name}-lr{lr:g}-seed{seed}-{digest}.json"
    if path.is_file():
        print(f"(kept: {path.name})", file=sys.stderr, flush=True)
        return json.loads(path.read_text())["result"]
    result = run_race(race, contenders, threads, lr, seed)
    if result["failed"]:
        print(f"(not kept: {path.name}; stopped mid-run: {', '.join(result['failed'])})",
              file=sys.stderr, flush=True)
        return result
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"settings": settings, "commit": commit(),
                                        "result": result}) + "\n")
    return result


def first_reached(race: Race, history: list[dict], key: str) -> float:
    """Seconds of training when ``key`` ("iou": validation, "test_iou") first reached the
    threshold; infinity if it never did."""
    return next((reply["seconds"] for reply in history if race.reached(reply[key])), math.inf)


def outcomes(race: Race, runs: list[dict]) -> dict[str, dict]:
    """Per contender, from every (lr, seed) run: the lr whose median time to the threshold
    on validation is least (the best score seen breaks ties, such as none reaching it), and
    that lr's times on the test split over the seeds."""
    found: dict[str, dict[float, list[dict]]] = {}
    for run in runs:
        for name, history in run["history"].items():
            if history:
                found.setdefault(name, {}).setdefault(run["lr"], []).append(history)

    def rank(item):
        histories = item[1]
        best = statistics.mean(max(race.score(r["iou"]) for r in h) for h in histories)
        return statistics.median(first_reached(race, h, "iou") for h in histories), -best

    chosen = {}
    for name, by_lr in found.items():
        lr, histories = min(by_lr.items(), key=rank)
        chosen[name] = {
            "lr": lr, "test": [first_reached(race, h, "test_iou") for h in histories],
            "steps": [h[-1]["steps"] for h in histories],
            "seconds": [h[-1]["seconds"] for h in histories],
            "best_test": [max(race.score(r["test_iou"]) for r in h) for h in histories]}
    return chosen


def _time(values: list[float]) -> str:
    reached = [v for v in values if v < math.inf]
    if not reached:
        return "not reached"
    median = statistics.median(values)
    shown = "not reached" if median == math.inf else f"{median:.0f} s"
    return f"{shown} ({min(reached):.0f}-{max(reached):.0f} s; {len(reached)} of {len(values)})"


def report_race(race: Race, runs: list[dict], names: list[str],
                ready: dict, skipped: dict) -> dict[str, tuple[float, bool]]:
    """The race's table; returns the reference's (``names[0]``) median test time over each
    other contender's, and whether that is only an upper bound (the other's median run did
    not reach the threshold within the cap)."""
    chosen = outcomes(race, runs)
    ours = chosen.get(names[0])
    ours_time = statistics.median(ours["test"]) if ours else math.inf
    rows, shares = [], {}
    for name in names:
        if name not in chosen:
            reason = (skipped.get(name, "").splitlines() or ["no result"])[0][:90]
            rows.append([name, "", "", f"not run: {reason}", "", "", ""])
            continue
        found = chosen[name]
        theirs = statistics.median(found["test"])
        per_step = sum(found["seconds"]) / max(sum(found["steps"]), 1)
        ratio = ""
        if ours_time < math.inf and name != names[0]:
            bound = theirs == math.inf
            share = ours_time / (race.cap if bound else theirs)
            shares[name] = (share, bound)
            ratio = f"< {share:.2f}" if bound else f"{share:.2f}"
        rows.append([name, ready[name]["precision"], f"{found['lr']:g}",
                     _time(found["test"]), per_step,
                     f"{statistics.median(found['best_test']):.3f}", ratio])
    classes = " and ".join(race.class_names[c] for c in race.classes)
    seeds = len(next(iter(chosen.values()))["test"]) if chosen else 0
    print_table(f"Time to test IoU >= {race.threshold} on {classes}, {race.name}: seconds of "
                f"training, median (range; seeds that reached it) over {seeds} seed(s) at "
                f"each contender's best lr of {', '.join(f'{lr:g}' for lr in race.lrs)}, "
                f"chosen on validation; scored every {race.every:.0f} s, cap {race.cap:.0f} s",
                ["contender", "precision", "best lr", "time to threshold (test)", "s/step",
                 "best test score", "ours / theirs"], rows)
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
    parser.add_argument("--seeds", type=int, help="seeds per contender and lr (default 1; "
                        "--full: 3)")
    parser.add_argument("--lrs", help="comma-separated peak learning rates, the same for all "
                        "(default 1e-3; --full: 3e-4,1e-3,3e-3)")
    parser.add_argument("--jobs", type=int, default=1, help="(lr, seed) runs at a time, each "
                        "with --threads per contender (default 1)")
    parser.add_argument("--out", type=Path, help="the results files' name, with each part's "
                        "added (default: benchmarks/results/time_to_accuracy.json, or "
                        "time_to_accuracy_full.json: time_to_accuracy_full_synthetic.json, "
                        "_isbi.json, _guard.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs * args.threads > (os.cpu_count() or 1):
        parser.error(f"--jobs {args.jobs} x --threads {args.threads} is more threads than "
                     f"the {os.cpu_count()} cores: the runs would slow each other unevenly "
                     f"(give --threads {max(1, (os.cpu_count() or 1) // args.jobs)})")
    args.out = args.out or RESULTS / f"time_to_accuracy{'_full' if args.full else ''}.json"
    args.kept = FULL_RUNS if args.full else None
    # (cap, validation interval) in seconds of training, per race
    synthetic_clock, isbi_clock = ((150, 10), (300, 20)) if args.full else ((45, 5), (30, 10))
    seeds = args.seeds or (3 if args.full else 1)
    lrs = tuple(float(lr) for lr in (args.lrs or ("3e-4,1e-3,3e-3" if args.full
                                                  else "1e-3")).split(","))
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
             class_names=("background", "circle", "square"), lrs=lrs, seeds=seeds),
        Race("isbi", isbi, (1,), 0.65, *isbi_clock, epochs=30, val_batch=2,
             class_names=("cell", "membrane"), lrs=lrs, seeds=seeds),
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
    for race in args.races:
        if race.name in skip:
            continue
        if race.name == "isbi" and not ISBI_ROOT.is_dir():
            print(f"\nISBI race not run: {ISBI_ROOT} does not exist (see "
                  f"shared/datasets/README.md)")
            continue
        start, runs, ready, skipped = time.perf_counter(), [], {}, {}
        units = [(lr, seed) for seed in range(race.seeds) for lr in race.lrs]
        pool = ThreadPoolExecutor(max_workers=args.jobs)
        one_run = partial(kept_run, race, contenders, args.threads, folder=args.kept)
        try:
            results = list(pool.map(one_run, *zip(*units)))       # (lrs, seeds)
        except BaseException:           # Ctrl-C: the queued runs are dropped, not waited for
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        for (lr, seed), result in zip(units, results):
            runs.append({"lr": lr, "seed": seed, "history": result["history"]})
            ready.update(result["ready"])
            skipped.update(result["skipped"])
        print(f"({race.name} race: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
        with results_part(args, race.name):
            shares = report_race(race, runs, names, ready, skipped)
            rows = [[f"ours / {name}", f"{'< ' if bound else ''}{share:.2f}",
                     f"<= {TARGET_SHARE}", _verdict(share, bound)]
                    for name, (share, bound) in shares.items()
                    if name.startswith(("MONAI BasicUNet", "smp Unet r34"))]
            if rows:
                print_table(f"Target, {race.name} race: the time to the threshold of "
                            f"{names[0]} at most half of MONAI's and smp's ('<' bounds: they "
                            f"did not reach it within their limit)",
                            ["contenders", "time ratio", "target", "verdict"], rows)
    if "guard" not in skip:
        with results_part(args, "guard"):
            precision_guard(args)


@contextmanager
def results_part(args, part: str):
    """The tables printed inside, written (unless ``--quick``) to a results file of their own,
    ``--out``'s name with ``_PART`` added: each race takes hours with ``--full``, so the two
    races and the guard may run in different sessions, on different machines, and each file
    says where its part ran."""
    before = len(printed())
    yield
    if not args.quick:
        write_results(args.out.with_name(f"{args.out.stem}_{part}{args.out.suffix}"),
                      tables=printed()[before:])


if __name__ == "__main__":
    main()
