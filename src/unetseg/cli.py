"""The `unetseg` command: argument parsing and printing only; the work lives in the library.

`main` is also the one place that tunes the process (the C allocator, see
`runtime.tune_malloc`): library calls leave process-wide state as they found it. The flags of
``unetseg train`` are generated from the configuration dataclasses (`unetseg.config`), so the
help, the defaults and the YAML keys are the same thing. Nothing heavy is imported before a
command needs it: ``unetseg pick`` never imports torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TextIO

from .picker import BUDGETS, CONTENTS, DOMAINS, OUTPUTS, Needs, Recommendation, recommend

__all__ = ["main", "build_parser", "config_from_args", "add_pick_arguments", "run_pick"]

# What a resumed run may change: when, where and how long it runs, not what it trains.
RESUMABLE_CHANGES = {"train.epochs", "train.patience", "train.progress", "train.device",
                     "train.max_nonfinite", "train.checkpoint_every", "train.tensorboard",
                     "data.workers"}
# Commands whose work is numerical, for which the allocator is tuned (see tune_malloc).
COMPUTE_COMMANDS = ("train", "evaluate", "predict", "inspect", "export", "demo", "check")


# --- unetseg train ------------------------------------------------------------------------------

def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per configuration field that has help text, with its default in the help."""
    from .config import SECTIONS

    parser.add_argument("--config", help="YAML file with data/model/train sections; flags "
                                         "given on the command line override it (default: "
                                         "none)")
    for section in SECTIONS:
        _add_config_flags(parser, section)
    parser.add_argument("--nproc", type=int, default=1, help="train with this many processes "
                        "on this machine through torchrun (DDP; gloo on CPU, NCCL on GPUs); "
                        "--batch-size stays the global batch (default: 1)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from "
                                                           "its last checkpoint, with its "
                                                           "config (default: a new run)")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in an --out "
                        "folder that holds files, replacing the run files there (default: "
                        "refuse)")


def _add_config_flags(parser: argparse.ArgumentParser, section: str,
                      only: tuple[str, ...] | None = None) -> None:
    """The flags of one configuration section (or of its fields ``only``), generated from the
    dataclass: help and flag from each field's metadata, the default from the field."""
    from .config import SECTIONS, cli_fields, flag_of

    config_class = SECTIONS[section]
    for item in cli_fields(config_class):
        if only is not None and item.name not in only:
            continue
        default = item.default
        options = {"dest": f"{section}.{item.name}", "default": argparse.SUPPRESS}
        if isinstance(default, bool):          # a switch that flips the default
            options["action"] = "store_false" if default else "store_true"
            text = item.metadata["help"] + ("" if "(default:" in item.metadata["help"]
                                            else " (default: off)")
        else:
            options.update(type=_flag_type(item.type), metavar=item.name.upper())
            text = f"{item.metadata['help']} (default: {default})"
        parser.add_argument(flag_of(config_class, item.name), help=text, **options)


def _flag_type(annotation: str) -> Callable[[str], object]:
    """The parser of a field's value from its annotation (``int``, ``float | None``, ...);
    anything else (class names, paths) stays a string."""
    base = str(annotation).split("|")[0].strip()
    return {"int": int, "float": float}.get(base, str)


def config_from_args(args: argparse.Namespace):
    """Defaults, then the run's or the YAML file's settings, then the flags given.

    With ``--resume`` the base is the run's own config.yaml: the command that started the run
    can be repeated with ``--resume RUN`` added, since flags equal to the recorded values are
    accepted; a flag that would change what is trained is refused by its command-line name.
    """
    from .config import RunConfig

    resuming = bool(getattr(args, "resume", None))
    if resuming:
        recorded = RunConfig.from_yaml(Path(args.resume) / "config.yaml")
        values = recorded.to_dict()
    else:
        values = RunConfig.from_yaml(args.config).to_dict() if args.config else {}
    given = {key: value for key, value in vars(args).items() if "." in key}
    for key, value in given.items():
        section, name = key.split(".")
        values.setdefault(section, {})[name] = value
    if resuming:
        _check_resumed_flags(given, recorded, RunConfig.from_dict(values), Path(args.resume))
        values["train"]["out"] = args.resume
    return RunConfig.from_dict(values)


