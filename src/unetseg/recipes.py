"""Training recipes: settings measured to reach good accuracy fastest on a kind of data.

The dataclass defaults of `unetseg.config` are the seed's classic configuration (64-pixel
crops, batch 16, a base-32 bilinear U-Net, lr 3e-3, 20 epochs). On a given dataset other
settings can reach a better model in less time; a recipe records them (docs/planning.md scores
each on held-out images beside the plan, the classic configuration and the peers).
``unetseg train --data isbi`` starts from the ``isbi`` recipe and ``--data camvid`` from
``camvid`` (``--recipe auto``, the default: the data source's recipe where it has one);
``--recipe none`` gives the classic defaults, and ``--recipe isbi`` applies it to any data,
such as your own EM slices. A ``--config`` file and the flags given
override a recipe's values.

A recipe is a partial configuration, ``{section: {field: value}}``, checked like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["RECIPES", "recipe_for", "describe"]

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # ISBI-2012 membranes, 512 x 512 slices (the search that chose it, on the validation
    # slices, is in docs/experiments.md as of commit 0c1b8ff; measured with 24 training
    # slices; since slices 24-29 became the held-out test block, 19 train and 5 validate).
    # 256-pixel crops in batches of 4 made 6 steps an epoch (4 now); a base-16 U-Net does a
    # quarter of the classic base 32's convolution work a step, with transposed convolutions
    # up; rescaling by 0.8-1.25 (not 0.5-2) keeps membranes near the width they have at test
    # time. The length is in steps, which any machine reproduces: 5,800 is what 30 minutes
    # held on the 2-core CPU. Validating every 25 epochs (150 steps then, 100 now) keeps
    # validation and checkpoint writes a small share.
    "isbi": {
        "data": {"size": 256, "batch_size": 4, "scale_min": 0.8, "scale_max": 1.25},
        "model": {"base": 16, "upsample": "transpose"},
        "train": {"lr": 1e-3, "max_steps": 5800, "val_every": 25},
    },
    # CamVid road scenes, 367 training images of 480 x 360, 11 classes, four of them under 1%
    # of the pixels. The isbi network (base 16, transposed) in batches of 8 of 256-pixel crops,
    # rescaled by 0.75-1.5; class weights in the cross-entropy, the square roots of median
    # frequency, so the thin and rare classes (pole, sign, pedestrian) are learnt at all
    # without starving the common ones: with the full median weights (0.14 for road to 15.4
    # for bicyclist) building's recall fell to 0.36 and the best val mIoU in 2 hours was
    # 0.498; with their square roots it was 0.573. 10,350 steps (230 epochs) is what 2 hours
    # held on the 2-core CPU; validating every 10 epochs costs about 3% of the time.
    "camvid": {
        "data": {"size": 256, "batch_size": 8, "scale_min": 0.75, "scale_max": 1.5},
        "model": {"base": 16, "upsample": "transpose"},
        "train": {"lr": 1e-3, "class_weights": "sqrt-median", "max_steps": 10350,
                  "val_every": 10},
    },
}


def recipe_for(name: str, source: str) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The recipe ``name`` picks for data ``source``: ``(name or None, partial config)``.

    ``auto`` is the source's own recipe (none for most sources), ``none`` is no recipe.
    """
    if name == "none" or (name == "auto" and source not in RECIPES):
        return None, {}
    chosen = source if name == "auto" else name
    if chosen not in RECIPES:
        raise ValueError(f"--recipe must be auto, none or one of {', '.join(sorted(RECIPES))}, "
                         f"found {name!r}")
    return chosen, RECIPES[chosen]


def describe(name: str, values: dict[str, dict[str, Any]], config: RunConfig | None = None) -> str:
    """The log's account of a recipe: one line with the flags it stands for, then, when the
    run's configuration (``config``) replaced any of its values, a second line with what the
    run uses instead, so the log never shows a recipe value the run did not use unremarked."""
    from .config import SECTIONS, flag_of

    flags, replaced = [], []
    for section, settings in values.items():
        for key, value in settings.items():
            flag = flag_of(SECTIONS[section], key)
            flags.append(f"{flag} {value}")
            used = getattr(getattr(config, section), key) if config is not None else value
            if used != value:
                replaced.append(f"{flag} {'none' if used is None else used}")
    line = (f"recipe {name}: {' '.join(flags)} (docs/planning.md scores it on held-out images; "
            f"flags given override it, --recipe none gives the classic defaults)")
    if replaced:
        line += f"\n  replaced here by: {' '.join(replaced)}"
    return line
