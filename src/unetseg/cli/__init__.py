"""The `unetseg` command: argument parsing and printing only; the work lives in the library.

`main` is also the one place that tunes the process (the C allocator, see
`allocator.tune_malloc`): library calls leave process-wide state as they found it. Nothing heavy
is imported before a command needs it: ``unetseg pick`` never imports torch.

- `train_flags`: ``unetseg train``'s flags, generated from the configuration, and ``--resume``;
- `commands`: evaluate, inspect, check, predict, export and demo: run the job, print;
- `pick_dialogue`: the questions of ``unetseg pick``;
- here: the parser and `main`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .commands import (
    CHECK_FIELDS,
    PLAN_FIELDS,
    calibrate_command,
    check_command,
    demo_command,
    evaluate_command,
    export_command,
    inspect_command,
    plan_command,
    predict_command,
    suggest_command,
)
from .pick_dialogue import add_pick_arguments, run_pick
from .train_flags import add_config_flags, add_train_flags, config_from_args, train_command

__all__ = ["main", "build_parser", "config_from_args", "add_pick_arguments", "run_pick"]

# Commands whose work is numerical, for which the allocator is tuned (see tune_malloc).
COMPUTE_COMMANDS = ("train", "evaluate", "predict", "inspect", "export", "demo", "check",
                    "plan", "suggest", "calibrate")


# --- the parser ---------------------------------------------------------------------------------

def _tile(text: str) -> int | str:
    """``--tile``: ``auto`` or a whole number (0: whole images); the range is checked with
    the other prediction options."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number of pixels, found "
                                         f"{text!r}") from None


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    """Which data a checkpoint reads: by default the data it was trained on."""
    parser.add_argument("--data", help="data source (default: the one it was trained on)")
    parser.add_argument("--root", help="dataset folder for --data camvid or isbi "
                                       "(default: the training run's)")
    parser.add_argument("--val", help="validation folder for a folder source "
                                      "(default: the training run's)")
    parser.add_argument("--spec", help="dataset file for a folder source "
                                       "(default: the training run's)")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Which data a checkpoint is scored on: by default the split it was trained with."""
    _add_source_flags(parser)
    parser.add_argument("--split", choices=["train", "val", "all", "test"],
                        help="the run's train or val images, all of them, or test: CamVid's "
                             "held-out test/ + testannot/, ISBI's slices 24-29, a folder's "
                             "test/ beside its train/, or a fresh synthetic draw (default: val; "
                             "for another folder given with --data, its test/ or all of it)")
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
        add_train_flags(train)
    train.set_defaults(run=train_command)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint over a dataset split")
    evaluate.add_argument("checkpoint", help="a .safetensors checkpoint (best or last)")
    _add_data_flags(evaluate)
    evaluate.add_argument("--out", help="folder for evaluation.json, confusion.png and the "
                                        "report (default: evaluation/ beside the checkpoint)")
    evaluate.add_argument("--no-inspect", dest="inspect", action="store_false",
                          help="scores only, without the mask inspector and its report "
                               "(default: inspect; about 80 ms an image at 480 x 360)")
    evaluate.set_defaults(run=evaluate_command)

    predict = commands.add_parser("predict", help="segment images of any size with a "
                                                  "checkpoint or an exported .onnx model")
    predict.add_argument("model", help="a .safetensors checkpoint or an .onnx model from "
                                       "`unetseg export` (default: none, required)")
    predict.add_argument("inputs", nargs="+", help="image files, folders or glob patterns "
                                                   "(default: none, required)")
    predict.add_argument("--out", required=True, help="output folder for masks, overlays and "
                                                      "summary.json (default: none, required)")
    predict.add_argument("--tile", type=_tile, default="auto",
                         help="tile side in pixels; 0 = whole image at once; auto = the side "
                              "of the model's training crops, at least 256 (default: auto)")
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
    predict.add_argument("--confidence", action="store_true",
                         help="also write the calibrated top-class probability per pixel as an "
                         "8-bit grey NAME_confidence.png, 255 = 1 (default: off)")
    predict.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                         help="auto = bf16 on GPUs; on a CPU with native bf16 the faster of "
                         "bf16 and fp32, measured once and cached (default: auto)")
    predict.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    predict.add_argument("--max-pixels", type=int,
                         help="refuse larger images, from their header, before decoding them "
                              "(default: 268435456, 16384 x 16384)")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs (default: refuse)")
    predict.add_argument("--quiet", action="store_true",
                         help="no progress bars (default: shown)")
    predict.set_defaults(run=predict_command)

    calibrate = commands.add_parser("calibrate", help="fit a checkpoint's temperature on its "
                                                      "validation split (training does it)")
    calibrate.add_argument("checkpoint", help="a .safetensors checkpoint (default: none, "
                                              "required)")
    calibrate.add_argument("--out", help="write the calibrated checkpoint here (default: "
                                         "record it in the checkpoint itself)")
    _add_source_flags(calibrate)
    calibrate.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    calibrate.set_defaults(run=calibrate_command)

    suggest = commands.add_parser("suggest", help="which unlabelled images to label next, "
                                                  "ranked by the model's uncertainty")
    suggest.add_argument("checkpoint", help="a .safetensors checkpoint (default: none, "
                                            "required)")
    suggest.add_argument("folder", help="a folder of unlabelled images, any size (default: "
                                        "none, required)")
    suggest.add_argument("--n", type=int, default=20,
                         help="how many images to suggest (default: 20)")
    suggest.add_argument("--out", default="suggest",
                         help="folder for suggest.csv, suggest.png and suggest.html "
                              "(default: suggest)")
    suggest.add_argument("--tile", type=_tile, default="auto",
                         help="tile side in pixels, as for predict (default: auto)")
    suggest.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    suggest.add_argument("--overwrite", action="store_true",
                         help="replace existing outputs (default: refuse)")
    suggest.add_argument("--quiet", action="store_true", help="no progress bar (default: "
                                                              "shown)")
    suggest.set_defaults(run=suggest_command)

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
    inspect.set_defaults(run=inspect_command)

    check = commands.add_parser("check", help="the data doctor: classes, mask values, ignored "
                                              "pixels, sizes, unpaired files, near-duplicates "
                                              "across train and val, and every warning")
    check.add_argument("data", help="synthetic, binary, camvid, isbi, or a folder with images/ "
                                    "and masks/ (default: none, required)")
    if command in (None, "check"):
        add_config_flags(check, "data", CHECK_FIELDS)
    check.add_argument("--strict", action="store_true", help="count warnings as errors: exit "
                                                             "2 instead of 1 (default: off)")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON; never "
                                                      "inside the data's folders (default: "
                                                      "none)")
    check.add_argument("--overwrite", action="store_true",
                       help="replace an existing --json file (default: refuse)")
    check.add_argument("--quiet", action="store_true", help="no progress bars "
                                                            "(default: shown)")
    check.set_defaults(run=check_command)

    plan = commands.add_parser("plan", help="plan a training configuration from the data, "
                                            "this machine and a time budget, each decision "
                                            "with its reason")
    plan.add_argument("data", help="a folder with images/ and masks/ (or train/ and val/), "
                                   "camvid or isbi (default: none, required)")
    if command in (None, "plan"):
        add_config_flags(plan, "data", PLAN_FIELDS)
    plan.add_argument("--time-budget", type=float, metavar="MIN",
                      help="minutes of training to plan for (default: 15)")
    plan.add_argument("--device", help="where the steps are timed and the run will train: "
                                       "cpu, cuda, ... (default: cpu)")
    plan.add_argument("--out", metavar="FILE", help="also write the plan as a --config file "
                                                    "for unetseg train (default: none)")
    plan.add_argument("--overwrite", action="store_true",
                      help="replace an existing --out file (default: refuse)")
    plan.add_argument("--quiet", action="store_true", help="no progress bars "
                                                           "(default: shown)")
    plan.set_defaults(run=plan_command)

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
    export.set_defaults(run=export_command)

    demo = commands.add_parser("demo", help="train on synthetic shapes, score held-out shapes, "
                                            "write overlays")
    demo.add_argument("--out", default="runs/demo",
                      help="run folder; a numbered sibling if it exists (default: runs/demo)")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    demo.add_argument("--base", type=int, default=16, help="U-Net base channels (default: 16)")
    demo.add_argument("--quiet", action="store_true",
                      help="no progress bars (default: shown)")
    demo.set_defaults(run=demo_command)
    return parser


class _Stdout(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stdout`` is when a record comes (a test's
    capture, a redirected log), not to the stream it saw when it was made."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _print_the_library_log() -> None:
    """Print the library's log (the ``unetseg`` logger: what training and the jobs report) on
    standard output, plain, from rank 0 only under torchrun. Library calls log and print
    nothing themselves; the command line owns stdout. Installed once per process."""
    logger = logging.getLogger("unetseg")
    if any(isinstance(handler, _Stdout) for handler in logger.handlers):
        return
    from ..distributed import MainProcessOnly

    handler = _Stdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(MainProcessOnly())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    args.argv = argv
    if args.command in COMPUTE_COMMANDS:               # (pick imports no torch)
        from ..allocator import tune_malloc

        tune_malloc()
        _print_the_library_log()
    try:
        return args.run(args)
    except KeyboardInterrupt as error:
        # predict stops cleanly at the first Ctrl-C and says what it kept; a second Ctrl-C (or
        # one elsewhere) aborts, and the message says what is kept.
        # (train and predict raise it saying what they kept: the run folder, the images)
        kept = {"predict": "finished images are written and listed in summary.json"}
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
        from ..interrupts import TrainingInterrupted
        from ..train import TrainingDiverged

        if isinstance(error, TrainingInterrupted):
            print(f"unetseg {args.command}: {error}", file=sys.stderr)
            return 128 + error.signal           # the shell's convention for a signal
        if not isinstance(error, TrainingDiverged):
            raise
        print(f"unetseg {args.command}: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
