"""The demo: train on synthetic shapes, score the best checkpoint on held-out shapes, draw
overlays (image | truth | prediction) and write the mask inspector's report. It needs no
download and runs in a few minutes on a CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .checkpoint import load_model
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data.synthetic import CLASS_NAMES, SyntheticShapes
from .data.folder import default_colours
from .evaluation import Evaluation, evaluate, predict_labels, sample_source
from .inspection_report import write_inspection_report
from .inspector import Inspection, Inspector
from .report import save_overlay_panel
from .runtime import pick_device
from .train import fit

__all__ = ["DemoResult", "run_demo", "free_run_dir"]

# Held-out images use seeds that neither training (seed 0...) nor validation (1_000_003...) use.
TEST_SEED = 2_000_003


@dataclass
class DemoResult:
    run_dir: Path
    evaluation: Evaluation
    class_names: list[str]
    inspection: Inspection
    seconds: float


def free_run_dir(out: str | Path) -> Path:
    """``out`` if it does not exist yet, else the first free ``out-2``, ``out-3``, ..."""
    out = Path(out)
    candidate, number = out, 2
    while candidate.exists():
        candidate = out.with_name(f"{out.name}-{number}")
        number += 1
    return candidate


def run_demo(
    out: str | Path = "runs/demo", epochs: int = 8, base: int = 16, size: int = 64,
    train_samples: int = 2000, test_samples: int = 200, overlays: int = 6,
    progress: bool = True,
) -> DemoResult:
    """Train, then evaluate ``best.safetensors`` on ``test_samples`` unseen images."""
    start = time.perf_counter()
    run_dir = free_run_dir(out)
    config = RunConfig(
        data=DataConfig(source="synthetic", size=size, batch_size=16,
                        train_samples=train_samples, val_samples=200),
        model=ModelConfig(base=base),
        train=TrainConfig(out=str(run_dir), epochs=epochs, lr=3e-3, progress=progress),
    )
    fit(config)

    device = pick_device()
    model, meta = load_model(run_dir / "best.safetensors", device)
    mean, std = meta["normalisation"]["mean"], meta["normalisation"]["std"]
    test = SyntheticShapes(test_samples, size, seed=TEST_SEED, mean=mean, std=std)
    inspector = Inspector(CLASS_NAMES, meta["ignore_index"])
    evaluation = evaluate(model, DataLoader(test, batch_size=32), len(CLASS_NAMES),
                          meta["ignore_index"], device, inspector=inspector)
    inspection = inspector.result()
    write_inspection_report(inspection, run_dir, meta["colours"],
                            sample_source(model, test, device, "fp32", False),
                            title="Mask inspection: the demo on held-out shapes",
                            ignore_index=meta["ignore_index"])

    colours = default_colours(len(CLASS_NAMES))
    raw = SyntheticShapes(overlays, size, seed=TEST_SEED)      # the same images, unnormalised
    with torch.inference_mode():
        for index in range(overlays):
            image, truth = raw[index]
            normalised, _ = test[index]
            prediction = predict_labels(model(normalised[None].to(device)))[0].cpu().numpy()
            save_overlay_panel(image.permute(1, 2, 0).numpy(), truth.numpy(), prediction,
                               colours, run_dir / "overlays" / f"{index}.png")
    return DemoResult(run_dir, evaluation, list(CLASS_NAMES), inspection,
                      time.perf_counter() - start)