def _check_resumed_flags(given: dict, recorded, requested, run: Path) -> None:
    from .config import SECTIONS, flag_of

    changed = []
    for key in given:
        section, name = key.split(".")
        before = getattr(getattr(recorded, section), name)
        after = getattr(getattr(requested, section), name)
        if key == "train.out":
            if Path(after).resolve() != run.resolve():
                raise ValueError(f"--out {after} and --resume {run} name different runs; "
                                 f"drop --out")
        elif after != before and key not in RESUMABLE_CHANGES:
            changed.append(f"{flag_of(SECTIONS[section], name)} (recorded {before!r}, "
                           f"given {after!r})")
    if changed:
        allowed = sorted(flag_of(SECTIONS[k.split('.')[0]], k.split('.')[1])
                         for k in RESUMABLE_CHANGES)
        raise ValueError(f"{', '.join(changed)} cannot change when resuming (the checkpoint "
                         f"was trained with {run / 'config.yaml'}); only {', '.join(allowed)} "
                         f"may")


def _relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """``unetseg train --nproc N ...`` becomes ``torchrun --standalone --nproc_per_node N -m
    unetseg train ...``: PyTorch's own launcher starts the processes and their rendezvous. The
    launcher replaces this process, so SIGTERM and Ctrl-C reach it, and through it every rank."""
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            rest.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "unetseg", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 0                                   # not reached: execv does not return


