"""The `unetseg` command: argument parsing and printing only; the work lives in the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from . import picker
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig

__all__ = ["main", "build_parser"]

# Flags of `unetseg train`: (section, field, type, help). Defaults come from the dataclasses.
TRAIN_FLAGS = [
    ("data", "source", str, "synthetic (circles and squares), binary (objects on a "
                            "background), camvid, isbi, or a folder with images/ and masks/ "
                            "(or train/ and val/ folders holding them)"),
    ("data", "root", str, "dataset folder for --data camvid or isbi"),
    ("data", "val", str, "a separate validation folder (images/ + masks/)"),
    ("data", "spec", str, "dataset file (YAML/JSON: classes, colours, ignore_index, remap)"),
    ("data", "classes", str, "comma-separated class names, for a folder without a dataset file"),
    ("data", "size", int, "training crop side in pixels (the image side for synthetic data)"),
    ("data", "batch_size", int, "images per optimiser step"),
    ("data", "workers", int, "DataLoader worker processes"),
    ("data", "val_ratio", float, "share held out for validation when there is no val split"),
    ("data", "train_list", str, "split file naming the training images (one per line), "
                                "relative to the data folder"),
    ("data", "val_list", str, "split file naming the validation images"),
    ("data", "train_samples", int, "synthetic training images"),
    ("data", "val_samples", int, "synthetic validation images"),
    ("data", "foreground", float, "share of object pixels per image for --data binary"),
    ("data", "seed", int, "seed of the data: synthetic draws, the train/val split and the "
                          "augmentation"),
    ("data", "scale_min", float, "smallest random rescale before cropping"),
    ("data", "scale_max", float, "largest random rescale before cropping"),
    ("model", "base", int, "channels of the first U-Net level"),
    ("model", "depth", int, "number of down/up steps"),
    ("model", "upsample", str, "bilinear or transpose"),
    ("model", "norm", str, "batch, group, instance or none"),
    ("model", "dropout", float, "channel dropout on the bottleneck"),
    ("train", "out", str, "run folder (config, checkpoints, metrics, curves)"),
    ("train", "epochs", int, "passes over the training set"),
    ("train", "lr", float, "peak AdamW learning rate"),
    ("train", "weight_decay", float, "AdamW weight decay"),
    ("train", "schedule", str, "cosine (with linear warm-up) or onecycle"),
    ("train", "warmup_epochs", float, "length of the linear warm-up"),
    ("train", "loss", str, "ce_dice, ce, dice, or bce_dice (binary, one logit)"),
    ("train", "dice_weight", float, "weight of the Dice term"),
    ("train", "class_weights", str, "cross-entropy class weights: 'median' or 'w0,w1,...'"),
    ("train", "grad_clip", float, "max gradient norm (0 = no clipping)"),
    ("train", "precision", str, "auto, fp32, bf16 or fp16 (CUDA); auto = bf16 where native"),
    ("train", "seed", int, "seed of the initial weights, the shuffling and dropout"),
    ("train", "checkpoint_every", int, "also write the resume checkpoint every N batches "
                                       "(0 = once per epoch)"),
    ("train", "max_nonfinite", int, "stop after this many non-finite losses in a row (each "
                                    "is skipped)"),
    ("train", "patience", int, "stop after this many epochs without a better val mIoU (0 = off)"),
    ("train", "device", str, "cpu, cuda, cuda:1, ... (default: CUDA if available)"),
]
# What a resumed run may change: when and how long it runs, not what it trains.
RESUMABLE_CHANGES = {"train.epochs", "train.patience", "train.progress", "train.device",
                     "train.max_nonfinite", "train.checkpoint_every", "train.tensorboard"}
# Flags not spelt like their field.
FLAG_NAMES = {("data", "source"): "--data", ("data", "seed"): "--data-seed"}
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _default(section: str, name: str):
    return {f.name: f.default for f in fields(SECTIONS[section])}[name]


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with data/model/train sections; flags "
                                         "given on the command line override it (default: "
                                         "none)")
    for section, name, kind, text in TRAIN_FLAGS:
        flag = FLAG_NAMES.get((section, name), "--" + name.replace("_", "-"))
        parser.add_argument(flag, dest=f"{section}.{name}", type=kind, default=argparse.SUPPRESS,
                            metavar=name.upper(),
                            help=f"{text} (default: {_default(section, name)})")
    parser.add_argument("--skip-bad", dest="data.skip_bad", action="store_true",
                        default=argparse.SUPPRESS, help="leave out unreadable or inconsistent "
                        "image/mask pairs and list them (default: stop at the first, naming it)")
    parser.add_argument("--no-augment", dest="data.augment", action="store_false",
                        default=argparse.SUPPRESS, help="train without augmentation (default: "
                                                       "random scale, crop, flips, rotations, "
                                                       "brightness/contrast)")
    parser.add_argument("--no-channels-last", dest="train.channels_last", action="store_false",
                        default=argparse.SUPPRESS, help="keep the NCHW memory layout (default: "
                                                        "channels_last, faster on CPU and GPU)")
    parser.add_argument("--tensorboard", dest="train.tensorboard", action="store_true",
                        default=argparse.SUPPRESS, help="also log to TensorBoard in RUN_DIR/"
                                                        "tensorboard, if installed (default: off)")
    parser.add_argument("--quiet", dest="train.progress", action="store_false",
                        default=argparse.SUPPRESS, help="no progress bars (default: shown)")
    parser.add_argument("--sync-batchnorm", dest="train.sync_batchnorm", action="store_true",
                        default=argparse.SUPPRESS, help="with several processes, BatchNorm "
                        "statistics over the global batch (default: per process)")
    parser.add_argument("--nproc", type=int, default=1, help="train with this many processes "
                        "on this machine through torchrun (DDP; gloo on CPU, NCCL on GPUs); "
                        "--batch-size stays the global batch (default: 1)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from "
                                                           "its last checkpoint, with its "
                                                           "config (default: a new run)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Defaults, then the run's or the YAML file's settings, then the flags given."""
    values: dict = {"data": {}, "model": {}, "train": {}}
    if getattr(args, "resume", None):
        values = RunConfig.from_yaml(Path(args.resume) / "config.yaml").to_dict()
    elif args.config:
        values = RunConfig.from_yaml(args.config).to_dict()
    resuming = bool(getattr(args, "resume", None))
    for key, value in vars(args).items():
        if "." in key and key != "argv":
            if resuming and key not in RESUMABLE_CHANGES:
                raise ValueError(f"--{key.split('.')[1].replace('_', '-')} cannot change when "
                                 f"resuming (the checkpoint was trained with the run's "
                                 f"config.yaml); only {', '.join(sorted(RESUMABLE_CHANGES))} "
                                 f"may")
            section, name = key.split(".")
            if name == "classes":
                value = tuple(v.strip() for v in value.split(","))
            values.setdefault(section, {})[name] = value
    if getattr(args, "resume", None):
        values["train"]["out"] = args.resume
    return RunConfig.from_dict(values)


