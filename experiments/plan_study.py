"""Planned against classic, the hand recipes and two peers, as a user runs them: ``unetseg train
--data FOLDER --time-budget B`` (planned), the same with ``--plan none`` (the classic settings)
or with ``--plan none --config experiments/recipes/NAME.yaml`` (the retired hand recipe, where
the dataset has one), each on one thread, then ``unetseg evaluate best.safetensors --split
test``; and smp.Unet (resnet34) and MONAI's BasicUNet at their own documented practice for the
same budget (`peer_run.py`, which says what each uses). Every score is on test/ images that
chose nothing: neither the plan (which reads the training split), nor a checkpoint (chosen on a
part of train/), nor a setting.

    .venv-exp/bin/python experiments/plan_study.py weizmann-horse drive isbi camvid \\
        --budget 15 --seeds 0 1 2

A dataset is a folder laid out as train/ and test/, or a name under ../shared/datasets.
``isbi`` and ``camvid`` are laid out so by links under experiments/results/plan_study/data/
(nothing is copied): ISBI's train/ is slices 0-23 and test/ slices 24-29 (the held-out block
``--data isbi --split test`` scores), CamVid's train/ is its train split and test/ its val
split (SegNet's test split is not in ../shared; so CamVid's figures are on val, which chose
nothing here). Run it with .venv-exp, where smp is installed, so that every contender runs on
the same torch.

Two runs go at a time (2 cores, one thread each). Every run keeps its folder under
experiments/results/plan_study/ and is skipped when its evaluation.json exists, so an
interrupted study resumes. After each run the table of the finished ones is written, with the
machine, the commit and the command, to docs/results/plan_study_b{budget}.json; ``--report
FILE`` prints the table docs/planning.md shows of such a file (a test holds the two equal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from threading import Lock

from reporting import harness

from unetseg.data.presets import CAMVID, ISBI, ISBI_TEST
from unetseg.files import atomic_write_text, yaml_text

HERE = Path(__file__).resolve().parent
RUNS = HERE / "results" / "plan_study"
SHARED = HERE.parent.parent / "shared" / "datasets"
RESULTS = HERE.parent / "docs" / "results"
# What each contender adds to `unetseg train --data FOLDER --time-budget B`; the peers are
# trained by peer_run.py instead.
TRAIN_FLAGS = {"planned": [], "classic": ["--plan", "none"], "recipe": []}
PEERS = ("smp", "monai")
CONTENDERS = ("planned", "smp", "monai", "recipe", "classic")
# The hand recipes, retired from the toolkit, as --config files, by the dataset each was made
# for.
RECIPES = {name: HERE / "recipes" / f"{name}.yaml" for name in ("isbi", "camvid")}


# ---------------------------------------------------------------- the datasets

def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(target.resolve())


# Each view's dataset.yaml is its preset's mask spec (classes, colours, ignore, remap), so
# that the folder's masks are read exactly as --data isbi and --data camvid read them.

def _isbi_view(root: Path, view: Path) -> None:
    for image in sorted((root / "images").glob("*.png")):
        split = "test" if image.stem in ISBI_TEST else "train"
        for kind in ("images", "masks"):
            _link(root / kind / image.name, view / split / kind / image.name)
    atomic_write_text(view / "dataset.yaml", yaml_text(ISBI.to_dict()))


def _camvid_view(root: Path, view: Path) -> None:
    for split, images, masks in (("train", "train", "trainannot"), ("test", "val", "valannot")):
        _link(root / images, view / split / "images")
        _link(root / masks, view / split / "masks")
    atomic_write_text(view / "dataset.yaml", yaml_text(CAMVID.to_dict()))


VIEWS = {"isbi": ("isbi2012-membrane", _isbi_view), "camvid": ("camvid", _camvid_view)}


def dataset_folder(name: str) -> Path:
    """A train/ + test/ folder for ``name``: a path, a folder under ../shared/datasets, or a
    linked view of isbi or camvid."""
    if name in VIEWS:
        shared, build = VIEWS[name]
        view = RUNS / "data" / name
        build(SHARED / shared, view)
        return view
    folder = Path(name) if Path(name).is_dir() else SHARED / name
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        raise SystemExit(f"{name}: expected a folder with train/ and test/ (or isbi, camvid)")
    return folder


# ---------------------------------------------------------------- one run

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _train(folder: Path, contender: str, seed: int, budget: float, run: Path) -> None:
    flags = TRAIN_FLAGS[contender]
    if contender == "recipe":             # the budget, not the recipe's own steps, ends it
        flags = ["--plan", "none", "--config", str(RECIPES[folder.name]), "--max-steps", "0"]
    done = _run("-m", "unetseg", "train", "--data", str(folder), "--time-budget", str(budget),
                "--seed", str(seed), "--data-seed", str(seed), "--quiet", "--overwrite",
                "--out", str(run), *flags)
    if done.returncode != 0:
        raise RuntimeError(f"{run}: training failed\n{done.stderr[-2000:]}")
    (run / "train.log").write_text(done.stdout)
    done = _run("-m", "unetseg", "evaluate", str(run / "best.safetensors"), "--split", "test",
                "--out", str(run / "test"), "--quiet", "--overwrite")
    if done.returncode != 0:
        raise RuntimeError(f"{run}: evaluation failed\n{done.stderr[-2000:]}")


def run_one(folder: Path, contender: str, seed: int, budget: float) -> dict:
    run = RUNS / f"{folder.name}-{contender}-b{budget:g}-s{seed}"
    scored = run / "test" / "evaluation.json"
    # A study spans sessions, and the machine under them changes: each row says its commit
    # and the machine it trained on.
    trained_at, trained_on = run / "commit.txt", run / "machine.txt"
    if not scored.is_file():
        run.mkdir(parents=True, exist_ok=True)
        trained_at.write_text(harness().commit())
        trained_on.write_text(harness().machine())
        if contender in PEERS:
            done = _run(str(HERE / "peer_run.py"), str(folder), contender, "--budget",
                        str(budget), "--seed", str(seed), "--out", str(run))
            if done.returncode != 0:
                raise RuntimeError(f"{run}: failed\n{done.stderr[-2000:]}")
        else:
            _train(folder, contender, seed, budget, run)
    evaluation = json.loads(scored.read_text())
    log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
    # How many steps the budget held: the same plan has taken 2,864 and 4,120 under other
    # loads, so a row says it.
    if (run / "metrics.jsonl").is_file():
        steps = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    else:
        steps = json.loads((run / "run.json").read_text()).get("steps")
    return {"dataset": folder.name, "contender": contender, "seed": seed, "budget_min": budget,
            "test_images": evaluation["images"], "split": evaluation["split"],
            "miou": evaluation["miou"], "steps": steps,
            "commit": trained_at.read_text().strip() if trained_at.is_file() else "unknown",
            **({"machine": trained_on.read_text().strip()} if trained_on.is_file() else {}),
            "iou": {row["class"]: row["iou"] for row in evaluation["classes"]},
            "plan": [line.strip() for line in log.splitlines() if line.startswith("  --")]}


# ---------------------------------------------------------------- the tables

def headline(row: dict) -> float:
    """A run's score: the foreground IoU of a two-class dataset (its class 1), else mIoU."""
    ious = list(row["iou"].values())
    return ious[1] if len(ious) == 2 else row["miou"]


