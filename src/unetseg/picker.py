"""The segmentation task picker: from what a user needs to a task and an architecture.

Six questions (`Needs`), a small rule table (`recommend`), one reason per decision:

1. **Task**, from the output wanted and the content of the images:

   ==============  =====================  ==========================================
   output          content                task
   ==============  =====================  ==========================================
   labels          any                    semantic (one label per pixel)
   objects, both   stuff                  semantic: stuff (sky, road, tissue) has no
                                          separate instances, so there is nothing
                                          more to ask for than a label per pixel
   objects         things                 instance
   objects         both                   panoptic (objects of the things, regions of
                                          the stuff); instance if the stuff is only
                                          background
   both            things, both           panoptic
   ==============  =====================  ==========================================

2. **Architecture** for semantic segmentation, the first row that holds:

   - tight latency or memory budget -> U-Net with a small base width, exported to ONNX;
   - fine boundaries matter (medical, documents, industrial) -> U-Net: its skips carry
     full-resolution detail, where SegFormer predicts at a quarter of the resolution;
   - fewer than `SMALL_DATA` labelled images -> U-Net, few parameters to fit;
   - at least `LARGE_DATA` labelled images -> SegFormer, a transformer encoder pays off;
   - driving or satellite scenes -> DeepLabV3+, atrous convolutions see several scales;
   - otherwise -> U-Net, the simplest strong baseline.

   Instance -> Mask R-CNN (alternative Mask2Former). Panoptic -> Mask2Former (alternative
   OneFormer).

3. **Notes.** A long side above `LARGE_IMAGE` px -> predict in overlapping tiles
   (`unetseg predict --tile 256`) rather than downscale, which erases small objects. A tight
   budget -> ONNX export and ``--base 16`` for a U-Net, the smallest backbone otherwise.
   Medical images -> 3D volumes belong to MONAI or nnU-Net; unetseg is 2D.

Only semantic segmentation with a U-Net is what this toolkit does (`Recommendation.covered`);
for everything else the next step names a library that does it. Nothing here imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OUTPUTS", "CONTENTS", "DOMAINS", "BUDGETS", "TASKS", "Needs", "Recommendation", "recommend",
]

OUTPUTS = ("labels", "objects", "both")       # one label per pixel / separate objects / both
CONTENTS = ("things", "stuff", "both")        # countable objects / amorphous regions / both
DOMAINS = ("medical", "driving", "satellite", "documents", "industrial", "other")
BUDGETS = ("tight", "moderate", "none")       # at prediction time; tight = edge device, CPU
TASKS = ("semantic", "instance", "panoptic")

# Thresholds are rules of thumb, not measurements: near one, both answers are worth a try.
# Below this many labelled images a from-scratch U-Net is hard to beat: few parameters to fit,
# and its skips hand detail to the decoder instead of it being learnt back.
SMALL_DATA = 2_000
# Transformer encoders need more data than CNNs before their accuracy shows; ADE20K, where
# SegFormer leads, has about 20k training images.
LARGE_DATA = 10_000
# Above this long side a whole image at full resolution crowds a GPU's memory.
LARGE_IMAGE = 1_024
# Training crops larger than this add memory and little context for a 4-level U-Net.
MAX_CROP = 512
# Four poolings halve the side four times: a multiple of 16 keeps every U-Net level exact.
CROP_MULTIPLE = 16
FINE_BOUNDARY_DOMAINS = ("medical", "documents", "industrial")
CONTEXT_DOMAINS = ("driving", "satellite")


@dataclass(frozen=True)
class Needs:
    """What the user needs.

    ``output`` is one of `OUTPUTS`, ``content`` of `CONTENTS`, ``domain`` of `DOMAINS`,
    ``budget`` of `BUDGETS`; ``images`` is the number of labelled images and ``image_size`` the
    typical long side in pixels, both whole numbers >= 1.
    """

    output: str
    content: str
    domain: str
    images: int
    budget: str
    image_size: int

    def __post_init__(self) -> None:
        for name, allowed in (("output", OUTPUTS), ("content", CONTENTS), ("domain", DOMAINS),
                              ("budget", BUDGETS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; found {value!r}")
        for name in ("images", "image_size"):
            value = getattr(self, name)
            # bool is an int subclass, and True labelled images is a bug, not a count.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1; found {value!r}")


@dataclass(frozen=True)
class Recommendation:
    """The answer: ``task`` (one of `TASKS`), ``architecture``, ``reasons`` (why this task, why
    this architecture, then notes on image size, budget and domain), ``covered`` (True when
    unetseg itself does it), ``next_step`` (a unetseg command, or the library to use) and
    ``alternatives`` (architectures worth a try if the first disappoints)."""

    task: str
    architecture: str
    reasons: tuple[str, ...]
    covered: bool
    next_step: str
    alternatives: tuple[str, ...] = ()


def _task(needs: Needs) -> tuple[str, str]:
    """(task, why) from the output wanted and the content, by the table in the docstring."""
    if needs.output == "labels":
        return "semantic", "one label per pixel is semantic segmentation"
    if needs.content == "stuff":
        return "semantic", ("amorphous stuff has no separate instances to tell apart, so "
                            "separate objects of it reduce to semantic segmentation")
    if needs.output == "objects" and needs.content == "things":
        return "instance", ("separate, countable objects (each its own mask) are instance "
                            "segmentation")
    return "panoptic", ("a label for every pixel and separate objects for the countable things "
                        "is panoptic segmentation (instance segmentation if the stuff is only "
                        "background)")


def _semantic_architecture(needs: Needs) -> tuple[str, str, tuple[str, ...]]:
    """(architecture, why, alternatives) for semantic segmentation: the first rule that holds."""
    if needs.budget == "tight":
        return "U-Net", ("a tight latency or memory budget favours a small U-Net (a low base "
                         "width, exported to ONNX)"), ("DeepLabV3+ with a MobileNet encoder",)
    if needs.domain in FINE_BOUNDARY_DOMAINS:
        # With much data a transformer may still win on accuracy; with less, pretraining helps.
        runner_up = "SegFormer" if needs.images >= LARGE_DATA else "U-Net with a pretrained encoder"
        return "U-Net", (f"{needs.domain} images need exact boundaries, which the U-Net's "
                         f"full-resolution skips keep (SegFormer predicts at 1/4 "
                         f"resolution)"), (runner_up,)
    if needs.images < SMALL_DATA:
        return "U-Net", (f"with {needs.images} labelled images (< {SMALL_DATA}) a U-Net trains "
                         f"well from scratch and its skips keep fine detail"), ("DeepLabV3+",)
    if needs.images >= LARGE_DATA:
        return "SegFormer", (f"with {needs.images} labelled images (>= {LARGE_DATA}) a "
                             f"transformer encoder pays off in accuracy"), ("DeepLabV3+",)
    if needs.domain in CONTEXT_DOMAINS:
        return "DeepLabV3+", (f"{needs.domain} scenes need context at several scales, which "
                              f"atrous convolutions (ASPP) give"), ("U-Net", "SegFormer")
    return "U-Net", "the simplest strong baseline for a moderate amount of data", ("DeepLabV3+",)


def _architecture(task: str, needs: Needs) -> tuple[str, str, tuple[str, ...]]:
    if task == "instance":
        return ("Mask R-CNN", "Mask R-CNN is the standard, well-supported instance segmenter",
                ("Mask2Former",))
    if task == "panoptic":
        return ("Mask2Former", "Mask2Former segments things and stuff in one model",
                ("OneFormer", "Mask R-CNN (things only)"))
    return _semantic_architecture(needs)


def _notes(needs: Needs, covered: bool) -> list[str]:
    """Image size, budget and domain notes that do not change the choice but its use."""
    notes = []
    if needs.image_size > LARGE_IMAGE:
        notes.append(f"images of {needs.image_size} px are large: predict in overlapping tiles "
                     f"(unetseg predict --tile 256) instead of downscaling, which erases small "
                     f"objects" if covered else
                     f"images of {needs.image_size} px are large: tile them (sliding window) or "
                     f"downscale, knowing downscaling erases small objects")
    if needs.budget == "tight":
        notes.append("for deployment, export to ONNX (unetseg export) and keep --base small "
                     "(--base 16 has about 16x fewer weights than the paper's 64)" if covered
                     else "these models are heavy for a tight budget: take the smallest backbone "
                          "and measure latency on the target device before labelling more")
    if needs.domain == "medical":
        notes.append("unetseg segments 2D images; for 3D volumes (CT, MRI) use MONAI or nnU-Net")
    return notes


def _crop_side(image_size: int) -> int:
    """A training crop no larger than the images (nor `MAX_CROP`), a multiple of 16."""
    side = min(image_size, MAX_CROP) // CROP_MULTIPLE * CROP_MULTIPLE
    return max(side, CROP_MULTIPLE)


LIBRARIES = {
    "DeepLabV3+": "segmentation_models_pytorch (smp.DeepLabV3Plus with a pretrained encoder)",
    "SegFormer": "Hugging Face transformers (SegformerForSemanticSegmentation)",
    "Mask R-CNN": "torchvision (maskrcnn_resnet50_fpn_v2) or detectron2",
    "Mask2Former": "Hugging Face transformers (Mask2FormerForUniversalSegmentation; "
                   "OneFormerForUniversalSegmentation for OneFormer) or detectron2",
}


def _next_step(architecture: str, task: str, needs: Needs) -> str:
    if architecture != "U-Net":
        step = f"use {LIBRARIES[architecture]}"
        if task == "semantic":
            step += ("; unetseg inspect --pred MASKS --truth TRUTH --out REPORT can still "
                     "diagnose its masks")
        return step
    train = f"unetseg train --data PATH --size {_crop_side(needs.image_size)}"
    if needs.budget == "tight":
        return (f"{train} --base 16 --epochs 40 --out runs/NAME, then unetseg export "
                f"runs/NAME/best.safetensors --out runs/NAME/model.onnx")
    return (f"{train} --epochs 40 --out runs/NAME, then unetseg inspect "
            f"runs/NAME/best.safetensors --out runs/NAME/inspection")


def recommend(needs: Needs) -> Recommendation:
    """The task and architecture for ``needs``, by the rules in the module docstring.

    ``reasons`` always starts with why this task, then why this architecture; ``covered`` is
    True exactly for semantic segmentation with a U-Net.
    """
    task, why_task = _task(needs)
    architecture, why_architecture, alternatives = _architecture(task, needs)
    covered = task == "semantic" and architecture == "U-Net"
    reasons = (why_task, why_architecture, *_notes(needs, covered))
    return Recommendation(task, architecture, reasons, covered,
                          _next_step(architecture, task, needs), alternatives)
