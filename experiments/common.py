"""The studies' training loop, and what it needs: contenders, data, evaluation.

Every study trains every contender with `train_contender`, whose every step is
`unetseg.train.train_step` (the step ``unetseg train`` takes) and whose scores come from
`unetseg.evaluation.evaluate`: the same datasets
(`unetseg.data.build.build_datasets`, so the same crops and augmentation as ``unetseg
train``), the same seeded batch order, AdamW with weight decay on weights only
(`unetseg.optim.parameter_groups`), a linear warm-up times a cosine decay, gradient clipping at
1, fp32 and NCHW (or, with ``Recipe.precision="bf16"``, unetseg's training fast path for every
contender alike: channels_last and bf16 autocast), and by default one thread
(`Recipe.threads`), so that a contender's time is its own and the numbers do not depend on how
busy the other core is.

A run stops after ``Recipe.steps`` optimiser steps or once it has spent ``Recipe.seconds`` of
process CPU time training, whichever is given. The schedule's progress is the share of that
budget spent. Every ``Recipe.eval_every`` steps (and after the last) the model is scored on the
validation split: whole images, one at a time, padded on the bottom and right to a multiple of
32 (smp's encoders need it; the others get the same input) with the logits cropped back, so the
padding is never scored. The curve records, per evaluation, the step, the wall and CPU seconds
spent training so far (evaluation excluded) and the scores from one confusion matrix
(`unetseg.metrics.ConfusionMatrix`) over the evaluated images.

Results are plain dicts of JSON-able values; `reporting` writes them out.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from unetseg import evaluation
from unetseg.config import DataConfig
from unetseg.data.build import Datasets, build_datasets, build_eval_dataset
from unetseg.fastpath import optimize_for_training
from unetseg.losses import make_loss
from unetseg.model import UNet
from unetseg.optim import parameter_groups
from unetseg.train import train_step

__all__ = ["ROOT", "DATASETS", "MODELS", "PRECISIONS", "Contender", "Recipe", "load_data",
           "make_model", "train_contender", "evaluate", "pad_to_multiple", "predict_logits",
           "machine", "smp_missing", "study_parser", "chosen_datasets"]

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
MODELS = ("unet", "smp", "monai")
PRECISIONS = ("fp32", "bf16")
# "bce" is unetseg's bce_dice with the Dice term weighted 0: plain BCE over counted pixels.
BINARY_LOSSES = ("bce", "bce_dice")
PAD_MULTIPLE = 32


# ---------------------------------------------------------------- what is trained, and how

@dataclass(frozen=True)
class Contender:
    """One network and loss. ``model``: ``unet`` (ours, with ``base`` and ``upsample``),
    ``smp`` (``smp.Unet("resnet34", encoder_weights=None)``) or ``monai`` (``BasicUNet`` with
    its default features). ``loss``: a `unetseg.losses` name, or ``bce``; the binary losses
    give the model one output channel (foreground logit), the others one per class."""

    name: str
    model: str = "unet"
    loss: str = "ce_dice"
    base: int = 32
    upsample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, found {self.model!r}")

    @property
    def binary(self) -> bool:
        return self.loss in BINARY_LOSSES


@dataclass(frozen=True)
class Recipe:
    """How long and how a contender trains; the same for every contender of a comparison.

    Give ``steps`` (optimiser steps) or ``seconds`` (process CPU seconds spent training), not
    both. ``val_images`` limits the evaluation to the first N validation images (None: all).
    ``precision``: ``fp32`` trains the plain network; ``bf16`` trains it through
    `unetseg.fastpath.optimize_for_training` (channels_last, bf16 autocast, float32 logits into
    the loss), as ``unetseg train`` does where bf16 is faster. Evaluation is fp32 either way,
    so the scores are comparable.
    """

    batch_size: int
    eval_every: int
    steps: int | None = None
    seconds: float | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    threads: int = 1
    val_images: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, found {self.precision!r}")
        if (self.steps is None) == (self.seconds is None):
            raise ValueError(f"give steps or seconds, not both nor neither; found steps "
                             f"{self.steps} and seconds {self.seconds}")
        if min(self.batch_size, self.eval_every, self.threads, self.warmup_steps) < 1:
            raise ValueError("batch_size, eval_every, threads and warmup_steps must be >= 1")


def lr_factor(step: int, progress: float, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up over the first ``warmup_steps`` steps, times a
    cosine decay from 1 to 0 over ``progress`` in [0, 1] (steps done over steps, or CPU seconds
    spent over the budget), so a time budget and a step budget decay alike."""
    warmup = min(1.0, (step + 1) / warmup_steps)
    return warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------- data and models

