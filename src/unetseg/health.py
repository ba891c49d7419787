"""Training health: what a run's own figures say has gone wrong, said while it runs.

Users of segmentation tools most often lose a run quietly: predictions that turn all
background, a rare class that rises and then falls back to nothing, non-finite losses under
mixed precision, a validation loss that climbs while the training loss falls. Each shows in
figures the loop already has, so the monitor costs nothing per step. It reads:

- after each validation, the metrics history (one row per validation: the true and the
  predicted share of each class, from the validation's confusion matrix, the per-class IoU
  and both losses);
- at each read of the device's step counts (every few batches), the steps skipped as
  non-finite.

Each finding is a `HealthEvent`: what was seen, the likely cause and the fix, the cause taken
from what the data check found (`DataFacts`: ignored pixels, classes in few images, rare
classes) and from the run's own losses (an exploding validation loss means the lr). The
rules read only the history, so a resumed run judges as an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

# Above it, ignored pixels are more likely a mistake than a choice: the data check's threshold.
from .data.build import IGNORED_SHARE_WARNING

__all__ = ["HealthEvent", "DataFacts", "validation_events", "nonfinite_event",
           "collapse_streak", "class_shares"]

# A class "holds" the truth above this share of the counted validation pixels...
HELD_SHARE = 0.01
# ... and has collapsed when it is predicted on less than this fraction of its true share,
# at this many validations in a row (one low validation early in a run is common).
COLLAPSED_FRACTION = 0.05
COLLAPSE_VALIDATIONS = 2
# One class predicted on this share of the pixels or more is a one-class model.
ONE_CLASS_SHARE = 0.999
# A class "fell back" when its IoU, once above RISEN_IOU, drops below half its best.
RISEN_IOU = 0.1
# Overfitting: the validation loss rose at this many validations in a row, ends this much
# above its lowest, and the training loss fell over the same validations.
RISING_VALIDATIONS = 3
RISEN_LOSS = 1.1
# This many non-finite steps in one read of the counts is a streak worth a line.
NONFINITE_STEPS = 3
# A validation loss this many times its lowest means the optimisation blew up.
EXPLODED_LOSS = 10.0


@dataclass(frozen=True)
class HealthEvent:
    """One finding: ``kind`` (collapse, one_class, fell_back, nonfinite, overfitting), the
    1-based ``epoch`` and the ``step`` it was seen at, the class it concerns (None for the run),
    what was ``seen``, the likely ``cause``, the ``fix``, and the ``action`` the run took
    itself (``fp32``: it fell back to fp32; None: none)."""

    kind: str
    epoch: int
    step: int
    seen: str
    cause: str
    fix: str
    class_name: str | None = None
    action: str | None = None

    def line(self) -> str:
        """The line the run prints: ``health: circle: ... Likely cause: ... Fix: ...``."""
        who = f"{self.class_name}: " if self.class_name else ""
        return (f"health (epoch {self.epoch}, step {self.step}): {who}{self.seen}. Likely "
                f"cause: {self.cause}. Fix: {self.fix}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DataFacts:
    """What the causes are read from: the data check's summary of the training masks and the
    run's settings. ``pixel_share`` and ``images`` are per class (None where not counted, as
    for synthetic data)."""

    class_names: tuple[str, ...]
    ignore_index: int | None
    ignored_share: float
    pixel_share: tuple[float, ...] | None
    images: tuple[int, ...] | None
    train_images: int | None
    lr: float
    class_weights: str | None
    focus_classes: tuple[str, ...]

    @classmethod
    def of(cls, class_names: Sequence[str], ignore_index: int | None, summary: dict,
           lr: float, class_weights: str | None,
           focus_classes: Sequence[str] | None) -> DataFacts:
        """From `unetseg.data.build.Datasets.summary` and the training settings."""
        counted = summary.get("classes") or {}
        known = all(name in counted for name in class_names)
        return cls(tuple(class_names), ignore_index, summary.get("ignored_share") or 0.0,
                   tuple(counted[n]["share"] for n in class_names) if known else None,
                   tuple(counted[n]["images"] for n in class_names) if known else None,
                   summary.get("train_images"), lr, class_weights, tuple(focus_classes or ()))


def class_shares(matrix) -> tuple[list[float], list[float]]:
    """The true and the predicted share of each class among the counted pixels of a (C, C)
    confusion matrix (rows true, columns predicted; a tensor or an array); all zeros when
    nothing was counted."""
    true, predicted = matrix.sum(1).tolist(), matrix.sum(0).tolist()
    total = float(sum(true))
    if total == 0:
        return [0.0] * len(true), [0.0] * len(true)
    return [v / total for v in true], [v / total for v in predicted]


# --- after a validation ----------------------------------------------------------------------

def validation_events(history: list[dict], facts: DataFacts) -> list[HealthEvent]:
    """The findings that the last row of ``history`` (metrics.jsonl's rows, with
    ``val_true_share`` and ``val_predicted_share``) brings: each fires once, at the
    validation where its condition starts to hold."""
    row = history[-1]
    if "val_predicted_share" not in row:       # a row written before the monitor existed
        return []
    events = [*_collapses(history, facts), *_fallbacks(history, facts)]
    overfit = _overfitting(history)
    if overfit:
        events.append(overfit)
    return events


def _collapsed(row: dict, c: int) -> bool:
    true, predicted = row["val_true_share"][c], row["val_predicted_share"][c]
    return true > HELD_SHARE and predicted < COLLAPSED_FRACTION * true


def _one_class(row: dict) -> int | None:
    shares = row["val_predicted_share"]
    top = max(range(len(shares)), key=shares.__getitem__)
    return top if shares[top] >= ONE_CLASS_SHARE else None


def collapse_streak(history: list[dict]) -> int:
    """How many validations in a row, up to the last, found a class collapsed or one class
    predicted everywhere (what ``--patience`` stops on)."""
    streak = 0
    for row in reversed(history):
        if "val_predicted_share" not in row:
            break
        classes = range(len(row["val_predicted_share"]))
        if not (any(_collapsed(row, c) for c in classes) or _one_class(row) is not None):
            break
        streak += 1
    return streak


def _starts(history: list[dict], holds) -> bool:
    """Whether ``holds(row)`` is true for the last COLLAPSE_VALIDATIONS rows and was not at
    the row before them: a condition is reported once, when it has lasted long enough."""
    last = history[-COLLAPSE_VALIDATIONS:]
    if len(last) < COLLAPSE_VALIDATIONS or not all("val_predicted_share" in r and holds(r)
                                                   for r in last):
        return False
    before = history[-COLLAPSE_VALIDATIONS - 1] if len(history) > COLLAPSE_VALIDATIONS else None
    return before is None or "val_predicted_share" not in before or not holds(before)


def _collapses(history: list[dict], facts: DataFacts) -> list[HealthEvent]:
    row, names = history[-1], facts.class_names
    events = []
    for c, name in enumerate(names):
        if _starts(history, lambda r, c=c: _collapsed(r, c)):
            seen = (f"predicted on {row['val_predicted_share'][c]:.2%} of the validation pixels "
                    f"but {row['val_true_share'][c]:.1%} are {name}, at "
                    f"{COLLAPSE_VALIDATIONS} validations in a row")
            cause, fix = _class_cause(history, facts, c)
            events.append(HealthEvent("collapse", row["epoch"], row["step"], seen, cause, fix,
                                      name))
    top = _one_class(row)
    # A one-class model whose missing classes were just named adds nothing; one whose truth
    # is one class as well (everything else ignored or absent) is the case to name.
    if top is not None and not events and _starts(history, lambda r: _one_class(r) == top):
        seen = (f"the model predicts {names[top]} on {row['val_predicted_share'][top]:.2%} of "
                f"the validation pixels, at {COLLAPSE_VALIDATIONS} validations in a row")
        cause, fix = _run_cause(history, facts, top)
        events.append(HealthEvent("one_class", row["epoch"], row["step"], seen, cause, fix))
    return events


def _fallbacks(history: list[dict], facts: DataFacts) -> list[HealthEvent]:
    row = history[-1]
    events = []
    for c, name in enumerate(facts.class_names):
        ious = [_iou(r, c) for r in history]
        best_before = max((v for v in ious[:-1] if not math.isnan(v)), default=float("nan"))
        now, previous = ious[-1], ious[-2] if len(ious) > 1 else float("nan")
        if math.isnan(best_before) or best_before <= RISEN_IOU or math.isnan(now):
            continue
        best_then = max((v for v in ious[:-2] if not math.isnan(v)), default=float("nan"))
        was_down = not math.isnan(previous) and not math.isnan(best_then) \
            and previous < best_then / 2
        if now < best_before / 2 and not was_down:
            best_epoch = history[ious.index(best_before)]["epoch"]
            seen = (f"IoU fell to {now:.3f} from its best {best_before:.3f} (epoch "
                    f"{best_epoch})")
            cause, fix = _fallback_cause(history, facts, c, best_epoch)
            events.append(HealthEvent("fell_back", row["epoch"], row["step"], seen, cause,
                                      fix, name))
    return events


def _iou(row: dict, c: int) -> float:
    value = row["val_iou"][c]
    return float("nan") if value is None else float(value)


def _overfitting(history: list[dict]) -> HealthEvent | None:
    """The validation loss rising at RISING_VALIDATIONS validations in a row while the
    training loss fell, reported when that first holds since the lowest validation loss."""
    def rising(upto: int) -> bool:
        rows = history[upto - RISING_VALIDATIONS:upto + 1]
        if upto < RISING_VALIDATIONS or any(not _finite(r["val_loss"]) for r in rows):
            return False
        val = [r["val_loss"] for r in rows]
        lowest = min(r["val_loss"] for r in history[:upto + 1] if _finite(r["val_loss"]))
        return (all(a < b for a, b in zip(val, val[1:])) and val[-1] > RISEN_LOSS * lowest
                and rows[-1]["train_loss"] < rows[0]["train_loss"])

    last = len(history) - 1
    if not rising(last) or rising(last - 1):
        return None
    finite = [r for r in history if _finite(r["val_loss"])]
    low = min(finite, key=lambda r: r["val_loss"])
    best = max((r for r in history if _finite(r["val_miou"])), key=lambda r: r["val_miou"],
               default=low)
    row = history[-1]
    seen = (f"the validation loss rose from {low['val_loss']:.4g} (epoch {low['epoch']}, its "
            f"lowest) to {row['val_loss']:.4g} while the training loss fell from "
            f"{history[last - RISING_VALIDATIONS]['train_loss']:.4g} to {row['train_loss']:.4g}")
    return HealthEvent("overfitting", row["epoch"], row["step"], seen,
                       "the model is fitting the training images more closely than it "
                       "generalises (overfitting)",
                       f"best.safetensors keeps epoch {best['epoch']} (the best validation "
                       f"mIoU); label more images or augment more, or stop earlier "
                       f"(--patience)")


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


# --- causes, from the data check and the run's own losses --------------------------------------

def _exploded(history: list[dict]) -> tuple[float, float] | None:
    """(highest, lowest) validation loss when the highest is EXPLODED_LOSS times the lowest."""
    losses = [r["val_loss"] for r in history if _finite(r["val_loss"])]
    if len(losses) < 2 or min(losses) <= 0 or max(losses) < EXPLODED_LOSS * min(losses):
        return None
    return max(losses), min(losses)


def _lr_cause(history: list[dict], facts: DataFacts) -> tuple[str, str] | None:
    exploded = _exploded(history)
    if exploded is None:
        return None
    return (f"the validation loss reached {exploded[0]:.3g} (its lowest: {exploded[1]:.3g}): "
            f"the learning rate ({facts.lr:g}) is too high",
            f"train again with a lower --lr (try {facts.lr / 10:g})")


def _ignored_cause(facts: DataFacts) -> tuple[str, str] | None:
    if facts.ignored_share <= IGNORED_SHARE_WARNING:
        return None
    ignored = facts.ignore_index
    return (f"{facts.ignored_share:.1%} of the training pixels are ignore_index {ignored}, so "
            f"the loss never sees them (masks stored as 0/{ignored} with ignore_index "
            f"{ignored} declared lose every foreground pixel)",
            f"check ignore_index in the dataset file: if {ignored} marks the foreground, "
            f"remove it (or remap it to class 1); `unetseg check` shows what the masks hold")


def _class_cause(history: list[dict], facts: DataFacts, c: int) -> tuple[str, str]:
    name = facts.class_names[c]
    found = _ignored_cause(facts)
    if found:
        return found
    if facts.images is not None and facts.images[c] <= 1:
        return (f"{name} is in {facts.images[c]} of the {facts.train_images} training images, "
                f"too few to learn it from",
                f"label more images that hold {name}, or move one from validation to training")
    found = _lr_cause(history, facts)
    if found:
        return found
    if facts.pixel_share is not None and facts.pixel_share[c] < HELD_SHARE \
            and not facts.class_weights:
        return (f"{name} is {facts.pixel_share[c]:.2%} of the training pixels and the "
                f"cross-entropy is unweighted, so predicting none of it costs little",
                f"--class-weights sqrt-median, or --focus-classes {name} --focus-share 0.33")
    return (f"the data check found nothing against {name}; a young run may not have found it "
            f"yet, or the learning rate ({facts.lr:g}) is too high",
            f"if it persists, lower --lr (try {facts.lr / 3:.2g}) or weight the classes "
            f"(--class-weights sqrt-median)")


def _run_cause(history: list[dict], facts: DataFacts, top: int) -> tuple[str, str]:
    found = _ignored_cause(facts) or _lr_cause(history, facts)
    if found:
        return found
    row = history[-1]
    others = sum(share for c, share in enumerate(row["val_true_share"]) if c != top)
    if others < HELD_SHARE:
        return (f"the validation masks hold almost only {facts.class_names[top]}: the other "
                f"classes are absent or ignored",
                "check the masks' values against the dataset file (`unetseg check`)")
    return (f"the learning rate ({facts.lr:g}) may be too high, or the other classes too rare "
            f"for an unweighted loss",
            f"lower --lr (try {facts.lr / 3:.2g}), or --class-weights sqrt-median")


def _fallback_cause(history: list[dict], facts: DataFacts, c: int,
                    best_epoch: int) -> tuple[str, str]:
    name = facts.class_names[c]
    found = _lr_cause(history, facts)
    if found:
        return found
    rare = facts.pixel_share is not None and facts.pixel_share[c] < HELD_SHARE
    if rare and name not in facts.focus_classes:
        return (f"{name} is {facts.pixel_share[c]:.2%} of the training pixels: most crops miss "
                f"it, and the network forgets it between the crops that hold it",
                f"--focus-classes {name} --focus-share 0.33 centres a third of the crops on it")
    return (f"an unstable optimisation: the learning rate ({facts.lr:g}) may be too high for "
            f"this stage of the run",
            f"best.safetensors keeps epoch {best_epoch}'s weights; lower --lr "
            f"(try {facts.lr / 3:.2g}) for a steadier run")


# --- at a read of the step counts ------------------------------------------------------------

def nonfinite_event(skipped: int, steps: int, in_a_row: int, epoch: int, step: int,
                    precision: str, lr: float, at_least: int = NONFINITE_STEPS
                    ) -> HealthEvent | None:
    """The finding, if any, of a read of the step counts: ``skipped`` of the ``steps`` since
    the last read had non-finite gradients, ``in_a_row`` of them up to now; a finding from
    NONFINITE_STEPS skipped, or ``at_least`` where that is fewer (``--max-nonfinite``, at
    which a run stops). Under fp16 the gradient scaler skips steps by design while it finds
    its scale, so only ``at_least`` in a row count there. Under bf16 or fp16 the run falls
    back to fp32 (``action`` "fp32"); in fp32 the fix is the lr."""
    if precision == "fp16":
        if in_a_row < at_least:
            return None
    elif skipped < min(NONFINITE_STEPS, at_least):
        return None
    seen = (f"{skipped} of the last {steps} steps had non-finite gradients and were skipped "
            f"({in_a_row} in a row now)")
    if precision in ("bf16", "fp16"):
        return HealthEvent("nonfinite", epoch, step, seen,
                           f"values out of {precision}'s range or precision",
                           "the run falls back to fp32 for the rest of its steps (recorded in "
                           "config.yaml; a resumed run keeps fp32); pass --precision fp32 to "
                           "start that way", action="fp32")
    return HealthEvent("nonfinite", epoch, step, seen,
                       f"the learning rate ({lr:g}) is too high, or an input holds NaN or "
                       f"infinite values",
                       f"lower --lr (try {lr / 10:g}); keep --grad-clip on; `unetseg check` "
                       f"reads every image")
