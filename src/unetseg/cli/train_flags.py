"""``unetseg train`` on the command line: its flags, generated from the configuration
dataclasses (`unetseg.config`), so the help, the defaults and the YAML keys are one thing; the
layers of settings and ``--resume``, by the rules `unetseg.config` owns; and the relaunch under
torchrun for ``--nproc``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_train_flags", "add_config_flags", "config_from_args", "train_command"]


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per configuration field that has help text, with its default in the help."""
    from ..config import SECTIONS

    parser.add_argument("--config", help="YAML file with data/model/train sections; flags "
                                         "given on the command line override it (default: "
                                         "none)")
    for section in SECTIONS:
        add_config_flags(parser, section)
    parser.add_argument("--recipe", default="auto", help="settings measured to train a good "
                        "model fastest on a kind of data (unetseg.recipes): auto = the data's "
                        "own (isbi and camvid have one), none = the classic defaults, or a name; a "
                        "--config file and flags given override it (default: auto)")
    parser.add_argument("--nproc", type=int, default=1, help="train with this many processes "
                        "on this machine through torchrun (DDP; gloo on CPU, NCCL on GPUs); "
                        "--batch-size stays the global batch (default: 1)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from "
                                                           "its last checkpoint, with its "
                                                           "config (default: a new run)")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in an --out "
                        "folder that holds files, replacing the run files there (default: "
                        "refuse)")


def add_config_flags(parser: argparse.ArgumentParser, section: str,
                      only: tuple[str, ...] | None = None) -> None:
    """The flags of one configuration section (or of its fields ``only``), generated from the
    dataclass: help and flag from each field's metadata, the default from the field."""
    from ..config import SECTIONS, cli_fields, flag_of

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
    """Defaults, then the recipe (`unetseg.recipes`), then the YAML file's settings, then the
    flags given; or, resuming, the run's own settings, then the flags given.

    With ``--resume`` the base is the run's own config.yaml: the command that started the run
    can be repeated with ``--resume RUN`` added, since flags equal to the recorded values are
    accepted; a flag that would change what is trained is refused by its command-line name.
    """
    return _configure(args)[0]


def _configure(args: argparse.Namespace):
    """`config_from_args`'s configuration, with the recipe it started from: ``(config, recipe
    name or None, recipe settings)``; no recipe when resuming (the run's own file is the base)."""
    from ..config import RunConfig, layered_settings
    from ..rundir import load_run_config

    flags: dict = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = value
    if not getattr(args, "resume", None):
        from_file = _file_settings(args)
        recipe_name, recipe = chosen_recipe(args, from_file)
        values = layered_settings(recipe, from_file, flags)
        return RunConfig.from_dict(values), recipe_name, recipe
    run = Path(args.resume)
    recorded = load_run_config(run)
    given_out = flags.get("train", {}).get("out")
    if given_out is not None and Path(given_out).resolve() != run.resolve():
        raise ValueError(f"--out {given_out} and --resume {run} name different runs; drop --out")
    values = layered_settings({}, recorded.to_dict(), flags)     # no recipe: the run's own
    values["train"]["out"] = args.resume
    return RunConfig.from_dict(values), None, {}     # `fit` checks what may change


def _file_settings(args: argparse.Namespace) -> dict:
    """The ``--config`` file's settings as written (no defaults filled in), checked as a run
    configuration, with errors naming the file."""
    from ..config import RunConfig, read_config_file

    if not args.config:
        return {}
    values = read_config_file(args.config)
    RunConfig.from_dict(values, str(args.config))
    return values


def chosen_recipe(args: argparse.Namespace, from_file: dict):
    """``(name or None, settings)`` of the recipe ``--recipe`` picks for the run's data
    source: the flag's, else the ``--config`` file's (``from_file``), else the default."""
    from ..config import DataConfig
    from ..recipes import recipe_for

    source = (getattr(args, "data.source", None)
              or (from_file.get("data") or {}).get("source") or DataConfig.source)
    return recipe_for(getattr(args, "recipe", "auto"), source)


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


def train_command(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..recipes import describe
    from ..train import fit

    if args.nproc < 1:
        raise ValueError(f"--nproc must be a whole number >= 1, found {args.nproc}")
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        return _relaunch_with_torchrun(args.nproc, args.argv)
    config, recipe_name, recipe = _configure(args)
    main_process = distributed.is_main_process()        # under torchrun, one log
    if recipe_name and main_process:
        print(describe(recipe_name, recipe, config), flush=True)
    try:
        result = fit(config, resume=bool(args.resume), overwrite=args.overwrite)
    except KeyboardInterrupt:                 # a second Ctrl-C: say where the run is kept
        raise KeyboardInterrupt(_what_an_abort_keeps(Path(config.train.out))) from None
    if main_process:
        print(f"best validation mIoU {result.best_miou:.4f} at epoch {result.best_epoch}; "
              f"run in {result.run_dir}\n"
              f"(best.safetensors was chosen on these validation images, so their score flatters "
              f"it; `unetseg evaluate` with --split test or --data FOLDER scores held-out data)")
    return 0


def _what_an_abort_keeps(run: Path) -> str:
    if (run / "last.safetensors").is_file():
        return (f"aborted; {run} keeps its last checkpoint: unetseg train --resume {run} "
                f"continues from it")
    return f"aborted before the first checkpoint; {run} holds nothing to resume"
