"""Loss study: BCE against BCE + Dice for a rare foreground.

Question: with one foreground logit per pixel, does adding the soft Dice term to binary
cross-entropy reach a good foreground IoU sooner (in optimiser steps and in CPU time) than BCE
alone, when the foreground is rare?

Datasets: ``binary`` (unetseg's built-in objects covering 5% of each 64 x 64 image) and
``isbi`` (ISBI-2012 with membrane as the foreground: the preset's class 1, about 22% of the
pixels, so less rare). Contenders: our U-Net with ``bce`` (unetseg's ``bce_dice`` with the
Dice weight 0: BCE over counted pixels) and with ``bce_dice`` (weight 1). Everything else is
the shared loop of `common` (same batches, AdamW, warm-up + cosine, one thread; fp32, or with
``--precision bf16`` unetseg's training fast path for both losses alike).

Measured: foreground IoU on the held-out test split (images that chose nothing: for binary a
draw of 200 from seeds neither training nor validation uses, for isbi slices 24-29) against
steps and against training wall seconds (mean and min-max over seeds), and per seed the first
evaluated step (and its seconds) at which foreground IoU reached 0.8, or the best value reached.

Full mode (defaults): 3 seeds; binary: 64 px, batch 16, 300 steps, evaluated every 25 steps;
isbi: 128 px crops, batch 8, 300 steps, evaluated every 50 steps on the 6 whole 512 x 512
test slices; base-32 U-Net. ``--steps N`` changes the steps of every dataset. ``--quick``:
1 seed, 6 steps, 32 px, one or two test images, base 4.

    .venv/bin/python experiments/loss_study.py [--quick] [--out DIR] [--seeds N]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

# Run as a script, so experiments/ is on sys.path and its modules import by name.
from common import (
    Contender,
    Recipe,
    chosen_datasets,
    load_data,
    machine,
    study_parser,
    train_contender,
)
from reporting import fmt, markdown_table, plot_curves, write_json, write_results, write_summary

from unetseg.config import DataConfig

DATASETS = ("binary", "isbi")
THRESHOLD = 0.8
LOSSES = (("BCE", "bce"), ("BCE+Dice", "bce_dice"))


def setup(dataset: str, quick: bool, args) -> tuple[DataConfig, Recipe, int]:
    """(data, recipe, U-Net base) of one dataset in full or quick mode."""
    if dataset == "binary":
        if quick:
            data = DataConfig(source="binary", foreground=0.05, size=32, train_samples=8,
                              val_samples=2)
            return data, Recipe(batch_size=4, steps=6, eval_every=3, warmup_steps=2,
                                threads=args.threads), 4
        data = DataConfig(source="binary", foreground=0.05, size=64)
        return data, Recipe(batch_size=16, steps=300, eval_every=25, threads=args.threads), 32
    data = DataConfig(source="isbi", root=str(args.isbi_root), size=32 if quick else 128)
    if quick:
        return data, Recipe(batch_size=2, steps=6, eval_every=3, warmup_steps=2,
                            threads=args.threads, val_images=1), 4
    return data, Recipe(batch_size=8, steps=300, eval_every=50, threads=args.threads), 32


def time_to_threshold(run: dict) -> dict:
    """The first evaluation with foreground IoU >= THRESHOLD (step, train seconds), and the
    best foreground IoU of the run."""
    best = max((e["metrics"]["fg_iou"] or 0.0) for e in run["curve"])
    for entry in run["curve"]:
        if (entry["metrics"]["fg_iou"] or 0.0) >= THRESHOLD:
            return {"reached": True, "step": entry["step"], "seconds": entry["train_wall_s"],
                    "best": best}
    return {"reached": False, "step": None, "seconds": None, "best": best}


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (dataset, loss): final and best foreground IoU over seeds, steps and
    seconds to THRESHOLD (mean over the seeds that reached it)."""
    rows = []
    for dataset in dict.fromkeys(run["dataset"] for run in runs):
        for name, _ in LOSSES:
            members = [r for r in runs if r["dataset"] == dataset
                       and r["contender"]["name"] == name]
            if not members:
                continue
            finals = [r["final"]["fg_iou"] or 0.0 for r in members]
            hits = [time_to_threshold(r) for r in members]
            reached = [h for h in hits if h["reached"]]
            rows.append({
                "dataset": dataset, "loss": name, "seeds": len(members),
                "final_fg_iou_mean": sum(finals) / len(finals), "final_fg_iou_min": min(finals),
                "final_fg_iou_max": max(finals),
                "best_fg_iou_mean": sum(h["best"] for h in hits) / len(hits),
                "reached": f"{len(reached)}/{len(hits)}",
                "steps_to_threshold": (sum(h["step"] for h in reached) / len(reached)
                                       if reached else None),
                "seconds_to_threshold": (sum(h["seconds"] for h in reached) / len(reached)
                                         if reached else None),
                "step_wall_s": sum(r["step_wall_s"] for r in members) / len(members)})
    return rows


def table(rows: list[dict]) -> str:
    header = ["dataset", "loss", "seeds", "final fg IoU mean [min, max]", "best fg IoU",
              f"reached {THRESHOLD}", "steps to it", "train s to it", "s/step"]
    return markdown_table(header, [[
        r["dataset"], r["loss"], r["seeds"],
        f"{fmt(r['final_fg_iou_mean'])} [{fmt(r['final_fg_iou_min'])}, "
        f"{fmt(r['final_fg_iou_max'])}]", r["best_fg_iou_mean"], r["reached"],
        fmt(r["steps_to_threshold"], 0), fmt(r["seconds_to_threshold"], 1), r["step_wall_s"],
    ] for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("loss", __doc__, DATASETS)
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps per run on every dataset (default: the mode's)")
    args = parser.parse_args(argv)
    datasets = chosen_datasets(args, DATASETS)
    seeds = args.seeds or (1 if args.quick else 3)
    started, runs, data_info = time.perf_counter(), [], {}
    results = {"study": "loss", "mode": "quick" if args.quick else "full",
               "command": " ".join(sys.argv),
               "overrides": {"seeds": args.seeds, "steps": args.steps, "precision": args.precision,
                             "datasets": args.datasets},
               "threshold": THRESHOLD, "data": data_info,
               "runs": runs}
    for dataset in datasets:
        config, recipe, base = setup(dataset, args.quick, args)
        recipe = replace(recipe, precision=args.precision, steps=args.steps or recipe.steps)
        data, data_info[dataset] = load_data(config, scored="test")
        for seed in range(seeds):
            for name, loss in LOSSES:
                contender = Contender(name, "unet", loss, base=base)
                _, run = train_contender(contender, data, recipe, seed)
                runs.append({"dataset": dataset, **run})
                print(f"{dataset} {name} seed {seed}: fg IoU {fmt(run['final']['fg_iou'])} "
                      f"after {run['steps']} steps", flush=True)
                results["machine"] = machine()
                write_json(args.out / "results.json", results)   # kept if a later run fails
    rows = summarise(runs)
    write_results(args.out, results, rows, started)
    plot_curves(runs, "fg_iou", args.out / "fg_iou.png",
                "Foreground IoU: BCE vs BCE+Dice (mean, min-max over seeds)")
    write_summary(args.out, results, table(rows), charts=(args.out / "fg_iou.png",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