def summary(rows: list[dict]) -> str:
    """The docs' table: per dataset and contender, the seeds run and the mean (range) of the
    headline score and of mIoU, contenders in `CONTENDERS` order."""
    lines = ["| data | test images | contender | seeds | score: mean (range) | mIoU: mean | "
             "steps: range |", "| --- | --- | --- | --- | --- | --- | --- |"]
    order = {name: i for i, name in enumerate(CONTENDERS)}
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["dataset"], order[r["contender"]], r["seed"])):
        groups.setdefault((row["dataset"], row["contender"]), []).append(row)
    for (dataset, contender), runs in groups.items():
        scores = [headline(run) for run in runs]
        what = "foreground IoU" if len(runs[0]["iou"]) == 2 else "mIoU"
        spread = f" ({min(scores):.3f}-{max(scores):.3f})" if len(runs) > 1 else ""
        miou = sum(run["miou"] for run in runs) / len(runs)
        steps = [run["steps"] for run in runs if run.get("steps") is not None]
        taken = (f"{min(steps):,}" + (f"-{max(steps):,}" if max(steps) > min(steps) else "")
                 if steps else "-")               # rows written before steps were kept: -
        lines.append(f"| {dataset} | {runs[0]['test_images']} | {contender} | {len(runs)} | "
                     f"{what} {sum(scores) / len(scores):.3f}{spread} | {miou:.3f} | "
                     f"{taken} |")
    return "\n".join(lines)


def printouts(rows: list[dict]) -> str:
    """Each dataset's plan as the planned run printed it (its first seed's: the plan reads
    the training split and times this machine, so seeds may differ only in timed figures)."""
    blocks, shown = [], set()
    for row in sorted(rows, key=lambda r: (r["dataset"], r["seed"])):
        if row["contender"] == "planned" and row["plan"] and row["dataset"] not in shown:
            shown.add(row["dataset"])
            blocks.append(f"{row['dataset']} (seed {row['seed']}):\n```\n"
                          + "\n".join(row["plan"]) + "\n```")
    return "\n\n".join(blocks)


