"""The segmentation task picker: from what a user needs to a task and an architecture.

Six questions, a small rule table, one reason per decision:

1. **Task.** One label per pixel -> *semantic*. Separate, countable objects -> *instance*.
   Both (every pixel labelled and each object separate) -> *panoptic*. Asking for separate
   objects of amorphous "stuff" (sky, road, tissue) has no answer: stuff has no instances, so
   that is semantic.
2. **Architecture** for semantic segmentation, first rule that holds:
   - a tight latency or memory budget -> U-Net (small base, ONNX export);
   - little data (< `SMALL_DATA` labelled images) or fine boundaries that matter (medical,
     documents, industrial defects) -> U-Net: skip connections keep full-resolution detail and
     it trains well from few images;
   - much data (>= `LARGE_DATA`) -> SegFormer: a transformer encoder pays off with data;
   - driving or satellite scenes -> DeepLabV3+: atrous convolutions see context at several
     scales, which these scenes need;
   - otherwise -> U-Net, the simplest strong baseline.
   Instance -> Mask R-CNN. Panoptic -> Mask2Former (OneFormer as the alternative).
3. **Image size.** Above `LARGE_IMAGE` px on the long side, predict in tiles
   (`unetseg predict --tile 256`) rather than downscaling, which erases small objects.

Only semantic segmentation with a U-Net is what this toolkit does (`covered`); for the rest the
answer names a library that does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from typing import Callable, TextIO

__all__ = ["Needs", "Recommendation", "recommend", "add_arguments", "run", "OUTPUTS",
           "CONTENTS", "DOMAINS", "BUDGETS"]

OUTPUTS = ("labels", "objects", "both")       # one label per pixel / separate objects / both
CONTENTS = ("things", "stuff", "both")        # countable objects / amorphous regions / both
DOMAINS = ("medical", "driving", "satellite", "documents", "industrial", "other")
BUDGETS = ("tight", "moderate", "none")       # latency or memory budget at prediction time

SMALL_DATA = 2_000      # below: U-Net (from-scratch CNNs with skips do well on few images)
LARGE_DATA = 10_000     # from here: SegFormer's transformer encoder pays off
LARGE_IMAGE = 1_024     # above: tile instead of downscaling
FINE_BOUNDARY_DOMAINS = ("medical", "documents", "industrial")
CONTEXT_DOMAINS = ("driving", "satellite")


@dataclass(frozen=True)
class Needs:
    """What the user needs. ``images`` is the number of labelled images; ``image_size`` the
    typical long side in pixels."""

    output: str
    content: str
    domain: str
    images: int
    budget: str
    image_size: int

    def __post_init__(self) -> None:
        for name, allowed in (("output", OUTPUTS), ("content", CONTENTS), ("domain", DOMAINS),
                              ("budget", BUDGETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; found "
                                 f"{getattr(self, name)!r}")
        for name in ("images", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive whole number; found "
                                 f"{getattr(self, name)!r}")


@dataclass(frozen=True)
class Recommendation:
    task: str                       # semantic | instance | panoptic
    architecture: str
    reasons: tuple[str, ...]        # one per decision
    covered: bool                   # whether unetseg does it
    next_step: str
    alternatives: tuple[str, ...] = ()


def _task(needs: Needs) -> tuple[str, str]:
    if needs.output == "labels":
        return "semantic", "one label per pixel is semantic segmentation"
    if needs.output == "objects" and needs.content == "stuff":
        return "semantic", ("amorphous stuff has no separate instances to tell apart, so "
                            "separate objects of it reduce to semantic segmentation")
    if needs.output == "objects":
        return "instance", ("separate, countable objects (each its own mask) are instance "
                            "segmentation")
    return "panoptic", ("a label for every pixel and separate objects for the countable things "
                        "is panoptic segmentation")


def _semantic_architecture(needs: Needs) -> tuple[str, str, tuple[str, ...]]:
    if needs.budget == "tight":
        return "U-Net", ("a tight latency or memory budget favours a small U-Net (a low base "
                         "width, exported to ONNX)"), ("DeepLabV3+ with a MobileNet encoder",)
    if needs.images < SMALL_DATA:
        return "U-Net", (f"with {needs.images} labelled images (< {SMALL_DATA}) a U-Net trains "
                         f"well from scratch and its skips keep fine detail"), ("DeepLabV3+",)
    if needs.domain in FINE_BOUNDARY_DOMAINS and needs.images < LARGE_DATA:
        return "U-Net", (f"{needs.domain} images need exact boundaries, which the U-Net's "
                         f"full-resolution skips keep"), ("SegFormer",)
    if needs.images >= LARGE_DATA:
        return "SegFormer", (f"with {needs.images} labelled images (>= {LARGE_DATA}) a "
                             f"transformer encoder pays off in accuracy"), ("DeepLabV3+",)
    if needs.domain in CONTEXT_DOMAINS:
        return "DeepLabV3+", (f"{needs.domain} scenes need context at several scales, which "
                              f"atrous convolutions (ASPP) give"), ("U-Net", "SegFormer")
    return "U-Net", "the simplest strong baseline for a moderate amount of data", ("DeepLabV3+",)


NEXT_STEPS = {
    "U-Net": "unetseg train --data PATH --size {size} --epochs 40 --out runs/NAME, then "
             "unetseg inspect runs/NAME/best.safetensors --out runs/NAME/inspection",
    "DeepLabV3+": "segmentation_models_pytorch (smp.DeepLabV3Plus); unetseg's metrics and "
                  "mask inspector can still score its masks (unetseg inspect --pred --truth)",
    "SegFormer": "Hugging Face transformers (SegformerForSemanticSegmentation); unetseg inspect "
                 "--pred --truth can still diagnose its masks",
    "Mask R-CNN": "torchvision (maskrcnn_resnet50_fpn_v2) or detectron2",
    "Mask2Former": "Hugging Face transformers (Mask2FormerForUniversalSegmentation) or "
                   "detectron2",
}


def recommend(needs: Needs) -> Recommendation:
    """The task and architecture for ``needs``, by the rules in the module docstring."""
    task, task_reason = _task(needs)
    if task == "instance":
        architecture, why, alternatives = ("Mask R-CNN", "Mask R-CNN is the standard two-stage "
                                           "instance segmenter", ("Mask2Former",))
    elif task == "panoptic":
        architecture, why, alternatives = ("Mask2Former", "Mask2Former handles things and stuff "
                                           "in one model", ("OneFormer", "Panoptic FPN"))
    else:
        architecture, why, alternatives = _semantic_architecture(needs)
    reasons = [task_reason, why]
    covered = task == "semantic" and architecture == "U-Net"
    if needs.image_size > LARGE_IMAGE:
        reasons.append(f"images of {needs.image_size} px are large: predict in overlapping "
                       f"tiles (unetseg predict --tile 256) instead of downscaling, which erases "
                       f"small objects" if covered else
                       f"images of {needs.image_size} px are large: tile them (sliding window) "
                       f"rather than downscale")
    if needs.budget == "tight" and covered:
        reasons.append("for deployment, export to ONNX (unetseg export) and keep --base small")
    step = NEXT_STEPS[architecture].format(size=min(needs.image_size, 512))
    return Recommendation(task, architecture, tuple(reasons), covered, step, alternatives)


# --- command line ---------------------------------------------------------------------------

QUESTIONS = {
    "output": ("Do you need one label per pixel, separate objects, or both?", OUTPUTS),
    "content": ("Are the targets countable things, amorphous stuff, or both?", CONTENTS),
    "domain": ("Which domain?", DOMAINS),
    "images": ("How many labelled images do you have?", None),
    "budget": ("Latency or memory budget at prediction time?", BUDGETS),
    "image_size": ("Typical image size (long side, pixels)?", None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `unetseg pick`; a flag left out is asked for."""
    parser.add_argument("--output", choices=OUTPUTS, help="one label per pixel (labels), "
                        "separate objects, or both (default: ask)")
    parser.add_argument("--content", choices=CONTENTS, help="countable things, amorphous "
                        "stuff, or both (default: ask)")
    parser.add_argument("--domain", choices=DOMAINS, help="the images' domain (default: ask)")
    parser.add_argument("--images", type=int, help="number of labelled images (default: ask)")
    parser.add_argument("--budget", choices=BUDGETS, help="latency or memory budget "
                        "(default: ask)")
    parser.add_argument("--image-size", type=int, dest="image_size",
                        help="typical long side in pixels (default: ask)")


