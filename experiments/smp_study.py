"""Library study: our U-Net against smp's Unet(resnet34) and MONAI's BasicUNet, same loop.

Question: trained the same way for the same CPU time, how does our from-scratch U-Net compare
with segmentation_models_pytorch's ``Unet("resnet34", encoder_weights=None)`` (random
weights: nothing is downloaded) and MONAI's ``BasicUNet(spatial_dims=2)``? Ours runs twice:
the classic configuration (base 32, bilinear) and the network of the ``isbi`` recipe (base
16, transposed convolutions: a quarter of the work a step). And on CamVid,
which classes gain most when our U-Net trains with CE + Dice instead of CE alone?

Datasets: ``isbi`` (ISBI-2012: membrane IoU, pixel error = 1 - pixel accuracy, mIoU) and
``camvid`` (SegNet's CamVid, 11 classes, void ignored, the validation split: per-class IoU and
mIoU). All contenders train with CE + Dice in the shared loop of `common` (same batches,
AdamW at lr 3e-3, warm-up + cosine over the budget, fp32, one thread) for the same budget of
process CPU seconds; validation images are whole, padded to a multiple of 32 (smp needs it;
CamVid's 480 x 360 becomes 480 x 384) with the logits cropped back. Then our U-Net once more
on CamVid with CE alone.

The ISBI table gives each contender's final scores as the mean over seeds with their [min,
max], and its time-to-accuracy: how many seeds reached membrane IoU `ISBI_TARGET` and their
mean CPU seconds to the first evaluation that did, and the best membrane IoU evaluated within
half the budget.

Full mode (defaults): 1 seed (``--seeds``); isbi: 256 px crops, batch 4, 600 CPU seconds
per contender, evaluated every 100 steps on the 6 whole validation slices; camvid: 256 px
crops, batch 4, 900 CPU seconds per contender, evaluated every 200 steps on the first 25 of
the 101 validation images and at the end on all 101 (``--camvid-val all`` evaluates all 101
every time). ``--seconds S`` changes the budget of every dataset. ``--precision bf16`` trains
every contender through unetseg's fast path (channels_last, bf16 autocast) instead of plain
fp32: what a user of ``unetseg train`` gets where bf16 is faster, given to all alike.
``--quick``: 32 px crops, batch 2, half a CPU second per contender, one validation image,
base-8 U-Net.

Needs segmentation_models_pytorch, which only ``.venv-exp`` has; without it the script says
so and exits with status 2, unless ``--skip-smp`` leaves smp out. ``--resume`` keeps the runs
already in ``--out``'s results.json and trains only the missing (dataset, contender, seed)
runs, so a stopped study, or one to which a contender was added, can be finished.

    .venv-exp/bin/python experiments/smp_study.py [--quick] [--out DIR] [--skip-smp] [--resume]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, so experiments/ is on sys.path and its modules import by name.
from common import (
    Contender,
    Recipe,
    chosen_datasets,
    evaluate,
    load_data,
    machine,
    smp_missing,
    study_parser,
    train_contender,
)
from reporting import fmt, markdown_table, plot_curves, write_json, write_results, write_summary

from unetseg.config import DataConfig

DATASETS = ("isbi", "camvid")
OURS, SMP, MONAI, OURS_CE = "ours U-Net", "smp Unet r34", "MONAI BasicUNet", "ours U-Net CE"
OURS_SMALL = "ours U-Net b16 T"          # the isbi recipe's network: base 16, transposed
CAMVID_EVAL_IMAGES = 25          # evaluated during a full CamVid run; all 101 at the end
# Time-to-accuracy on ISBI: CPU seconds to the first evaluation at this membrane IoU, and the
# best membrane IoU evaluated within half the budget. 0.65 is about where every contender's
# curve flattened in the one-seed study (final values 0.657-0.680), so reaching it early is
# what "faster" means here.
ISBI_TARGET = 0.65


def contenders(base: int, skip_smp: bool) -> list[Contender]:
    chosen = [Contender(OURS, "unet", "ce_dice", base=base),
              Contender(OURS_SMALL, "unet", "ce_dice", base=base // 2, upsample="transpose")]
    if not skip_smp:
        chosen.append(Contender(SMP, "smp", "ce_dice"))
    return chosen + [Contender(MONAI, "monai", "ce_dice")]


def setup(dataset: str, args) -> tuple[DataConfig, Recipe, int]:
    """(data, recipe, U-Net base) of one dataset in full or quick mode."""
    root = args.isbi_root if dataset == "isbi" else args.camvid_root
    if args.quick:
        return DataConfig(source=dataset, root=str(root), size=32), Recipe(
            batch_size=2, seconds=0.5, eval_every=10**6, warmup_steps=2,
            threads=args.threads, val_images=1), 8
    if dataset == "isbi":
        return DataConfig(source="isbi", root=str(root), size=256), Recipe(
            batch_size=4, seconds=600.0, eval_every=100, threads=args.threads), 32
    val_images = None if args.camvid_val == "all" else CAMVID_EVAL_IMAGES
    return DataConfig(source="camvid", root=str(root), size=256), Recipe(
        batch_size=4, seconds=900.0, eval_every=200, threads=args.threads,
        val_images=val_images), 32


def train_all(dataset: str, args, seeds: int, results: dict) -> None:
    """Every contender on one dataset, every seed (CamVid adds our U-Net with CE alone)."""
    config, recipe, base = setup(dataset, args)
    if args.seconds:
        recipe = replace(recipe, seconds=args.seconds)
    recipe = replace(recipe, precision=args.precision)
    data, results["data"][dataset] = load_data(config)
    chosen = contenders(base, args.skip_smp)
    if dataset == "camvid":
        chosen.append(Contender(OURS_CE, "unet", "ce", base=base))
    done = {(run["dataset"], run["contender"]["name"], run["seed"]) for run in results["runs"]}
    for seed in range(seeds):
        for contender in chosen:
            if (dataset, contender.name, seed) in done:
                continue                                    # kept from the results resumed
            model, run = train_contender(contender, data, recipe, seed)
            if recipe.val_images is not None and not args.quick:
                # The curve used a subset; the final scores are over the whole split.
                run["final"] = evaluate(model, data.val, data.spec.num_classes,
                                        data.spec.ignore_index, list(data.spec.class_names),
                                        False)
                run["final_val_images"] = len(data.val)
            results["runs"].append({"dataset": dataset, **run})
            print(f"{dataset} {contender.name} seed {seed}: mIoU {fmt(run['final']['miou'])} "
                  f"after {run['steps']} steps", flush=True)
            results["machine"] = machine()
            write_json(args.out / "results.json", results)     # kept if a later run fails
            del model


def resumed(path: Path, fresh: dict) -> tuple[dict, float]:
    """The results to continue from ``path`` (runs, data, commands) and their wall seconds;
    SystemExit naming the file when it is missing or was made in another mode or budget."""
    if not path.is_file():
        raise SystemExit(f"smp_study: --resume needs {path} from an earlier run")
    earlier = json.loads(path.read_text())
    made = earlier.get("overrides", {})
    # Results from before --precision existed were all trained in fp32.
    if (earlier.get("mode"), made.get("seconds"), made.get("precision", "fp32")) != (
            fresh["mode"], fresh["overrides"]["seconds"], fresh["overrides"]["precision"]):
        raise SystemExit(f"smp_study: {path} was made with mode {earlier.get('mode')!r}, "
                         f"--seconds {made.get('seconds')} and --precision "
                         f"{made.get('precision', 'fp32')}; resume it with the same ones")
    commands = earlier.get("commands", [earlier["command"]])
    kept = {"data": earlier["data"], "runs": earlier["runs"],
            "commands": [*commands, fresh["command"]]}
    if "machine" in earlier:          # where the kept runs were measured, until one trains here
        kept["machine"] = earlier["machine"]
    return {**fresh, **kept}, earlier.get("wall_s", 0.0)


def mean_final(runs: list[dict], getter) -> float | None:
    return spread(runs, getter)["mean"]


def seconds_to(run: dict, getter, target: float) -> float | None:
    """Training CPU seconds at the first evaluation whose metric reached ``target``; None if
    none did."""
    for entry in run["curve"]:
        value = getter(entry["metrics"])
        if value is not None and value >= target:
            return entry["train_cpu_s"]
    return None


def best_within(run: dict, getter, seconds: float) -> float | None:
    """The best metric among the evaluations made within ``seconds`` of training CPU time."""
    values = [getter(entry["metrics"]) for entry in run["curve"]
              if entry["train_cpu_s"] <= seconds]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def spread(members: list[dict], getter) -> dict[str, float | None]:
    """Mean, min and max over seeds of a final score (an absent class is left out)."""
    values = [v for v in (getter(r["final"]) for r in members) if v is not None]
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}


def time_to_accuracy(members: list[dict]) -> dict:
    """ISBI's time-to-accuracy columns: how many seeds reached `ISBI_TARGET` membrane IoU and
    their mean CPU seconds to it, and the mean best membrane IoU within half the budget."""
    def membrane(metrics):
        return metrics["iou"]["membrane"]

    hits = [s for s in (seconds_to(r, membrane, ISBI_TARGET) for r in members) if s is not None]
    halves = [best_within(r, membrane, r["recipe"]["seconds"] / 2) for r in members]
    halves = [h for h in halves if h is not None]
    return {"reached_target": f"{len(hits)}/{len(members)}",
            "cpu_s_to_target": statistics.mean(hits) if hits else None,
            "best_membrane_half_budget": statistics.mean(halves) if halves else None}


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (dataset, contender): means over seeds of the final scores, the spread of
    mIoU (and of membrane IoU on ISBI), and on ISBI the time-to-accuracy columns."""
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for name in dict.fromkeys(r["contender"]["name"] for r in runs
                                  if r["dataset"] == dataset):
            members = [r for r in runs if r["dataset"] == dataset
                       and r["contender"]["name"] == name]
            miou = spread(members, lambda f: f["miou"])
            row = {"dataset": dataset, "contender": name, "seeds": len(members),
                   "params": members[0]["params"],
                   "steps": statistics.mean(r["steps"] for r in members),
                   "step_wall_s": statistics.mean(r["step_wall_s"] for r in members),
                   "miou": miou["mean"], "miou_min": miou["min"], "miou_max": miou["max"],
                   "pixel_error": mean_final(members, lambda f: f["pixel_error"])}
            for cls in members[0]["final"]["iou"]:
                row[f"iou_{cls}"] = mean_final(members, lambda f, c=cls: f["iou"][c])
            if dataset == "isbi":
                membrane = spread(members, lambda f: f["iou"]["membrane"])
                row.update(iou_membrane_min=membrane["min"], iou_membrane_max=membrane["max"],
                           **time_to_accuracy(members))
            rows.append(row)
    return rows