def _relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """``unetseg train --nproc N ...`` becomes ``torchrun --standalone --nproc_per_node N -m
    unetseg train ...``: PyTorch's own launcher starts the processes and their rendezvous. The
    launcher replaces this process, so SIGTERM and Ctrl-C reach it, and through it every rank."""
    import os

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
    import os

    from .train import fit

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc, args.argv)
    config = config_from_args(args)
    result = fit(config, resume=bool(args.resume))
    print(f"best validation mIoU {result.best_miou:.4f} at epoch {result.best_epoch}; "
          f"run in {result.run_dir}")
    return 0


def _print_evaluation(evaluation, class_names) -> None:
    from .report import format_table

    rows = sorted(evaluation.rows(class_names), key=lambda r: (r["iou"] != r["iou"], r["iou"]))
    print(format_table(rows, ["iou", "dice", "precision", "recall", "bf1", "share"]))
    scores = evaluation.scores
    print(f"mIoU {scores.miou:.4f}   mDice {scores.mdice:.4f}   "
          f"pixel accuracy {scores.pixel_accuracy:.4f}   mean BF1 "
          f"{evaluation.mean_boundary_f1:.4f}")


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "evaluation"
    overrides = {"source": args.data, "root": args.root, "val": args.val, "spec": args.spec}
    result = evaluate_checkpoint(args.checkpoint, out, args.split,
                                 {k: v for k, v in overrides.items() if v is not None})
    _print_evaluation(result.evaluation, result.class_names)
    _print_inspection(result.inspection, out)
    print(f"wrote {out / 'evaluation.json'} and {out / 'confusion.png'}")
    return 0


