"""Does `unetseg suggest` choose better images to label than chance? A simulated labelling study.

For each dataset and seed, the training images are the pool. A fifth of it (seeded) is set
aside as the validation split of every run, and is never labelled or suggested; the rest can
be labelled. The study starts from a random 25% of that labellable pool, then labels three
more rounds of 10% each, two ways:

- ``suggest``: the images ``unetseg suggest`` ranks first, asked of the previous round's model
  of the same way (diverse: near-duplicates are left out);
- ``random``: drawn at random from the images not yet labelled.

Every round retrains from scratch as a user would, ``unetseg train --data VIEW --time-budget
B`` (planned, one thread), and is scored with ``unetseg evaluate --data VIEW/test`` on the
dataset's test images, which chose nothing. The figure is the foreground IoU of a two-class
dataset, else the mIoU.

    .venv/bin/python experiments/labelling_study.py isbi weizmann-horse --budget 5 --seeds 0 1 2

Datasets are named as for plan_study.py (a folder with train/ and test/, a name under
../shared/datasets, or the ``isbi`` view). Each run keeps its folder under
experiments/results/labelling_study/ and is skipped when scored, so a stopped study resumes.
The rows go to docs/results/labelling_study.json (machine, commit, command) after every run,
and its table and curve (docs/images/labelling_study.png) are drawn from that file:
``--report FILE`` draws them again. ``--quick`` runs the whole loop on a small made-up folder
in seconds (what the tests run).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Lock

import numpy as np
from plan_study import _link, _run, dataset_folder, headline
from reporting import harness

from unetseg.data.io import images_by_stem as _by_stem

HERE = Path(__file__).resolve().parent


def images_by_stem(folder: Path) -> dict[str, Path]:
    """A folder's image files by stem (its other files left out)."""
    return _by_stem(folder)[0]


RUNS = HERE / "results" / "labelling_study"
RESULTS = HERE.parent / "docs" / "results" / "labelling_study.json"
CURVE = HERE.parent / "docs" / "images" / "labelling_study.png"
START, STEP, ROUNDS, VALIDATION = 0.25, 0.10, 3, 0.2
QUICK_FLAGS = ["--plan", "none", "--max-steps", "2", "--base", "4", "--size", "32",
               "--batch-size", "2", "--precision", "fp32"]


# ---------------------------------------------------------------- who is labelled when

def split_pool(stems: list[str], seed: int) -> tuple[list[str], list[str], int, int]:
    """(validation stems, labellable stems, the start's count, each round's count)."""
    rng = np.random.default_rng([seed, 0])
    order = [stems[i] for i in rng.permutation(len(stems))]
    held = max(1, round(VALIDATION * len(order)))
    pool = order[held:]
    return sorted(order[:held]), pool, max(1, round(START * len(pool))), \
        max(1, round(STEP * len(pool)))


def _view(folder: Path, view: Path, train: list[str], val: list[str]) -> Path:
    """A data folder of links: train/ and val/ of the given stems, the dataset's test/ and its
    dataset file. Rebuilt whole, so a view never keeps a stale link."""
    shutil.rmtree(view, ignore_errors=True)
    images, masks = (images_by_stem(folder / "train" / kind) for kind in ("images", "masks"))
    for split, stems in (("train", train), ("val", val)):
        for stem in stems:
            _link(images[stem], view / split / "images" / images[stem].name)
            _link(masks[stem], view / split / "masks" / masks[stem].name)
    _link(folder / "test", view / "test")
    for spec in ("dataset.yaml", "train/dataset.yaml"):
        if (folder / spec).is_file():
            _link(folder / spec, view / "dataset.yaml")
            break
    return view


# ---------------------------------------------------------------- one run

def _train_and_score(view: Path, run: Path, seed: int, budget: float, flags: list[str]) -> dict:
    if not (run / "test" / "evaluation.json").is_file():
        run.mkdir(parents=True, exist_ok=True)
        (run / "commit.txt").write_text(harness().commit())
        length = flags or ["--time-budget", str(budget)]
        for arguments in (["train", "--data", str(view), *length, "--seed", str(seed),
                           "--data-seed", str(seed), "--quiet", "--overwrite", "--out",
                           str(run)],
                          # test/ as another folder, scored whole (a view with val/ has
                          # no --split test), its masks read as the run read its own.
                          ["evaluate", str(run / "best.safetensors"), "--data",
                           str(view / "test"), "--out", str(run / "test"), "--quiet",
                           "--overwrite", "--no-inspect"]):
            done = _run("-m", "unetseg", *arguments)
            if done.returncode != 0:
                raise RuntimeError(f"{run}: {arguments[0]} failed\n{done.stderr[-2000:]}")
    evaluation = json.loads((run / "test" / "evaluation.json").read_text())
    return {"miou": evaluation["miou"], "test_images": evaluation["images"],
            "iou": {row["class"]: row["iou"] for row in evaluation["classes"]},
            "commit": (run / "commit.txt").read_text().strip()}