def with_range(row: dict, key: str) -> str:
    """``mean [min, max]`` of a summary value over seeds; the mean alone for one seed."""
    if row["seeds"] == 1:
        return fmt(row[key])
    return f"{fmt(row[key])} [{fmt(row[key + '_min'])}, {fmt(row[key + '_max'])}]"


def tables(rows: list[dict], classes: dict[str, list[str]]) -> str:
    """ISBI's table, CamVid's per-class table (contenders side by side), and CE vs CE + Dice."""
    parts = []
    isbi = [r for r in rows if r["dataset"] == "isbi"]
    if isbi:
        parts.append("ISBI-2012 (validation slices; means over seeds, [min, max])\n\n"
                     + markdown_table(
            ["contender", "seeds", "params", "steps", "s/step", "membrane IoU", "pixel error",
             "mIoU", f"reached {ISBI_TARGET}", "CPU s to it", "best within half"],
            [[r["contender"], r["seeds"], f"{r['params']:,}", fmt(r["steps"], 0),
              fmt(r["step_wall_s"]), with_range(r, "iou_membrane"), r["pixel_error"],
              with_range(r, "miou"), r["reached_target"], fmt(r["cpu_s_to_target"], 0),
              r["best_membrane_half_budget"]] for r in isbi]))
    camvid = [r for r in rows if r["dataset"] == "camvid"]
    if camvid:
        names = [r["contender"] for r in camvid]
        body = [[cls, *(r[f"iou_{cls}"] for r in camvid)] for cls in classes["camvid"]]
        body += [["**mIoU**", *(r["miou"] for r in camvid)],
                 ["steps", *(fmt(r["steps"], 0) for r in camvid)],
                 ["params", *(f"{r['params']:,}" for r in camvid)]]
        parts.append("CamVid (validation split), per-class IoU\n\n"
                     + markdown_table(["class", *names], body))
        by_name = {r["contender"]: r for r in camvid}
        if OURS in by_name and OURS_CE in by_name:
            ce, dice = by_name[OURS_CE], by_name[OURS]
            gains = [[cls, ce[f"iou_{cls}"], dice[f"iou_{cls}"],
                      None if None in (ce[f"iou_{cls}"], dice[f"iou_{cls}"])
                      else dice[f"iou_{cls}"] - ce[f"iou_{cls}"]] for cls in classes["camvid"]]
            gains.sort(key=lambda row: -(row[3] if row[3] is not None else -1e9))
            parts.append("CamVid, our U-Net: CE vs CE + Dice (sorted by gain)\n\n"
                         + markdown_table(["class", "CE", "CE+Dice", "gain"], gains))
    return "\n\n".join(parts)


