"""Run configuration: one frozen dataclass per concern, from CLI flags and/or a YAML file.

A run's resolved configuration is written beside it (``config.yaml``) and inside every
checkpoint, so a run can be read, repeated and resumed from its folder alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .data.sources import DataConfig
from .losses import LOSS_NAMES

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "DataConfig"]

SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True)
class ModelConfig:
    """The U-Net's shape; channels in and out come from the data."""

    base: int = 32
    depth: int = 4
    upsample: str = "bilinear"
    norm: str = "batch"
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    out: str = "runs/unet"
    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"          # cosine with linear warm-up, or one-cycle
    warmup_epochs: float = 1.0
    loss: str = "ce_dice"             # ce_dice | ce | dice | bce_dice (binary, one logit)
    dice_weight: float = 1.0          # lambda of the Dice term
    class_weights: str | None = None  # None | "median" (median frequency) | "w0,w1,..."
    grad_clip: float = 1.0            # max gradient norm; 0 turns clipping off
    precision: str = "auto"           # auto | fp32 | bf16 | fp16 (CUDA)
    channels_last: bool = True
    seed: int = 0
    patience: int = 0                 # epochs without a better val mIoU before stopping; 0 = off
    max_nonfinite: int = 5            # stop after this many non-finite losses in a row
    checkpoint_every: int = 0         # also checkpoint every N batches within an epoch; 0 = off
    sync_batchnorm: bool = False      # DDP: BatchNorm statistics over the global batch
    device: str | None = None
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {LOSS_NAMES}, found {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, found {self.schedule!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, found {self.epochs}")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts and lists (tuples become lists), for JSON and YAML."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from nested dicts (a YAML file or a checkpoint); unknown keys are errors."""
        parts = {}
        for part in fields(cls):
            section = dict(values.get(part.name) or {})
            kind = part.default_factory
            known = {f.name for f in fields(kind)}
            unknown = set(section) - known
            if unknown:
                raise ValueError(f"unknown {part.name} settings {sorted(unknown)}; "
                                 f"known: {sorted(known)}")
            for key in ("mean", "std", "classes"):
                if section.get(key) is not None:
                    section[key] = tuple(section[key])
            parts[part.name] = kind(**section)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected data, "
                             f"model, train")
        return cls(**parts)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected sections data, model, train")
        return cls.from_dict(values)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)