def _suggested(model: Path, folder: Path, unlabelled: list[str], count: int, out: Path
               ) -> list[str]:
    """The ``count`` stems ``unetseg suggest`` ranks first among ``unlabelled``."""
    images = images_by_stem(folder / "train" / "images")
    pool = out / "unlabelled"
    shutil.rmtree(pool, ignore_errors=True)
    for stem in unlabelled:
        _link(images[stem], pool / images[stem].name)
    done = _run("-m", "unetseg", "suggest", str(model), str(pool), "--n", str(count),
                "--out", str(out), "--overwrite", "--quiet")
    if done.returncode != 0:
        raise RuntimeError(f"{out}: suggest failed\n{done.stderr[-2000:]}")
    with open(out / "suggest.csv", newline="") as handle:
        ranked = sorted((int(row["rank"]), Path(row["image"]).stem)
                        for row in csv.DictReader(handle) if row["rank"])
    return [stem for _, stem in ranked]


def chain(folder: Path, seed: int, strategy: str, budget: float, flags: list[str],
          record, rounds: int = ROUNDS, strategies: list[str] | None = None) -> None:
    """One way of labelling, ``rounds`` rounds after the start, for one dataset and seed;
    ``strategies``: all the ways the study runs (the first of them records the start)."""
    strategies = strategies or ["random", "suggest"]
    stems = sorted(images_by_stem(folder / "train" / "images"))
    val, pool, start, step = split_pool(stems, seed)
    labelled = pool[:start]
    base = RUNS / f"{folder.name}-s{seed}"
    for round_ in range(rounds + 1):
        run = base / ("start" if round_ == 0 else f"{strategy}-r{round_}")
        if round_:
            rest = [stem for stem in pool if stem not in labelled]
            previous = base / ("start" if round_ == 1 else f"{strategy}-r{round_ - 1}")
            if strategy == "suggest":
                chosen = _suggested(previous / "best.safetensors", folder, rest, step,
                                    run / "suggest")
            else:
                rng = np.random.default_rng([seed, round_, 1])
                chosen = [rest[i] for i in rng.choice(len(rest), min(step, len(rest)),
                                                      replace=False)]
            labelled = labelled + chosen
        view = _view(folder, run / "data", labelled, val)
        (run / "labelled.txt").write_text("\n".join(labelled) + "\n")
        scores = _train_and_score(view, run, seed, budget, flags)
        if round_ or strategy == strategies[0]:       # the shared start is recorded once
            record({"dataset": folder.name, "seed": seed,
                    "strategy": strategy if round_ else "start", "round": round_,
                    "labelled": len(labelled), "pool": len(pool), "budget_min": budget,
                    **scores})


# ---------------------------------------------------------------- the table and the curve

def _by_round(rows: list[dict]) -> dict:
    """dataset -> strategy -> round -> [labelled share, {seed: headline}]; the shared start
    belongs to both strategies."""
    found: dict = {}
    for row in rows:
        strategies = ("random", "suggest") if row["strategy"] == "start" else (row["strategy"],)
        for strategy in strategies:
            cell = found.setdefault(row["dataset"], {}).setdefault(strategy, {}).setdefault(
                row["round"], [row["labelled"] / row["pool"], {}])
            cell[1][row["seed"]] = headline(row)
    return found