def _ask(name: str, input_fn: Callable[[str], str], out: TextIO):
    question, allowed = QUESTIONS[name]
    prompt = f"{question} [{'/'.join(allowed)}] " if allowed else f"{question} "
    while True:
        answer = input_fn(prompt).strip().lower()
        if allowed and answer in allowed:
            return answer
        if not allowed and answer.isdigit() and int(answer) > 0:
            return int(answer)
        print(f"  please answer {'one of ' + ', '.join(allowed) if allowed else 'a number'}",
              file=out)


def run(args: argparse.Namespace, input_fn: Callable[[str], str] | None = None,
        out: TextIO = sys.stdout) -> int:
    """Ask for what the flags left out (from a terminal, or ``input_fn``), then answer."""
    values = {f.name: getattr(args, f.name, None) for f in fields(Needs)}
    missing = [name for name, value in values.items() if value is None]
    if missing and input_fn is None:
        if not sys.stdin.isatty():
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            print(f"unetseg pick: not a terminal, so nothing can be asked; give {flags}",
                  file=sys.stderr)
            return 2
        input_fn = input
    for name in missing:
        values[name] = _ask(name, input_fn, out)
    answer = recommend(Needs(**values))
    print(f"task:          {answer.task} segmentation", file=out)
    print(f"architecture:  {answer.architecture}"
          + (f" (alternatives: {', '.join(answer.alternatives)})" if answer.alternatives else ""),
          file=out)
    print(f"in unetseg:    {'yes' if answer.covered else 'no'}", file=out)
    print("why:", file=out)
    for reason in answer.reasons:
        print(f"  - {reason}", file=out)
    print(f"next step:     {answer.next_step}", file=out)
    return 0
