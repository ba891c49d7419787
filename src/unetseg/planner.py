"""The plan: a training configuration derived from the data, this machine and a time budget.

Each decision is a rule over the dataset's fingerprint (`unetseg.data.fingerprint`) or a
figure measured here, and is kept with the figure that caused it, so that the printout says
why ("crop 288: p95 object extent 180 px x 1.5; median image 480 x 360"). No rule looks at a
dataset's name: a rule that needs one is a recipe, not a plan.

- **crop**: 1.5x the 95th percentile of the compact objects' extent, so that most objects are
  seen whole with context; thin classes (membranes, vessels: most of their pixels near an
  edge) need local context only, `THIN_CROP`. In multiples of 32, between `MIN_CROP` and
  `MAX_CROP`, never beyond the median image side.
- **depth**: as deep as the crop allows with a bottleneck of at least `BOTTLENECK_PX`, at most
  the classic 4.
- **batch**: about `PIXELS_PER_STEP` pixels a step (4 crops of 256), at least 2 crops.
- **memory**: batch, then crop, halved until a step of the narrowest network needs at most
  `MEMORY_SHARE` of the memory available (`unetseg.memory`'s estimate, made on the meta device).
- **base width**: the widest of `BASES` that fits that memory and still takes `MIN_STEPS` steps
  in the budget, at the step time *measured* on this machine (`unetseg.precision`: the
  precision timing, cached).
- **loss and class weights**: BCE + Dice for two classes; CE + Dice otherwise, with the square
  roots of median-frequency weights when the largest class outweighs the smallest
  `IMBALANCE`-fold.
- **focused crops**: a third of the crops centred on classes under `RARE_SHARE` of the pixels.
- **scale range**: narrow (0.8-1.25) for thin classes, whose width matters; wide (0.5-2) where
  compact objects vary `SPREAD`-fold in size; 0.75-1.5 otherwise.
- **lr** 1e-3 (the loop's warm-up and cosine), and the **run length** the budget
  (`DEFAULT_BUDGET` minutes when none is given).
- **validation**: about `VALIDATIONS` times in the run, and never more often than keeps it
  within `VAL_SHARE` of the time: every N passes over the training images where a pass is
  shorter than two such intervals, else the pass split into as many epochs as it holds
  intervals (``--epoch-steps``), so that no epoch is shorter than one.
- **prediction tiles**: `unetseg.infer.tile_for` the crop, which ``unetseg predict`` reads from
  the checkpoint; the plan's note states it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .config import ModelConfig
from .data.fingerprint import Fingerprint
from .infer import DEFAULT_TILE, tile_for

__all__ = ["Decision", "Plan", "plan_run", "measured_step_seconds", "DEFAULT_BUDGET"]

DEFAULT_BUDGET = 15.0           # minutes, when neither --time-budget nor a length is given
MIN_CROP, MAX_CROP, THIN_CROP = 64, 512, 128
CONTEXT = 1.5                   # crop side / p95 object extent
THIN = 0.6                      # edge share above which a class is thin
BOTTLENECK_PX = 8
PIXELS_PER_STEP = 4 * 256 * 256
BASES = (32, 16, 8)
MIN_STEPS = 2000
TRAIN_SHARE = 0.85              # of the budget: the rest validates and writes checkpoints
IMBALANCE = 10.0
RARE_SHARE = 0.05
FOCUS_SHARE = round(1 / 3, 4)
SPREAD = 8.0
VAL_SHARE = 0.15
VALIDATIONS = 40                # in a run: enough to choose a checkpoint and draw its curves
FORWARD_SHARE = 1 / 3           # a forward pass's share of a training step's time, per pixel
LR = 1e-3

# Seconds of one training step of a network at (crop, batch): injectable for tests.
StepTimer = Callable[[ModelConfig, int, int], float]
# Bytes one training step of a network at (crop, batch) needs (`memory.training_estimate`).
MemoryNeed = Callable[[ModelConfig, int, int], int]
MEMORY_SHARE = 0.5              # of the memory available: room for the loader and the rest


@dataclass(frozen=True)
class Decision:
    setting: str                # "section.field", as in a --config file
    value: Any
    reason: str

    @property
    def flag(self) -> str:
        from .config import SECTIONS, flag_of

        section, name = self.setting.split(".")
        return flag_of(SECTIONS[section], name)


@dataclass
class Plan:
    """The decisions, in the order they were made, and what they were made from."""

    decisions: list[Decision]
    budget: float                                   # minutes
    fingerprint: Fingerprint
    notes: list[str] = field(default_factory=list)  # what a user should know about the plan

    def settings(self) -> dict[str, dict[str, Any]]:
        """The decisions as a partial configuration, ``{section: {field: value}}``."""
        values: dict[str, dict[str, Any]] = {}
        for decision in self.decisions:
            section, name = decision.setting.split(".")
            values.setdefault(section, {})[name] = decision.value
        return values

    def record(self) -> dict[str, Any]:
        """What config.yaml and every checkpoint keep of the plan."""
        return {"budget_minutes": self.budget,
                "decisions": [{"setting": d.setting, "value": d.value, "reason": d.reason}
                              for d in self.decisions],
                "notes": list(self.notes), "fingerprint": self.fingerprint.to_dict()}

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str = "the plan") -> Plan:
        """The plan a `record` describes (config.yaml's, a checkpoint's, a plan file's)."""
        try:
            decisions = [Decision(d["setting"], _as_set(d["value"]), d["reason"])
                         for d in record["decisions"]]
            return cls(decisions, float(record["budget_minutes"]),
                       Fingerprint.from_dict(record["fingerprint"]), list(record["notes"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: not a plan that unetseg plan wrote ({error!r} "
                             f"missing or malformed)") from None

    @classmethod
    def from_file(cls, path: str) -> Plan:
        """The plan in a file `unetseg plan --out` wrote (its ``plan`` record)."""
        from .config import read_config_file

        if not Path(path).is_file():
            raise ValueError(f"--plan {path}: no such file; expected auto, none or a plan file "
                             f"that unetseg plan --out wrote")
        values = read_config_file(path)
        return cls.from_record(values.get("plan") or {}, f"--plan {path}")

    def table(self, replaced: dict[str, Any] | None = None) -> str:
        """The printout: one line per decision with its reason; ``replaced`` (setting ->
        the value a --config file or a flag gives instead) marks the decisions overridden."""
        replaced = replaced or {}
        rows = [(d.flag, _shown(d.value), d.reason) for d in self.decisions]
        width = min(max(len(flag) + len(value) for flag, value, _ in rows) + 2, 30)
        lines = [f"plan for {self.budget:g} minutes (unetseg.planner; flags and --config "
                 f"override single decisions):"]
        for (flag, value, reason), decision in zip(rows, self.decisions):
            line = f"  {(flag + ' ' + value).ljust(width)} {reason}"
            if decision.setting in replaced:
                line += f"  [replaced: {_shown(replaced[decision.setting])}]"
            lines.append(line)
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def _as_set(value: Any) -> Any:
    """A YAML or JSON list read back as the tuple a decision holds."""
    return tuple(value) if isinstance(value, list) else value


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


# ---------------------------------------------------------------- the decisions

def _crop(fp: Fingerprint) -> tuple[int, str]:
    compact = [c for c in fp.objects if c.edge_share <= THIN]
    thin = [c for c in fp.objects if c.edge_share > THIN]
    side = fp.median_side
    images = f"median image {fp.height[1]} x {fp.width[1]}"
    if compact:
        widest = max(compact, key=lambda c: c.extent[2])
        need = CONTEXT * widest.extent[2]
        why = (f"p95 extent of {widest.name} {widest.extent[2]:g} px x {CONTEXT}"
               + (f"; thin {', '.join(c.name for c in thin)}" if thin else ""))
        need = max(need, THIN_CROP if thin else 0)
    elif thin:
        need, why = THIN_CROP, f"thin {', '.join(c.name for c in thin)}: local context"
    else:
        need, why = 256, "no objects apart from the most frequent class"
    crop = min(max(32 * math.ceil(need / 32), MIN_CROP), MAX_CROP)
    if crop > side:
        crop, why = side, f"{why}; capped at the median image side"
    return crop, f"{why}; {images}"


def _depth(crop: int) -> tuple[int, str]:
    depth = max(1, min(4, int(math.log2(max(crop, 2) / BOTTLENECK_PX))))
    return depth, (f"bottleneck {crop} / 2^{depth} = {crop / 2 ** depth:g} px "
                   f"(>= {BOTTLENECK_PX} where the crop allows)")


def _batch(crop: int, images: int) -> tuple[int, str]:
    batch = min(max(round(PIXELS_PER_STEP / crop ** 2), 2), 16, max(images, 1))
    return batch, f"about {PIXELS_PER_STEP // 1024}k pixels a step at crop {crop}"


def _base(model: ModelConfig, crop: int, batch: int, seconds: float, timer: StepTimer,
          fits: Callable[[ModelConfig], bool]) -> tuple[int, float, str]:
    """The widest base that ``fits`` in memory and takes MIN_STEPS steps in ``seconds``."""
    timed = {}
    for base in BASES:
        if base != BASES[-1] and not fits(replace(model, base=base)):
            continue
        step = timer(replace(model, base=base), crop, batch)
        timed[base] = step
        if seconds / step >= MIN_STEPS or base == BASES[-1]:
            steps = int(seconds / step)
            others = ", ".join(f"base {b}: {int(seconds / s):,}" for b, s in timed.items()
                               if b != base)
            return base, step, (f"{step:.3g} s a step measured here: {steps:,} steps in the "
                                f"budget" + (f" ({others})" if others else "")
                                + f"; the widest with >= {MIN_STEPS:,}")
    raise AssertionError("unreachable: the last base is always taken")


def _fitted(model: ModelConfig, crop: int, batch: int, available: int | None,
            need: MemoryNeed) -> tuple[int, int, str]:
    """(crop, batch) halved, batch first, until a step needs at most MEMORY_SHARE of the
    ``available`` bytes; the reason says what was lowered (nothing, when it fits or when the
    available memory cannot be read)."""
    if available is None:
        return crop, batch, ""
    lowered = False
    while need(model, crop, batch) > MEMORY_SHARE * available and (batch > 1 or crop > 16):
        if batch > 1:
            batch //= 2
        else:
            crop //= 2
        lowered = True
    if not lowered:
        return crop, batch, ""
    return crop, batch, (f"; lowered to fit {MEMORY_SHARE:.0%} of the "
                         f"{available / 2 ** 30:.1f} GiB available")


def _loss(fp: Fingerprint) -> list[Decision]:
    if len(fp.classes) == 2:
        return [Decision("train.loss", "bce_dice", "two classes: one foreground channel")]
    decisions = [Decision("train.loss", "ce_dice", f"{len(fp.classes)} classes")]
    present = [c.share for c in fp.classes if c.share > 0]
    ratio = max(present) / min(present) if present else 1.0
    if ratio >= IMBALANCE:
        decisions.append(Decision("train.class_weights", "sqrt-median",
                                  f"the largest class has {ratio:,.0f}x the pixels of the "
                                  f"smallest (>= {IMBALANCE:g}x)"))
    return decisions


def _focus(fp: Fingerprint) -> list[Decision]:
    rare = [c for c in fp.objects if c.share < RARE_SHARE]
    if not rare:
        return []
    shares = ", ".join(f"{c.name} {c.share:.1%}" for c in rare)
    return [Decision("data.focus_classes", tuple(c.name for c in rare),
                     f"under {RARE_SHARE:.0%} of the pixels: {shares}"),
            Decision("data.focus_share", FOCUS_SHARE,
                     "a third of the crops centred on them (uniform crops seldom hold them)")]


def _scale(fp: Fingerprint) -> tuple[tuple[float, float], str]:
    thin = [c for c in fp.objects if c.edge_share > THIN]
    compact = [c for c in fp.objects if c.edge_share <= THIN and c.extent[0] > 0]
    if thin and sum(c.pixels for c in thin) >= sum(c.pixels for c in compact):
        names = ", ".join(f"{c.name} ({c.edge_share:.0%} edge)" for c in thin)
        return (0.8, 1.25), f"thin classes keep their width: {names}"
    if compact:
        spread = max(c.extent[2] / c.extent[0] for c in compact)
        if spread >= SPREAD:
            return (0.5, 2.0), f"object sizes vary {spread:.0f}-fold (p95 / p5 extent)"
        return (0.75, 1.5), f"object sizes vary {spread:.1f}-fold (p95 / p5 extent)"
    return (0.75, 1.5), "no compact objects to size"


def _validation(fp: Fingerprint, val_images: int, batch: int, step: float, crop: int,
                steps: int) -> list[Decision]:
    """Validate about every ``steps / VALIDATIONS`` steps, more rarely where that would take
    over VAL_SHARE of the time: every N epochs where a pass over the training images is
    shorter than that interval, else in epochs of at least that many steps (the pass split
    into as many as it holds: ``--epoch-steps``)."""
    per_pixel = FORWARD_SHARE * step / (batch * crop * crop)
    val_seconds = per_pixel * val_images * fp.height[1] * fp.width[1]
    wanted = max(math.ceil(val_seconds / (VAL_SHARE * step)), math.ceil(steps / VALIDATIONS))
    pass_steps = max(fp.images // batch, 1)
    parts = pass_steps // wanted
    if parts <= 1:
        every = math.ceil(wanted / pass_steps)
        interval, passes = every * pass_steps, f" (every {every} passes of {pass_steps:,})"
    else:
        every, interval = 1, math.ceil(pass_steps / parts)
        passes = f" (a pass of {pass_steps:,} split in {parts})"
    share = val_seconds / (val_seconds + interval * step)
    why = (f"every ~{interval:,} steps{passes}: a validation pass ~{val_seconds:.0f} s "
           f"({val_images} images), {share:.0%} of the time; about "
           f"{max(1, steps // interval)} in the run")
    if parts <= 1:
        return [Decision("train.val_every", every, why)]
    return [Decision("train.val_every", 1, why),
            Decision("train.epoch_steps", interval, "epochs of at most this many steps")]


def plan_run(fp: Fingerprint, val_images: int, budget: float | None,
             timer: StepTimer | None = None, model: ModelConfig | None = None,
             available: int | None = None, need: MemoryNeed | None = None) -> Plan:
    """The plan for a dataset with fingerprint ``fp`` (its training split) and ``val_images``
    validation images, in ``budget`` minutes (`DEFAULT_BUDGET` when None or 0), with step
    times from ``timer`` (`measured_step_seconds` by default), in ``available`` bytes of
    memory (None: not checked) as ``need`` estimates it (`memory.training_estimate`)."""
    timer = timer or measured_step_seconds
    need = need or _estimated_bytes
    notes = []
    if not budget:
        budget = DEFAULT_BUDGET
        notes.append(f"no --time-budget: {DEFAULT_BUDGET:g} minutes (a plan always ends)")
    model = model or ModelConfig(in_channels=fp.channels, num_classes=len(fp.classes),
                                 upsample="transpose")
    crop, crop_why = _crop(fp)
    depth, depth_why = _depth(crop)
    batch, batch_why = _batch(crop, fp.images)
    model = replace(model, depth=depth, upsample="transpose")
    crop, batch, memory_why = _fitted(replace(model, base=BASES[-1]), crop, batch, available,
                                      need)
    if memory_why:
        depth, depth_why = _depth(crop)
        model = replace(model, depth=depth)
    base, step, base_why = _base(model, crop, batch, TRAIN_SHARE * budget * 60, timer,
                                 lambda network: _fitted(network, crop, batch, available,
                                                         need)[:2] == (crop, batch))
    (low, high), scale_why = _scale(fp)
    validation = _validation(fp, val_images, batch, step, crop,
                             int(TRAIN_SHARE * budget * 60 / step))
    notes.append(f"unetseg predict tiles of {tile_for(crop)} px: the training crop, at least "
                 f"{DEFAULT_TILE} (read from the checkpoint; --tile changes it)")
    if fp.images < 4:
        notes.append(f"{fp.images} training image(s): expect a model that has learnt little")
    if fp.empty_share > 0.5:
        notes.append(f"{fp.empty_share:.0%} of the training masks hold only "
                     f"{fp.classes[fp.background].name}")
    decisions = [
        Decision("data.size", crop, crop_why + memory_why),
        Decision("data.batch_size", batch, batch_why + memory_why),
        Decision("model.depth", depth, depth_why),
        Decision("model.base", base, base_why),
        Decision("model.upsample", "transpose", "learnt upsampling, as the project's studies "
                                                "chose"),
        *_loss(fp),
        *_focus(fp),
        Decision("data.scale_min", low, scale_why),
        Decision("data.scale_max", high, "(the range's top)"),
        Decision("train.lr", LR, "peak of the warm-up and cosine; 3e-3 diverged early in the "
                                 "project's studies"),
        Decision("train.time_budget", budget, "the run's length: validation and checkpoints "
                                              "included"),
        *validation,
    ]
    return Plan(decisions, budget, fp, notes)


# ---------------------------------------------------------------- the machine probe

def _estimated_bytes(model: ModelConfig, crop: int, batch: int) -> int:
    from .memory import training_estimate

    return training_estimate(model, batch, crop, crop).total_bytes


def measured_step_seconds(model: ModelConfig, crop: int, batch: int,
                          device: torch.device | None = None) -> float:
    """Seconds of one training step of ``model`` at ``batch`` crops of ``crop`` on this
    machine, in the precision training would choose (`decide_precision`: its timing is cached
    per CPU, so a second plan measures nothing). Steps are timed on a few crops and scaled to
    ``batch``: the step's work grows with the pixels."""
    from .precision import MEASURE_BATCH, decide_precision, measure_step

    device = device or torch.device("cpu")
    choice = decide_precision("auto", device, model, batch, crop)
    timed = min(batch, MEASURE_BATCH)
    seconds = choice.seconds.get(choice.precision)
    if seconds is None:                    # nothing was timed (fp32 by rule): time it now
        step = measure_step(model, timed, crop, choice.precision, device=device)
        step()                                                   # warm-up
        seconds = min(step(), step())
    return seconds * batch / timed