def means(rows: list[dict]) -> dict[str, dict[str, tuple[float, int]]]:
    """Per dataset and contender: (mean headline score, seeds)."""
    runs: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        runs.setdefault(row["dataset"], {}).setdefault(row["contender"], []).append(
            headline(row))
    return {dataset: {name: (sum(scores) / len(scores), len(scores))
                      for name, scores in contenders.items()}
            for dataset, contenders in runs.items()}


def targets(document: dict) -> str:
    """Issue 23's three targets, per dataset, on the mean scores, in IoU points: planned at
    least classic + 5 where classic is not within 2 of the best; at least the hand recipe - 1;
    at least the better peer (on 3 of the 4 datasets)."""
    lines = ["| data | seeds | planned | planned - classic | planned - recipe | "
             "planned - better peer |", "| --- | --- | --- | --- | --- | --- |"]
    for dataset, score in sorted(means(document["rows"]).items()):
        if "planned" not in score:
            continue
        planned, seeds = score["planned"]
        best = max(mean for mean, _ in score.values())

        near_best = "classic" in score and 100 * (best - score["classic"][0]) <= 2
        peers = [name for name in PEERS if name in score]
        better = max(peers, key=lambda name: score[name][0]) if peers else None
        recipe = _gap(score, "recipe", -1) if dataset in RECIPES else "none"
        lines.append(f"| {dataset} | {seeds} | {planned:.3f} | "
                     f"{_gap(score, 'classic', 5, not near_best)} | {recipe} | "
                     + (f"{better}: {_gap(score, better, 0)} |" if better else "not run |"))
    return "\n".join(lines)


def _gap(score: dict[str, tuple[float, int]], name: str, needed: float,
         applies: bool = True) -> str:
    """Planned minus ``name`` in IoU points, and whether that meets ``needed``."""
    if name not in score:
        return "not run"
    points = 100 * (score["planned"][0] - score[name][0])
    return f"{points:+.1f}" + ("" if not applies else " (met)" if points >= needed
                               else " (missed)")


def dataset(document: dict, name: str) -> str:
    """One dataset's held-out IoU per class, a column per contender (mean over its seeds)."""
    rows = [row for row in document["rows"] if row["dataset"] == name]
    if not rows:
        return f"(no run of {name} in this results file yet)"
    order = {contender: i for i, contender in enumerate(CONTENDERS)}
    contenders = sorted({row["contender"] for row in rows}, key=order.get)
    runs = {c: [row for row in rows if row["contender"] == c] for c in contenders}

    def mean(values: list) -> str:
        values = [v for v in values if v is not None]
        return f"{sum(values) / len(values):.3f}" if values else "-"

    seeds = " | ".join(f"{c} ({len(runs[c])} seed{'s' if len(runs[c]) > 1 else ''})"
                       for c in contenders)
    lines = [f"| class | {seeds} |", "| --- |" + " --- |" * len(contenders)]
    for cls in rows[0]["iou"]:
        lines.append(f"| {cls} | " + " | ".join(
            mean([run["iou"][cls] for run in runs[c]]) for c in contenders) + " |")
    lines.append("| **mIoU** | " + " | ".join(
        f"**{mean([run['miou'] for run in runs[c]])}**" for c in contenders) + " |")
    return "\n".join(lines) + (f"\n\n(Mean IoU over the seeds, on {rows[0]['test_images']} "
                               f"held-out images.)")


def results_table(document: dict) -> str:
    """The docs' table of a results file, and where its runs trained."""
    rows = document["rows"]
    commits = sorted({row["commit"] for row in rows if "commit" in row})
    trained = (f"runs trained at commit(s) {', '.join(commits)}" if commits else
               f"the file written at commit {document['commit']}")
    return summary(rows) + f"\n\n({machines(document)}; {trained}.)"


def machines(document: dict) -> str:
    """Where a results table's runs trained: "On MACHINE" where all ran on one, else each
    machine with the datasets it trained (a row without its own machine is the file's)."""
    datasets: dict[str, set[str]] = {}
    for row in document["rows"]:
        datasets.setdefault(row.get("machine", document["machine"]), set()).add(row["dataset"])
    if len(datasets) == 1:
        return f"On {next(iter(datasets))}"
    return "; ".join(f"{', '.join(sorted(names))} on {machine}"
                     for machine, names in sorted(datasets.items()))