def _print_inspection(inspection, out: Path) -> None:
    from .inspection_report import inspection_table

    print()
    print("Why each class scores as it does (the mask inspector):")
    print(inspection_table(inspection))
    print(f"report: {out / 'report.html'} (numbers in report.json)")


def _inspect(args: argparse.Namespace) -> int:
    from .inspection_jobs import inspect_checkpoint, inspect_folders

    out = Path(args.out)
    if args.checkpoint:
        if args.pred or args.truth:
            raise ValueError("give either a checkpoint or --pred and --truth, not both")
        overrides = {"source": args.data, "root": args.root, "val": args.val}
        inspection = inspect_checkpoint(args.checkpoint, out,
                                        {k: v for k, v in overrides.items() if v is not None},
                                        args.split, args.tile or None)
    elif args.pred and args.truth:
        inspection = inspect_folders(args.pred, args.truth, out, args.classes, args.images)
    else:
        raise ValueError("give a checkpoint to predict and inspect, or --pred DIR and --truth "
                         "DIR of masks")
    _print_inspection(inspection, out)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(out=args.out, epochs=args.epochs, base=args.base, progress=not args.quiet)
    print()
    print("Held-out synthetic images (seeds never seen in training or model selection):")
    _print_evaluation(result.evaluation, result.class_names)
    print(f"overlays (image | truth | prediction) in {result.run_dir / 'overlays'}")
    _print_inspection(result.inspection, result.run_dir)
    print(f"total {result.seconds:.0f} s")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .export import load_predictor
    from .prediction import PredictOptions, predict_files

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetseg",
                                     description="Semantic segmentation with a U-Net.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a U-Net and evaluate it every epoch")
    _add_train_flags(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint over a dataset split")
    evaluate.add_argument("checkpoint", help="a .safetensors checkpoint (best or last)")
    evaluate.add_argument("--data", help="data source (default: the one it was trained on)")
    evaluate.add_argument("--root", help="dataset folder for --data camvid or isbi "
                                         "(default: the training run's)")
    evaluate.add_argument("--val", help="validation folder for a folder source "
                                        "(default: the training run's)")
    evaluate.add_argument("--spec", help="dataset file for a folder source "
                                         "(default: the training run's)")
    evaluate.add_argument("--split", default="val", help="val or train (default: val)")
    evaluate.add_argument("--out", help="folder for evaluation.json and confusion.png "
                                        "(default: evaluation/ beside the checkpoint)")
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
    inspect.add_argument("checkpoint", nargs="?", help="a checkpoint: predict its data split "
                                                       "and inspect (default: none; then give "
                                                       "--pred and --truth)")
    inspect.add_argument("--pred", help="folder of predicted masks (default: none)")
    inspect.add_argument("--truth", help="folder of true masks, matched by stem (default: none)")
    inspect.add_argument("--classes", help="dataset file (YAML/JSON) or comma-separated names "
                                           "(default: class 0, class 1, ...)")
    inspect.add_argument("--images", help="folder of the images, for the worst-images section "
                                          "(default: none)")
    inspect.add_argument("--data", help="with a checkpoint: data source (default: the one it "
                                        "was trained on)")
    inspect.add_argument("--root", help="dataset folder for camvid or isbi (default: the "
                                        "training run's)")
    inspect.add_argument("--val", help="validation folder (default: the training run's)")
    inspect.add_argument("--split", default="val", help="val or train (default: val)")
    inspect.add_argument("--tile", type=int, default=0, help="with a checkpoint: predict in "
                                                              "tiles of this side; 0 = whole "
                                                              "images (default: 0)")
    inspect.add_argument("--out", required=True, help="folder for report.html and report.json "
                                                      "(default: none, required)")
    inspect.set_defaults(run=_inspect)

    pick = commands.add_parser("pick", help="which segmentation task and architecture fit your "
                                            "problem (asks what the flags leave out)")
    picker.add_arguments(pick)
    pick.set_defaults(run=lambda args: picker.run(args))

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
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        # Bad input (data, config, checkpoint) and a failing disk are reported plainly, naming
        # the file; bugs keep their traceback.
        print(f"unetseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from .train import TrainingDiverged, TrainingInterrupted

        if isinstance(error, TrainingInterrupted):
            print(f"unetseg {args.command}: {error}", file=sys.stderr)
            return 128 + error.signal           # the shell's convention for a signal
        if not isinstance(error, TrainingDiverged):
            raise
        print(f"unetseg {args.command}: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
