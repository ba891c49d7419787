"""``unetseg train`` on the command line: its flags, generated from the configuration
dataclasses (`unetseg.config`), so the help, the defaults and the YAML keys are one thing; the
layers of settings and ``--resume``, by the rules `unetseg.config` owns; and the relaunch under
torchrun for ``--nproc``."""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--recipe", help=argparse.SUPPRESS)   # retired: `RETIRED_RECIPE` says why
    parser.add_argument("--plan", default="auto", metavar="auto|none|FILE", help="plan the "
                        "configuration of a folder's run from its data, this machine and "
                        "--time-budget (unetseg plan: every decision with its reason), or use "
                        "a plan file that `unetseg plan --out` wrote; none = the classic "
                        "defaults (the seed's). A --config file and flags override single "
                        "decisions (default: auto)")
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
    """Defaults, then the plan (`--plan`), then the YAML file's settings, then the flags given;
    or, resuming, the run's own settings, then the flags given.

    With ``--resume`` the base is the run's own config.yaml: the command that started the run
    can be repeated with ``--resume RUN`` added, since flags equal to the recorded values are
    accepted; a flag that would change what is trained is refused by its command-line name.
    """
    return _configure(args)[0]


def _configure(args: argparse.Namespace):
    """`config_from_args`'s configuration and the plan it started from: ``(config, plan or
    None)``; no plan when resuming (the run's own file is the base, and its plan is never made
    again)."""
    from ..config import RunConfig, layered_settings
    from ..rundir import load_run_config

    flags: dict = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = value
    if getattr(args, "recipe", None) is not None:
        raise ValueError(RETIRED_RECIPE.format(name=args.recipe))
    if not getattr(args, "resume", None):
        from_file = _file_settings(args)
        plan = _plan(args, from_file, flags)
        values = layered_settings(plan.settings() if plan else {}, from_file, flags)
        return RunConfig.from_dict(values), plan
    run = Path(args.resume)
    recorded = load_run_config(run)
    given_out = flags.get("train", {}).get("out")
    if given_out is not None and Path(given_out).resolve() != run.resolve():
        raise ValueError(f"--out {given_out} and --resume {run} name different runs; drop --out")
    values = layered_settings({}, recorded.to_dict(), flags)     # no plan: the run's own
    values["train"]["out"] = args.resume
    return RunConfig.from_dict(values), None     # `fit` checks what may change


# `--recipe` named hand-made settings for camvid and isbi. The plan reached them on held-out
# images (docs/planning.md), so every dataset, those two included, is now planned from its data;
# the flag stays only to say so to someone who still types it.
RETIRED_RECIPE = ("--recipe {name}: the hand recipes were retired; train plans every dataset's "
                  "run from its data, camvid and isbi included (docs/planning.md scores the "
                  "plan beside them). --plan none gives the classic settings; a recipe's "
                  "settings, as a --config file, are in the repository's experiments/recipes/")


# How `train --nproc N` hands its plan to the ranks torchrun starts: made once, before the
# relaunch, so that every rank trains the same configuration.
PLAN_VARIABLE = "UNETSEG_PLAN"


def _plan(args: argparse.Namespace, from_file: dict, flags: dict):
    """The plan under the file's and the flags' settings (`--plan`), or None: ``none``, or
    data that cannot be planned (drawn data, another architecture)."""
    from .. import distributed
    from ..config import RunConfig, layered_settings
    from ..planner import Plan
    from ..runtime import pick_device

    choice = getattr(args, "plan", "none")
    if choice == "none":
        return None
    if distributed.launched_by_torchrun() and os.environ.get(PLAN_VARIABLE):
        return Plan.from_record(json.loads(os.environ[PLAN_VARIABLE]))      # --nproc's plan
    if choice != "auto":
        return Plan.from_file(choice)
    from ..jobs.plan import plan_data, plannable

    given = RunConfig.from_dict(layered_settings({}, from_file, flags))
    if plannable(given):
        return None            # drawn shapes or another architecture: the classic defaults
    if distributed.launched_by_torchrun():
        raise ValueError("--plan auto under torchrun: each rank would time the machine and "
                         "could plan differently; plan once (unetseg plan DATA --out "
                         "plan.yaml) and pass --plan plan.yaml, or use unetseg train --nproc N")
    return plan_data(given, given.train.time_budget or None, pick_device(given.train.device),
                     progress=given.train.progress)


def _file_settings(args: argparse.Namespace) -> dict:
    """The ``--config`` file's settings as written (no defaults filled in), checked as a run
    configuration, with errors naming the file."""
    from ..config import RunConfig, read_config_file

    if not args.config:
        return {}
    values = read_config_file(args.config)
    RunConfig.from_dict(values, str(args.config))
    return values


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
    from ..train import fit

    if args.nproc < 1:
        raise ValueError(f"--nproc must be a whole number >= 1, found {args.nproc}")
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        plan = _configure(args)[1]               # planned once, here, for every rank
        if plan is not None:
            os.environ[PLAN_VARIABLE] = json.dumps(plan.record())
        return _relaunch_with_torchrun(args.nproc, args.argv)
    config, plan = _configure(args)
    main_process = distributed.is_main_process()        # under torchrun, one log
    if plan is not None and main_process:
        print(plan.table(replaced=_replaced(plan, config)), flush=True)
    try:
        result = fit(config, resume=bool(args.resume), overwrite=args.overwrite,
                     plan=plan.record() if plan else None)
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


def _replaced(plan, config) -> dict:
    """The plan's decisions a --config file or a flag replaced: setting -> the value used."""
    values = config.to_dict()
    used = {}
    for decision in plan.decisions:
        section, name = decision.setting.split(".")
        value = values[section][name]
        planned = list(decision.value) if isinstance(decision.value, tuple) else decision.value
        if value != planned:
            used[decision.setting] = value
    return used