def longer_budget(document: dict, shorter: str) -> str:
    """The contenders of a longer budget's file beside the same contenders in the ``shorter``
    budget's results file (a path from the repository's root): each one's mean headline score
    at both budgets and its gain, then planned minus the peer at each budget, in IoU points."""
    short = json.loads((HERE.parent / shorter).read_text())
    at_short, at_long = (f"{doc['rows'][0]['budget_min']:g} min" for doc in (short, document))
    long_means, short_means = means(document["rows"]), means(short["rows"])
    scores = [f"| data | contender | {at_short} (seeds) | {at_long} (seeds) | gain, points |",
              "| --- | --- | --- | --- | --- |"]
    gaps = [f"| data | peer | planned - peer, {at_short} | planned - peer, {at_long} |",
            "| --- | --- | --- | --- |"]
    for dataset, now in sorted(long_means.items()):
        then = short_means.get(dataset, {})
        for name in sorted(now, key=CONTENDERS.index):
            before = f"{then[name][0]:.3f} ({then[name][1]})" if name in then else "-"
            scores.append(f"| {dataset} | {name} | {before} | {now[name][0]:.3f} "
                          f"({now[name][1]}) | {_points(now, then, name, name)} |")
        for peer in (name for name in PEERS if name in now):
            gaps.append(f"| {dataset} | {peer} | {_points(then, then, 'planned', peer)} | "
                        f"{_points(now, now, 'planned', peer)} |")
    return "\n".join(scores) + "\n\n" + "\n".join(gaps)


def _points(first: dict, second: dict, name: str, other: str) -> str:
    """``first[name]`` minus ``second[other]`` (mean scores) in IoU points, "-" if one is
    missing."""
    if name not in first or other not in second:
        return "-"
    return f"{100 * (first[name][0] - second[other][0]):+.1f}"


def plan_printouts(document: dict) -> str:
    return printouts(document["rows"])


def table(rows: list[dict]) -> str:
    lines = ["| dataset | contender | seed | test mIoU | IoU per class |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        ious = ", ".join(f"{name} {value:.3f}" for name, value in row["iou"].items()
                         if value is not None)
        lines.append(f"| {row['dataset']} | {row['contender']} | {row['seed']} | "
                     f"{row['miou']:.4f} | {ious} |")
    return "\n".join(lines)


def _run_key(row: dict) -> tuple[str, str, int]:
    return row["dataset"], row["contender"], row["seed"]


def write_results(path: Path, rows: list[dict]) -> None:
    """The results file (`harness.write_results`: with the machine, commit, command and date),
    its rows in the table's order. The file's rows of runs that ``rows`` does not hold (other
    datasets, contenders or seeds) are kept: a study run piecemeal adds up, and a run on a few
    datasets never drops the others' rows. A kept row from before rows named their machine is
    given the machine of the file that held it, which wrote it."""
    ran = {_run_key(row) for row in rows}
    kept = []
    if path.is_file():
        before = json.loads(path.read_text())
        kept = [{"machine": before["machine"], **row} for row in before["rows"]
                if _run_key(row) not in ran]
    order = {name: i for i, name in enumerate(CONTENDERS)}
    harness().write_results(path, rows=sorted(
        kept + rows, key=lambda r: (r["dataset"], order[r["contender"]], r["seed"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help="folders, or names under ../shared/datasets")
    parser.add_argument("--budget", type=float, default=15.0, help="minutes (default: 15)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                        choices=CONTENDERS, help="(default: all; recipe only where one exists)")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2),
                        help="runs at a time, each on one thread (default: 2, one per core; "
                        "1 leaves a core free)")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="train nothing: print the docs' table of a results file")
    args = parser.parse_args()
    if args.report:
        document = json.loads(args.report.read_text())
        print("\n\n".join([results_table(document), targets(document),
                             plan_printouts(document)]))
        return
    if not args.datasets:
        parser.error("name the datasets to run (or --report RESULTS)")
    folders = [dataset_folder(name) for name in args.datasets]
    jobs = [(folder, contender, seed) for seed in args.seeds for folder in folders
            for contender in args.contenders
            if contender != "recipe" or folder.name in RECIPES]
    path = RESULTS / f"plan_study_b{args.budget:g}.json"
    rows, failures, lock = [], [], Lock()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *job, args.budget) for job in jobs]
        for future in as_completed(futures):
            try:
                row = future.result()
            except RuntimeError as error:
                failures.append(str(error))
                print(error, file=sys.stderr, flush=True)
                continue
            with lock:
                rows.append(row)
                write_results(path, rows)
            print(f"{row['dataset']} {row['contender']} seed {row['seed']}: test mIoU "
                  f"{row['miou']:.4f}", flush=True)
    print(table(rows))
    print(summary(rows))
    print(f"wrote {path}")
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed")


if __name__ == "__main__":
    main()