def save_per_class_figure(path: Path, rows: list[dict], classes: list[str]) -> None:
    """CamVid's per-class IoU, one bar per contender in each class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    camvid = [r for r in rows if r["dataset"] == "camvid"]
    width = 0.8 / max(1, len(camvid))
    figure, axis = plt.subplots(figsize=(11, 3.8))
    for index, row in enumerate(camvid):
        values = [row[f"iou_{cls}"] or 0.0 for cls in classes]
        axis.bar([c + index * width for c in range(len(classes))], values, width,
                 label=f"{row['contender']} (mIoU {fmt(row['miou'])})")
    axis.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], classes, rotation=30)
    axis.set_ylabel("IoU")
    axis.set_title("CamVid validation: per-class IoU")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = study_parser("smp", __doc__, DATASETS, full_seeds=1)
    parser.add_argument("--skip-smp", action="store_true",
                        help="leave smp out (run our U-Net and MONAI only)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="CPU seconds of training per contender on every dataset "
                             "(default: the mode's)")
    parser.add_argument("--camvid-val", choices=("subset", "all"), default="subset",
                        help=f"CamVid images evaluated during a full run: the first "
                             f"{CAMVID_EVAL_IMAGES} (default) or all 101")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs in --out's results.json and train only the missing "
                             "ones (same mode and budget)")
    args = parser.parse_args(argv)
    missing = None if args.skip_smp else smp_missing()
    if missing:
        print(f"smp_study: segmentation_models_pytorch cannot be imported ({missing}); run "
              f"it with .venv-exp/bin/python (make exp-env builds it), or pass --skip-smp to "
              f"run only our U-Net and MONAI", file=sys.stderr)
        return 2
    datasets = chosen_datasets(args, DATASETS)
    seeds = args.seeds or 1
    started = time.perf_counter()
    results = {"study": "smp", "mode": "quick" if args.quick else "full",
               "command": " ".join(sys.argv),
               "overrides": {"seeds": args.seeds, "seconds": args.seconds,
                             "datasets": args.datasets, "precision": args.precision},
               "data": {}, "runs": []}
    if args.resume:
        results, earlier_wall_s = resumed(args.out / "results.json", results)
        started -= earlier_wall_s                 # wall_s covers every part of the study
    for dataset in datasets:
        train_all(dataset, args, seeds, results)
    rows = summarise(results["runs"])
    classes = {name: info["classes"] for name, info in results["data"].items()}
    write_results(args.out, results, rows, started)
    for dataset, metric in (("isbi", "iou/membrane"), ("camvid", "miou")):
        runs = [r for r in results["runs"] if r["dataset"] == dataset]
        if runs:
            plot_curves(runs, metric, args.out / f"curves_{dataset}.png",
                        f"{dataset}: {metric} against steps and training time",
                        clock="train_cpu_s")          # the budget is CPU seconds
    if "camvid" in classes:
        save_per_class_figure(args.out / "camvid_per_class.png", rows, classes["camvid"])
    write_summary(args.out, results, tables(rows, classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
