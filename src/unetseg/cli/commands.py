"""The other commands' handlers: call the job, print what it found. Each imports its job when
it runs, so ``unetseg --help`` loads none of them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["evaluate_command", "inspect_command", "demo_command", "check_command",
           "predict_command", "export_command", "plan_command", "suggest_command",
           "calibrate_command",
           "CHECK_FIELDS", "PLAN_FIELDS"]


def _print_evaluation(scored) -> None:
    from ..report.tables import format_table

    evaluation, class_names, images, split = (scored.evaluation, scored.class_names,
                                              scored.images, scored.split)
    rows = sorted(evaluation.rows(class_names), key=lambda r: (r["iou"] != r["iou"], r["iou"]))
    calibrated = ["ece", "ece_after"] if evaluation.calibration is not None else []
    print(format_table(rows, ["iou", "dice", "precision", "recall", "bf1", "share",
                              *calibrated]))
    scores = evaluation.scores
    print(f"mIoU {scores.miou:.4f}   mDice {scores.mdice:.4f}   "
          f"pixel accuracy {scores.pixel_accuracy:.4f}   mean BF1 "
          f"{evaluation.mean_boundary_f1:.4f}   over {images} images")
    print(f"(split {split}; {evaluation.ignored_share:.1%} of the pixels ignored)")
    if evaluation.calibration is not None:
        temperature, before, after = evaluation.calibration
        print(f"calibration error (ECE, 15 bins) {before.ece:.4f}"
              + _temperature_note(temperature, after.ece, scored.calibration))


def _temperature_note(temperature: float, ece_after: float, fit: dict | None) -> str:
    """Why the probabilities are (or are not) divided by a temperature: one fitted and
    applied, one fitted and not applied (it did not carry over between halves of the
    validation images), or none ever fitted."""
    if temperature != 1.0:
        return (f", {ece_after:.4f} after temperature scaling (T = {temperature:.4g}, fitted "
                f"on the validation split)")
    if fit is None:
        return (" (no temperature fitted: a checkpoint from before calibration; "
                "`unetseg calibrate` fits one)")
    fitted = fit.get("fitted_temperature")
    named = f", T = {fitted:.4g}," if fitted is not None else ""
    return (f" (no temperature applied: the one fitted{named} did not carry over between "
            f"halves of the validation images)")


def _print_inspection(inspection, out: Path) -> None:
    from ..report.tables import inspection_table

    print()
    print("Why each class scores as it does (the mask inspector):")
    print(inspection_table(inspection))
    print(f"report: {out / 'report.html'} (numbers in report.json)")


def _data_overrides(args: argparse.Namespace) -> dict:
    """The data flags of evaluate and inspect, as `DataConfig` fields (None: the run's)."""
    return {"source": args.data, "root": args.root, "val": args.val, "spec": args.spec}


def evaluate_command(args: argparse.Namespace) -> int:
    from ..jobs.evaluate import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "evaluation"
    scored = evaluate_checkpoint(args.checkpoint, out, args.split, _data_overrides(args),
                                 args.device, progress=not args.quiet,
                                 overwrite=args.overwrite, inspect=args.inspect)
    for notice in getattr(scored.dataset, "notices", []):     # how the masks were read
        print(notice)
    _print_evaluation(scored)
    if args.inspect:
        _print_inspection(scored.inspection, out)
    print(f"wrote {out / 'evaluation.json'} and {out / 'confusion.png'}")
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    from ..jobs.calibrate import calibrate_checkpoint

    fitted = calibrate_checkpoint(args.checkpoint, args.out, _data_overrides(args), args.device)
    print(fitted.describe())
    print(f"recorded in {args.out or args.checkpoint}")
    return 0


def suggest_command(args: argparse.Namespace) -> int:
    from ..jobs.suggest import suggest_images

    ordered = suggest_images(args.checkpoint, args.folder, args.out, args.n,
                             args.tile or None, args.device, args.overwrite,
                             progress=not args.quiet)
    chosen = [s for s in ordered if s.rank is not None]
    left_out = sum(s.duplicate_of is not None for s in ordered)
    print(f"label these {len(chosen)} of {len(ordered)} images first (most useful first):")
    for s in chosen:
        print(f"{s.rank:>4}  {s.path}  score {s.score:.4f}  mean entropy {s.mean_entropy:.4f}")
    if left_out:
        print(f"({left_out} near-duplicate(s) of a suggestion left out: see suggest.csv)")
    print(f"wrote {Path(args.out) / 'suggest.csv'}, suggest.png and suggest.html")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    from ..jobs.inspect import inspect_checkpoint, inspect_folders

    out = Path(args.out)
    if args.checkpoint and (args.pred or args.truth):
        raise ValueError("give either a checkpoint or --pred and --truth, not both")
    if args.checkpoint:
        inspection = inspect_checkpoint(args.checkpoint, out, args.split,
                                        _data_overrides(args), args.device,
                                        progress=not args.quiet, overwrite=args.overwrite)
    elif args.pred and args.truth:
        inspection = inspect_folders(args.pred, args.truth, out, args.classes, args.images,
                                     overwrite=args.overwrite)
    else:
        raise ValueError("give a checkpoint to score and inspect, or --pred DIR and --truth "
                         "DIR of masks")
    _print_inspection(inspection, out)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from ..jobs.demo import run_demo

    result = run_demo(out=args.out, epochs=args.epochs, base=args.base, progress=not args.quiet)
    scored = result.scored
    print()
    print("Held-out synthetic images (seeds never seen in training or model selection):")
    _print_evaluation(scored)
    print(f"overlays (image | truth | prediction) in {result.run_dir / 'overlays'}")
    _print_inspection(scored.inspection, result.run_dir)
    print(f"total {result.seconds:.0f} s")
    return 0


# The data flags of `unetseg check`: where the data is and how it splits, as in `train`.
CHECK_FIELDS = ("root", "val", "spec", "classes", "val_ratio", "train_list", "val_list", "seed",
                "skip_bad")
# `unetseg plan` reads the data as `check` does, but a plan of a folder with bad pairs is none.
PLAN_FIELDS = tuple(name for name in CHECK_FIELDS if name != "skip_bad")


def check_command(args: argparse.Namespace) -> int:
    from ..config import DataConfig
    from ..jobs.check import check_data, claim_report_file, format_report, write_report

    settings = {name: getattr(args, f"data.{name}") for name in CHECK_FIELDS
                if hasattr(args, f"data.{name}")}
    config = DataConfig(source=args.data, **settings)
    # Refused before the data is read, not after minutes of reading it.
    json_path = claim_report_file(args.json, config, args.overwrite) if args.json else None
    report = check_data(config, progress=not args.quiet, strict=args.strict)
    print(format_report(report))
    if json_path is not None:
        write_report(report, json_path)
    return report.status


def predict_command(args: argparse.Namespace) -> int:
    from ..export import load_predictor
    from ..jobs.predict import PredictOptions, predict_files

    predictor = load_predictor(args.model, args.device)
    options = PredictOptions(tile=args.tile or None, overlap=args.overlap, blend=args.blend,
                             batch_size=args.batch_size, tta=args.tta, precision=args.precision,
                             probs=args.probs, confidence=args.confidence,
                             overwrite=args.overwrite, progress=not args.quiet,
                             max_pixels=args.max_pixels)
    report = predict_files(predictor, args.inputs, args.out, options)
    print(f"wrote {len(report.written)} file(s) and summary.json into {args.out}")
    if report.skipped:
        names = ", ".join(Path(path).name for path in list(report.skipped)[:5])
        more = ", ..." if len(report.skipped) > 5 else ""
        print(f"skipped {len(report.skipped)} file(s) of the folders given, "
              f"{next(iter(report.skipped.values()))}: {names}{more}")
    for path, reason in report.failed.items():
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def export_command(args: argparse.Namespace) -> int:
    from ..export import export_onnx

    path = export_onnx(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    import torch

    from ..config import DataConfig, RunConfig
    from ..jobs.plan import plan_data, write_plan

    settings = {name: getattr(args, f"data.{name}") for name in PLAN_FIELDS
                if hasattr(args, f"data.{name}")}
    config = RunConfig(data=DataConfig(source=args.data, **settings))
    if args.out:                         # refused before the data is read and timed
        from ..outputs import claim_file

        claim_file(args.out, args.overwrite, "--out")
    device = torch.device(args.device) if args.device else torch.device("cpu")
    plan = plan_data(config, args.time_budget, device, progress=not args.quiet, announce=True)
    print(plan.table())
    if args.out:
        path = write_plan(plan, config, args.out, overwrite=args.overwrite)
        print(f"wrote {path}: unetseg train --config {path} trains it")
    return 0