def _train(args: argparse.Namespace) -> int:
    from .train import fit

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc, args.argv)
    result = fit(config_from_args(args), resume=bool(args.resume), overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":          # under torchrun, one final line
        print(f"best validation mIoU {result.best_miou:.4f} at epoch {result.best_epoch}; "
              f"run in {result.run_dir}")
    return 0


# --- evaluate, inspect, demo, predict, export ---------------------------------------------------

def _print_evaluation(evaluation, class_names, images: int) -> None:
    from .report.tables import format_table

    rows = sorted(evaluation.rows(class_names), key=lambda r: (r["iou"] != r["iou"], r["iou"]))
    print(format_table(rows, ["iou", "dice", "precision", "recall", "bf1", "share"]))
    scores = evaluation.scores
    print(f"mIoU {scores.miou:.4f}   mDice {scores.mdice:.4f}   "
          f"pixel accuracy {scores.pixel_accuracy:.4f}   mean BF1 "
          f"{evaluation.mean_boundary_f1:.4f}   over {images} images")


def _print_inspection(inspection, out: Path) -> None:
    from .report.tables import inspection_table

    print()
    print("Why each class scores as it does (the mask inspector):")
    print(inspection_table(inspection))
    print(f"report: {out / 'report.html'} (numbers in report.json)")


def _data_overrides(args: argparse.Namespace) -> dict:
    """The data flags of evaluate and inspect, as `DataConfig` fields (None: the run's)."""
    return {"source": args.data, "root": args.root, "val": args.val, "spec": args.spec}


def _evaluate(args: argparse.Namespace) -> int:
    from .jobs.evaluate import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "evaluation"
    scored = evaluate_checkpoint(args.checkpoint, out, args.split, _data_overrides(args),
                                 args.device, progress=not args.quiet,
                                 overwrite=args.overwrite)
    _print_evaluation(scored.evaluation, scored.class_names, scored.images)
    _print_inspection(scored.inspection, out)
    print(f"wrote {out / 'evaluation.json'} and {out / 'confusion.png'}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .jobs.inspect import inspect_checkpoint, inspect_folders

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


def _demo(args: argparse.Namespace) -> int:
    from .jobs.demo import run_demo

    result = run_demo(out=args.out, epochs=args.epochs, base=args.base, progress=not args.quiet)
    scored = result.scored
    print()
    print("Held-out synthetic images (seeds never seen in training or model selection):")
    _print_evaluation(scored.evaluation, scored.class_names, scored.images)
    print(f"overlays (image | truth | prediction) in {result.run_dir / 'overlays'}")
    _print_inspection(scored.inspection, result.run_dir)
    print(f"total {result.seconds:.0f} s")
    return 0


# The data flags of `unetseg check`: where the data is and how it splits, as in `train`.
CHECK_FIELDS = ("root", "val", "spec", "classes", "val_ratio", "train_list", "val_list", "seed",
                "skip_bad")


def _check(args: argparse.Namespace) -> int:
    import json

    from .config import DataConfig
    from .files import atomic_write_text
    from .jobs.check import check_data, format_report

    settings = {name: getattr(args, f"data.{name}") for name in CHECK_FIELDS
                if hasattr(args, f"data.{name}")}
    report = check_data(DataConfig(source=args.data, **settings), progress=not args.quiet,
                        strict=args.strict)
    print(format_report(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2))
    return report.status


def _predict(args: argparse.Namespace) -> int:
    from .export import load_predictor
    from .jobs.predict import PredictOptions, predict_files

    predictor = load_predictor(args.model, args.device)
    options = PredictOptions(tile=args.tile or None, overlap=args.overlap, blend=args.blend,
                             batch_size=args.batch_size, tta=args.tta, precision=args.precision,
                             probs=args.probs, overwrite=args.overwrite, progress=not args.quiet)
    report = predict_files(predictor, args.inputs, args.out, options)
    print(f"wrote {len(report.written)} file(s) and summary.json into {args.out}")
    for path, reason in report.failed.items():
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    path = export_onnx(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0


# --- unetseg pick: the dialogue around `picker.recommend` ---------------------------------------

# Needs field -> (question, allowed answers; None for a whole number >= 1).
QUESTIONS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "output": ("Do you need one label per pixel, separate objects, or both?", OUTPUTS),
    "content": ("Are the targets countable things, amorphous stuff, or both?", CONTENTS),
    "domain": ("Which domain?", DOMAINS),
    "images": ("How many labelled images do you have?", None),
    "budget": ("Latency or memory budget at prediction time?", BUDGETS),
    "image_size": ("Typical image size (long side, pixels)?", None),
}


def _pick_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _count(text: str) -> int | None:
    """``text`` as a whole number >= 1 ("5000", "5,000" and "5_000" alike), else None."""
    digits = text.replace(",", "").replace("_", "").strip()
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


def _positive_int(text: str) -> int:
    value = _count(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return value


def add_pick_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `unetseg pick`, one per `Needs` field; a flag left out is asked for."""
    parser.add_argument("--output", choices=OUTPUTS, help="one label per pixel (labels), "
                        "separate objects, or both (default: ask)")
    parser.add_argument("--content", choices=CONTENTS, help="countable things, amorphous "
                        "stuff, or both (default: ask)")
    parser.add_argument("--domain", choices=DOMAINS, help="the images' domain (default: ask)")
    parser.add_argument("--images", type=_positive_int, metavar="N",
                        help="number of labelled images (default: ask)")
    parser.add_argument("--budget", choices=BUDGETS, help="latency or memory budget at "
                        "prediction time; tight = edge device or CPU (default: ask)")
    parser.add_argument("--image-size", type=_positive_int, dest="image_size", metavar="N",
                        help="typical long side of the images in pixels (default: ask)")


def _ask(name: str, input_fn: Callable[[str], str], out: TextIO) -> str | int:
    """Ask for field ``name`` until the answer is allowed; EOFError propagates."""
    question, allowed = QUESTIONS[name]
    prompt = f"{question} [{'/'.join(allowed)}] " if allowed else f"{question} "
    while True:
        answer = input_fn(prompt).strip().lower()
        if allowed is None and _count(answer) is not None:
            return _count(answer)
        if allowed is not None and answer in allowed:
            return answer
        expected = f"one of {', '.join(allowed)}" if allowed else "a whole number >= 1"
        print(f"  please answer {expected} (found {answer!r})", file=out)


def _print_recommendation(answer: Recommendation, out: TextIO) -> None:
    also = f" (alternatives: {', '.join(answer.alternatives)})" if answer.alternatives else ""
    print(f"task:          {answer.task} segmentation", file=out)
    print(f"architecture:  {answer.architecture}{also}", file=out)
    print(f"in unetseg:    {'yes' if answer.covered else 'no'}", file=out)
    print("why:", file=out)
    for reason in answer.reasons:
        print(f"  - {reason}", file=out)
    print(f"next step:     {answer.next_step}", file=out)


def run_pick(args: argparse.Namespace, input_fn: Callable[[str], str] | None = None,
        out: TextIO | None = None) -> int:
    """Ask for what the flags left out, then print the recommendation to ``out`` (default: the
    current ``sys.stdout``, looked up at the call so redirection works); the exit status.

    Questions go through ``input_fn`` when given, else through `input` when stdin is a
    terminal. With neither, a missing flag cannot be asked: the missing flags are named on
    stderr and the status is 2, as it is when the input ends before every answer.
    """
    out = sys.stdout if out is None else out
    values = {f.name: getattr(args, f.name, None) for f in fields(Needs)}
    missing = [name for name, value in values.items() if value is None]
    if missing and input_fn is None:
        if not sys.stdin.isatty():
            print(f"unetseg pick: stdin is not a terminal, so the questions cannot be asked; "
                  f"give {', '.join(_pick_flag(name) for name in missing)}", file=sys.stderr)
            return 2
        input_fn = input
    for name in missing:
        try:
            values[name] = _ask(name, input_fn, out)
        except EOFError:
            print(f"\nunetseg pick: input ended before an answer for {_pick_flag(name)}",
                  file=sys.stderr)
            return 2
    _print_recommendation(recommend(Needs(**values)), out)
    return 0


# --- the parser ---------------------------------------------------------------------------------

def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Which data a checkpoint is scored on: by default the split it was trained with."""
    parser.add_argument("--data", help="data source (default: the one it was trained on)")
    parser.add_argument("--root", help="dataset folder for --data camvid or isbi "
                                       "(default: the training run's)")
    parser.add_argument("--val", help="validation folder for a folder source "
                                      "(default: the training run's)")
    parser.add_argument("--spec", help="dataset file for a folder source "
                                       "(default: the training run's)")
    parser.add_argument("--split", choices=["train", "val", "all", "test"],
                        help="the run's train or val images, all of them, or for synthetic data "
                             "test, a fresh draw (default: val; all for a folder given with "
                             "--data)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars "
                                                             "(default: shown)")
    parser.add_argument("--overwrite", action="store_true", help="replace the reports in --out "
                                                                 "(default: refuse)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, the flags of ``unetseg train`` (generated
    from the configuration, which imports torch) are added only when it is ``train``."""
    parser = argparse.ArgumentParser(prog="unetseg",
                                     description="Semantic segmentation with a U-Net.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a U-Net and evaluate it every epoch")
    if command in (None, "train"):
        _add_train_flags(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint over a dataset split")
    evaluate.add_argument("checkpoint", help="a .safetensors checkpoint (best or last)")
    _add_data_flags(evaluate)
    evaluate.add_argument("--out", help="folder for evaluation.json, confusion.png and the "
                                        "report (default: evaluation/ beside the checkpoint)")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="segment images of any size with a "
                                                  "checkpoint or an exported .onnx model")
    predict.add_argument("model", help="a .safetensors checkpoint or an .onnx model from "
                                       "`unetseg export` (default: none, required)")
    predict.add_argument("inputs", nargs="+", help="image files, folders or glob patterns "
                                                   "(default: none, required)")
    predict.add_argument("--out", required=True, help="output folder for masks, overlays and "
                                                      "summary.json (default: none, required)")
    predict.add_argument("--tile", type=int, default=256,
                         help="tile side in pixels; 0 = whole image at once (default: 256)")
    predict.add_argument("--overlap", type=float, default=0.25,
                         help="share of each tile overlapping its neighbour (default: 0.25)")
    predict.add_argument("--blend", default="gaussian", choices=["gaussian", "constant"],
                         help="tile weighting (default: gaussian)")
    predict.add_argument("--batch-size", type=int, default=4,
                         help="tiles per forward pass (default: 4)")
    predict.add_argument("--tta", action="store_true",
                         help="average over flips, 4x slower (default: off)")
    predict.add_argument("--probs", action="store_true",
                         help="also write float16 probabilities as NAME_probs.npy (default: off)")
    predict.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                         help="auto = bf16 where the hardware has it natively (default: auto)")
    predict.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs (default: refuse)")
    predict.add_argument("--quiet", action="store_true",
                         help="no progress bars (default: shown)")
    predict.set_defaults(run=_predict)

    inspect = commands.add_parser("inspect", help="why each class scores as it does: numbers, "
                                                  "verdicts and an HTML report")
    inspect.add_argument("checkpoint", nargs="?", help="a checkpoint: score its data split as "
                                                       "`unetseg evaluate` does and inspect "
                                                       "(default: none; then give --pred and "
                                                       "--truth)")
    inspect.add_argument("--pred", help="folder of predicted masks, class indices (a `unetseg "
                                        "predict` output folder works as is) (default: none)")
    inspect.add_argument("--truth", help="folder of true masks, matched by stem (default: none)")
    inspect.add_argument("--classes", help="dataset file (YAML/JSON) or comma-separated names; "
                                           "its colours and remap apply to --truth masks only "
                                           "(default: class 0, class 1, ...)")
    inspect.add_argument("--images", help="folder of the images, for the worst-images section "
                                          "(default: none)")
    _add_data_flags(inspect)
    inspect.add_argument("--out", required=True, help="folder for report.html and report.json "
                                                      "(default: none, required)")
    inspect.set_defaults(run=_inspect)

    check = commands.add_parser("check", help="the data doctor: classes, mask values, ignored "
                                              "pixels, sizes, unpaired files, near-duplicates "
                                              "across train and val, and every warning")
    check.add_argument("data", help="synthetic, binary, camvid, isbi, or a folder with images/ "
                                    "and masks/ (default: none, required)")
    if command in (None, "check"):
        _add_config_flags(check, "data", CHECK_FIELDS)
    check.add_argument("--strict", action="store_true", help="count warnings as errors: exit "
                                                             "2 instead of 1 (default: off)")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON "
                                                      "(default: none)")
    check.add_argument("--quiet", action="store_true", help="no progress bars "
                                                            "(default: shown)")
    check.set_defaults(run=_check)

    pick = commands.add_parser("pick", help="which segmentation task and architecture fit your "
                                            "problem (asks what the flags leave out)")
    add_pick_arguments(pick)
    pick.set_defaults(run=lambda args: run_pick(args))

    export = commands.add_parser("export", help="export a checkpoint to ONNX")
    export.add_argument("checkpoint", help="a .safetensors checkpoint (default: none, required)")
    export.add_argument("--format", default="onnx", choices=["onnx"],
                        help="export format (default: onnx)")
    export.add_argument("--out", required=True, help="the .onnx file to write "
                                                     "(default: none, required)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing file (default: refuse)")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo", help="train on synthetic shapes, score held-out shapes, "
                                            "write overlays")
    demo.add_argument("--out", default="runs/demo",
                      help="run folder; a numbered sibling if it exists (default: runs/demo)")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    demo.add_argument("--base", type=int, default=16, help="U-Net base channels (default: 16)")
    demo.add_argument("--quiet", action="store_true",
                      help="no progress bars (default: shown)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    args.argv = argv
    if args.command in COMPUTE_COMMANDS:
        from .runtime import tune_malloc

        tune_malloc()
    try:
        return args.run(args)
    except KeyboardInterrupt as error:
        # predict stops cleanly at the first Ctrl-C and says what it kept; a second Ctrl-C (or
        # one elsewhere) aborts, and the message says what is kept.
        kept = {"train": "the run keeps its last checkpoint; unetseg train --resume RUN "
                         "continues from it",
                "predict": "finished images are written and listed in summary.json"}
        said = str(error) or "aborted" + (f"; {kept[args.command]}" if args.command in kept
                                          else "")
        print(f"\nunetseg {args.command}: {said}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        # Bad input (data, config, checkpoint) and a failing disk are reported plainly, naming
        # the file; bugs keep their traceback.
        print(f"unetseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from .signals import TrainingInterrupted
        from .train import TrainingDiverged

        if isinstance(error, TrainingInterrupted):
            print(f"unetseg {args.command}: {error}", file=sys.stderr)
            return 128 + error.signal           # the shell's convention for a signal
        if not isinstance(error, TrainingDiverged):
            raise
        print(f"unetseg {args.command}: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