def load_data(config: DataConfig, scored: str = "val") -> tuple[Datasets, dict[str, Any]]:
    """unetseg's training dataset for ``config`` and the split the loop scores on, with a
    JSON-able description (source, sizes, classes, ignore index, notices, the scored split).

    ``scored="test"`` puts the held-out test split where the loop scores (``data.val``):
    ISBI's slices 24-29, or for a built-in synthetic source a draw from seeds neither training
    nor validation uses. A study that reports its curves then reports them on images that
    chose nothing (a study's own validation images are the ones its conclusions were drawn
    from)."""
    data = build_datasets(config)
    if scored == "test":
        test, _ = build_eval_dataset(config, data.mean, data.std, split="test",
                                     recorded=data.spec)
        data = replace(data, val=test)
    info = {"source": config.source, "crop": config.size, "train_images": len(data.train),
            "scored_split": scored, "scored_images": len(data.val),
            "classes": list(data.spec.class_names),
            "ignore_index": data.spec.ignore_index, "notices": list(data.notices)}
    return data, info


def make_model(contender: Contender, in_channels: int, num_classes: int) -> nn.Module:
    """A freshly initialised network (seed torch first). Binary losses get one output."""
    outputs = 1 if contender.binary else num_classes
    if contender.model == "unet":
        return UNet(in_channels, outputs, base=contender.base, upsample=contender.upsample)
    if contender.model == "monai":
        from monai.networks.nets import BasicUNet
        return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=outputs)
    import segmentation_models_pytorch as smp  # only in .venv-exp
    return smp.Unet("resnet34", encoder_weights=None, in_channels=in_channels, classes=outputs)


def smp_missing() -> str | None:
    """Why segmentation_models_pytorch cannot be imported here, or None when it can."""
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def make_criterion(contender: Contender, ignore_index: int) -> nn.Module:
    if contender.loss == "bce":
        return make_loss("bce_dice", ignore_index, dice_weight=0.0)
    return make_loss(contender.loss, ignore_index)


def batches(dataset: Dataset, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless training batches: a seeded shuffle per epoch, full batches only, the dataset's
    augmentation re-drawn per epoch (`set_epoch`)."""
    epoch = 0
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        order = torch.randperm(len(dataset),
                               generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        yield from DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(),
                              drop_last=len(dataset) >= batch_size)
        epoch += 1


# ---------------------------------------------------------------- evaluation

def pad_to_multiple(images: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """(N, C, H, W) padded with zeros (the normalised mean) on the bottom and right to the next
    multiple of ``multiple`` in H and W; unchanged when both already are."""
    height, width = images.shape[-2:]
    bottom, right = -height % multiple, -width % multiple
    return F.pad(images, (0, right, 0, bottom)) if bottom or right else images


@torch.inference_mode()
def predict_logits(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Logits (N, K, H, W) of a whole (N, C, H, W) batch: padded to a multiple of 32 for the
    forward pass, cropped back after."""
    height, width = image.shape[-2:]
    return model(pad_to_multiple(image))[..., :height, :width]


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class PaddedToMultiple(nn.Module):
    """``model`` run on inputs padded to a multiple of 32 (`predict_logits`), so that every
    contender, smp's encoders included, can be scored through `unetseg.evaluation.evaluate`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, images)


def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, ignore_index: int,
             class_names: list[str], binary: bool) -> dict[str, Any]:
    """Scores of ``model`` on every image of ``dataset``, read as ``unetseg evaluate`` reads
    them (`unetseg.evaluation.evaluate`: eval mode, whole images, one confusion matrix):
    ``miou``, ``pixel_accuracy``, ``pixel_error`` and per-class ``iou`` (None for a class
    absent from both truth and prediction); with ``binary`` also ``fg_iou``, the IoU of class
    1."""
    loader = evaluation.validation_loader(dataset, batch_size=1)
    scores = evaluation.evaluate(PaddedToMultiple(model), loader, num_classes,
                                 ignore_index=ignore_index).scores
    result = {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
              "pixel_error": 1.0 - scores.pixel_accuracy,
              "iou": {name: _finite_or_none(scores.iou[c].item())
                      for c, name in enumerate(class_names)}}
    if binary:
        result["fg_iou"] = _finite_or_none(scores.iou[1].item())
    return result


# ---------------------------------------------------------------- the loop

@dataclass
class Clock:
    """Training time so far: wall seconds and process CPU seconds, evaluation excluded."""

    wall: float = 0.0
    cpu: float = 0.0
    step_walls: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = self.wall + wall, self.cpu + cpu
        self.step_walls.append(wall)


def _progress(recipe: Recipe, step: int, clock: Clock) -> float:
    if recipe.steps is not None:
        return step / recipe.steps
    return clock.cpu / recipe.seconds


def train_contender(contender: Contender, data: Datasets, recipe: Recipe,
                    seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``contender`` on ``data`` with ``recipe`` from seed ``seed`` (initial weights and
    batch order; the data split and augmentation stream are the dataset's). Returns the model
    and the run: ``curve`` (one entry per evaluation: step, train_wall_s, train_cpu_s, loss
    (mean since the last evaluation), eval_s, metrics), ``final`` (the last entry's metrics),
    ``params``, ``steps``, ``step_wall_s`` (median wall seconds per step) and the setup."""
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(seed)
    spec = data.spec
    model = make_model(contender, data.in_channels, spec.num_classes)
    # The fast path wraps the same parameters: the optimiser and evaluation use `model`.
    network = model if recipe.precision == "fp32" else optimize_for_training(
        model, precision=recipe.precision, device="cpu")
    criterion = make_criterion(contender, spec.ignore_index)
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe.weight_decay), lr=recipe.lr)
    val = data.val if recipe.val_images is None else Subset(
        data.val, range(min(recipe.val_images, len(data.val))))
    scoring = (spec.num_classes, spec.ignore_index, list(spec.class_names), contender.binary)
    clock, curve, step = Clock(), [], 0
    loss_sum, loss_count = torch.zeros(()), 0
    model.train()
    stream = batches(data.train, recipe.batch_size, seed)
    while _progress(recipe, step, clock) < 1.0:
        wall, cpu = time.perf_counter(), time.process_time()
        images, masks = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * lr_factor(step, _progress(recipe, step, clock),
                                                recipe.warmup_steps)
        loss_sum += train_step(network, criterion, optimizer, images, masks,
                               recipe.grad_clip).loss
        clock.add(time.perf_counter() - wall, time.process_time() - cpu)
        step, loss_count = step + 1, loss_count + 1
        if step % recipe.eval_every == 0 or _progress(recipe, step, clock) >= 1.0:
            started = time.perf_counter()
            metrics = evaluate(model, val, *scoring)
            curve.append({"step": step, "train_wall_s": clock.wall, "train_cpu_s": clock.cpu,
                          "loss": loss_sum.item() / loss_count,
                          "eval_s": time.perf_counter() - started, "metrics": metrics})
            loss_sum, loss_count = torch.zeros(()), 0
    run = {"contender": asdict(contender), "seed": seed, "recipe": asdict(recipe),
           "params": sum(p.numel() for p in model.parameters()), "steps": step,
           "step_wall_s": statistics.median(clock.step_walls), "val_images": len(val),
           "curve": curve, "final": curve[-1]["metrics"]}
    return model, run


