"""The demo: train on synthetic shapes, score the best checkpoint on held-out shapes, draw
overlays (image | truth | prediction) and write the mask inspector's report. It needs no
download and runs in a few minutes on a CPU.

Its output policy (`unetseg.outputs`): numbered. An earlier demo is never replaced; a new one
goes to the first free ``runs/demo-2``, ``runs/demo-3``, ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import read_metadata
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..files import atomic_write_bytes
from ..outputs import numbered_folder
from ..report.images import colourise, side_by_side, to_rgb8
from ..report.inspection import write_inspection_report
from ..train import fit
from .inspect import training_health
from .scoring import ScoredSplit, score_split

__all__ = ["DemoResult", "run_demo", "free_run_dir"]


@dataclass
class DemoResult:
    run_dir: Path
    scored: ScoredSplit              # the best checkpoint on the held-out ("test") draw
    seconds: float


# The demo's folder: `numbered_folder`, under the name tests and callers know.
free_run_dir = numbered_folder


def run_demo(
    out: str | Path = "runs/demo", epochs: int = 8, base: int = 16, size: int = 64,
    train_samples: int = 2000, test_samples: int = 200, overlays: int = 6,
    progress: bool = True,
) -> DemoResult:
    """Train, then score ``best.safetensors`` on ``test_samples`` images drawn from seeds
    that neither training nor validation (model selection) used."""
    start = time.perf_counter()
    run_dir = free_run_dir(out)
    config = RunConfig(
        data=DataConfig(source="synthetic", size=size, batch_size=16,
                        train_samples=train_samples, val_samples=test_samples),
        model=ModelConfig(base=base),
        train=TrainConfig(out=str(run_dir), epochs=epochs, lr=3e-3, progress=progress),
    )
    fit(config)
    scored = score_split(run_dir / "best.safetensors", split="test", progress=progress)
    write_inspection_report(scored.inspection, run_dir, scored.colours, scored.sample,
                            title="Mask inspection: the demo on held-out shapes",
                            ignore_index=scored.ignore_index,
                            health=training_health(read_metadata(run_dir / "best.safetensors")),
                            calibration=scored.evaluation.calibration)
    for index in range(min(overlays, scored.images)):
        image, truth, prediction = scored.sample(index)
        panel = side_by_side([to_rgb8(image), colourise(truth, scored.colours),
                              colourise(prediction, scored.colours)], min_height=192)
        atomic_write_bytes(run_dir / "overlays" / f"{index}.png", panel)
    return DemoResult(run_dir, scored, time.perf_counter() - start)
