"""Fixtures shared by the test files: small training runs made once per test session.

Most tests that need a trained model only read one: they share `tiny_run` (2 epochs, seconds)
or `shapes_checkpoint` (a longer run on larger shapes, for prediction). Tests that check
training itself (resume, faults, flags) make their own runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
from unetseg.train import FitResult, fit


def pytest_configure(config):
    """Keep the precision measurements of `unetseg.precision` out of the user's ~/.cache: one
    cache per test session, shared with the training processes tests start."""
    os.environ.setdefault("UNETSEG_CACHE_DIR", tempfile.mkdtemp(prefix="unetseg-cache-"))


def tiny_config(out: str | Path, epochs: int = 2, **train) -> RunConfig:
    """A run of a base-8 U-Net on 96 synthetic 32 x 32 images: about a second an epoch."""
    return RunConfig(
        data=DataConfig(source="synthetic", size=32, batch_size=8, train_samples=96,
                        val_samples=24),
        model=UNetConfig(base=8),
        train=TrainConfig(**{"out": str(out), "epochs": epochs, "lr": 1e-2, "progress": False,
                             **train}),
    )


@pytest.fixture(scope="session")
def make_tiny_config():
    """`tiny_config` for tests that need their own short run."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[RunConfig, FitResult]:
    """One uninterrupted 2-epoch run, shared by every test that only reads its results."""
    config = tiny_config(tmp_path_factory.mktemp("runs") / "tiny")
    return config, fit(config)


@pytest.fixture(scope="session")
def shapes_checkpoint(tmp_path_factory) -> Path:
    """best.safetensors of a base-8 U-Net trained for 5 epochs on 64 x 64 synthetic shapes:
    the scale of `tests/test_infer.py`'s scenes. Tests use it for invariants (tiles against
    whole images, precision against precision), never for its accuracy."""
    out = tmp_path_factory.mktemp("runs") / "shapes"
    config = RunConfig(
        data=DataConfig(source="synthetic", size=64, batch_size=16, train_samples=512,
                        val_samples=32),
        model=UNetConfig(base=8),
        train=TrainConfig(out=str(out), epochs=5, lr=1e-2, progress=False),
    )
    fit(config)
    return out / "best.safetensors"