# ---------------------------------------------------------------- where it ran

def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and threads, for every results file."""
    cpu = platform.processor() or "unknown"
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next((line.split(":", 1)[1].strip() for line in lines.splitlines()
                    if line.startswith("Model name")), cpu)
    except (OSError, subprocess.CalledProcessError):
        pass                      # not Linux: platform.processor() is the best we have
    return {"cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- the studies' shared CLI

def study_parser(study: str, doc: str, datasets: tuple[str, ...],
                 full_seeds: int = 3) -> argparse.ArgumentParser:
    """The options every study has: --quick, --out, --seeds, --threads, --precision,
    --datasets and the dataset roots. ``full_seeds`` is the study's seeds per contender
    outside --quick."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a minute or two: a few steps, small crops, one "
                             "seed, one or two validation images (numbers are not evidence)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / study,
                        help=f"results folder (default: experiments/results/{study}/)")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds per contender (default: {full_seeds}, or 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default): every contender trains plainly; bf16: every "
                             "contender trains through unetseg's fast path (channels_last, bf16 "
                             "autocast), as `unetseg train` does where bf16 is faster")
    parser.add_argument("--datasets", default=",".join(datasets),
                        help=f"comma-separated subset of {','.join(datasets)}")
    parser.add_argument("--isbi-root", type=Path, default=DATASETS / "isbi2012-membrane")
    parser.add_argument("--camvid-root", type=Path, default=DATASETS / "camvid")
    return parser


def chosen_datasets(args: argparse.Namespace, known: tuple[str, ...]) -> list[str]:
    """The --datasets names, checked; SystemExit(2) naming a missing dataset folder."""
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(f"--datasets: expected names from {','.join(known)}, found "
                         f"{args.datasets!r}")
    for name in names:
        root = {"isbi": args.isbi_root, "camvid": args.camvid_root}.get(name)
        if root is not None and not root.is_dir():
            raise SystemExit(f"{name}: no dataset folder at {root}; pass --{name}-root DIR or "
                             f"leave {name} out of --datasets")
    return names