def table(document: dict) -> str:
    """Held-out score after each round, mean (range) over the seeds, random and suggest."""
    lines = ["| data | round | labelled | random: mean (range) | suggest: mean (range) | "
             "suggest - random (points) | seeds |", "| --- |" + " --- |" * 6]
    for dataset, strategies in sorted(_by_round(document["rows"]).items()):
        for round_ in sorted(strategies.get("random", {})):
            share, random_scores = strategies["random"][round_]
            suggest = strategies.get("suggest", {}).get(round_, [share, {}])[1]
            seeds = sorted(set(random_scores) & set(suggest))
            cells = [_spread([random_scores[s] for s in seeds]),
                     _spread([suggest[s] for s in seeds])]
            gap = (f"{100 * np.mean([suggest[s] - random_scores[s] for s in seeds]):+.1f}"
                   if seeds else "-")
            lines.append(f"| {dataset} | {round_} | {share:.0%} | {cells[0]} | {cells[1]} | "
                         f"{gap} | {len(seeds)} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def draw_curve(document: dict, path: Path) -> None:
    """Held-out score against the labelled share, one panel per dataset, the seeds' mean as
    a line and their range as a band."""
    from unetseg.charts import figure_bytes, pyplot
    from unetseg.files import atomic_write_bytes

    found = _by_round(document["rows"])
    figure, axes = pyplot().subplots(1, len(found), figsize=(4.5 * len(found), 3.6),
                                     squeeze=False, layout="constrained")
    for ax, (dataset, strategies) in zip(axes[0], sorted(found.items())):
        for strategy, colour in (("random", "#777"), ("suggest", "#1565c0")):
            rounds = sorted(strategies.get(strategy, {}))
            shares = [strategies[strategy][r][0] for r in rounds]
            scores = [list(strategies[strategy][r][1].values()) for r in rounds]
            ax.plot(shares, [np.mean(s) for s in scores], marker="o", color=colour,
                    label=strategy)
            ax.fill_between(shares, [min(s) for s in scores], [max(s) for s in scores],
                            color=colour, alpha=0.15)
        ax.set(title=dataset, xlabel="share of the pool labelled", ylabel="held-out score")
        ax.legend()
    atomic_write_bytes(path, figure_bytes(figure))


def report(document: dict) -> str:
    """What docs/experiments.md shows: the table, the curve's file and where it ran."""
    return (f"{table(document)}\n\n![held-out score against the labelled share]"
            f"(images/labelling_study.png)\n\n(On {document['machine']}; budget "
            f"{document['rows'][0]['budget_min']:g} minutes a run; runs trained at commit(s) "
            f"{', '.join(sorted({row['commit'] for row in document['rows']}))}.)")


# ---------------------------------------------------------------- main

def _quick_folder(root: Path) -> Path:
    """A small two-class folder laid out as train/ and test/: bright boxes on noise."""
    rng = np.random.default_rng(0)
    from PIL import Image

    for split, count in (("train", 20), ("test", 4)):
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mask = np.zeros((48, 48), dtype=np.uint8)
            top, left = rng.integers(0, 30, 2)
            mask[top:top + 16, left:left + 16] = 1
            image = (np.where(mask, 200, 40) + rng.normal(0, 10, mask.shape)).clip(0, 255)
            Image.fromarray(image.astype(np.uint8)).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    (root / "dataset.yaml").write_text("classes: [background, box]\n")
    return root


def main(argv: list[str] | None = None) -> int:
    global RUNS, RESULTS, CURVE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help="folders, or names under ../shared/datasets")
    parser.add_argument("--budget", type=float, default=5.0, help="minutes a run (default: 5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2),
                        help="chains of runs at a time, one thread each (default: 2)")
    parser.add_argument("--strategies", nargs="+", default=["random", "suggest"],
                        choices=["random", "suggest"], help="(default: both)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"rounds of labelling after the start (default: {ROUNDS})")
    parser.add_argument("--quick", action="store_true",
                        help="the whole loop on a made-up folder, runs of 2 steps, into --out")
    parser.add_argument("--out", type=Path, help="with --quick: where everything goes")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="train nothing: print the table and draw the curve of a file")
    args = parser.parse_args(argv)
    if args.report:
        document = json.loads(args.report.read_text())
        draw_curve(document, CURVE)
        print(report(document))
        return 0
    flags: list[str] = []
    if args.quick:
        if args.out is None:
            parser.error("--quick writes into --out")
        RUNS, RESULTS, CURVE = (args.out / "runs", args.out / "labelling_study.json",
                                args.out / "labelling_study.png")
        folders, args.seeds, flags = [_quick_folder(args.out / "data")], [0], QUICK_FLAGS
    elif not args.datasets:
        parser.error("name the datasets to run (or --quick, or --report RESULTS)")
    else:
        folders = [dataset_folder(name) for name in args.datasets]
    rows, lock = [], Lock()

    def record(row: dict) -> None:
        with lock:
            rows.append(row)
            harness().write_results(RESULTS, rows=sorted(
                rows, key=lambda r: (r["dataset"], r["seed"], r["strategy"], r["round"])))
            print(f"{row['dataset']} seed {row['seed']} {row['strategy']} round "
                  f"{row['round']}: {row['labelled']} labelled, held-out {headline(row):.4f}",
                  flush=True)

    # The start is shared: the random chain trains it first, then both chains may run.
    for folder in folders:
        for seed in args.seeds:
            stems = sorted(images_by_stem(folder / "train" / "images"))
            val, pool, start, _ = split_pool(stems, seed)
            run = RUNS / f"{folder.name}-s{seed}" / "start"
            view = _view(folder, run / "data", pool[:start], val)
            (run / "labelled.txt").write_text("\n".join(pool[:start]) + "\n")
            _train_and_score(view, run, seed, args.budget, flags)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(chain, folder, seed, strategy, args.budget, flags, record,
                               args.rounds, args.strategies)
                   for folder in folders for seed in args.seeds
                   for strategy in args.strategies]
        for future in futures:
            future.result()
    document = json.loads(RESULTS.read_text())
    draw_curve(document, CURVE)
    print(report(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
