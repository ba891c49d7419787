"""Fixtures shared by the test files: data folders made to order, and small training runs made
once per test session.

Tests that need a trained model only read one: they share `tiny_run` (synthetic shapes, 2
epochs, seconds; `shapes_checkpoint` is its best checkpoint) or `folder_run` (a folder of box
images whose height is no multiple of 16). A test that changes a run (resumes it,
extends it) works on its own copy, `tiny_run_copy`. Tests about training itself (resume,
faults, signals, flags) make their own runs, as small as what they check allows:
`smallest_config`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
from unetseg.train import FitResult, fit


def pytest_collection_modifyitems(config, items):
    """The slow tests (real processes, DDP, large images) first: under `make test`'s workers
    they then run beside the many short ones instead of last, one worker idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)    # stable


def pytest_configure(config):
    """Keep the precision measurements of `unetseg.precision` out of the user's ~/.cache: one
    cache per test session, shared with the training processes tests start."""
    os.environ.setdefault("UNETSEG_CACHE_DIR", tempfile.mkdtemp(prefix="unetseg-cache-"))


# torch's thread count as the session started, before any test or fixture ran.
THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def same_torch_threads():
    """After every test, torch's thread count is the session's again (the studies' loop sets
    it to 1, in a test or in a fixture): a run made here and one made in a process of its own,
    compared bit for bit, must have used the same number of threads."""
    yield
    torch.set_num_threads(THREADS)


# --- data folders --------------------------------------------------------------------------------

def box_folder(root: Path, count: int, size: tuple[int, int] = (24, 24),
               classes: tuple[str, ...] = ("background", "box"), order=None,
               dataset_file: bool = True, seed: int = 1) -> Path:
    """``root/images`` + ``root/masks``: ``count`` grey PNGs of a bright box (``classes[1]``) a
    third of the image's size, at a random place, on a dark noisy background (``classes[0]``),
    and a dataset.yaml listing ``order`` (default ``classes``); the masks are written in
    ``order``'s labels."""
    order = list(order or classes)
    background, foreground = order.index(classes[0]), order.index(classes[1])
    height, width = size
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        box = np.zeros((height, width), dtype=bool)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        box[top:top + max(1, height // 3), left:left + max(1, width // 3)] = True
        image = np.where(box, 200, 40) + rng.normal(0, 10, box.shape)
        mask = np.where(box, foreground, background).astype(np.uint8)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    if dataset_file:
        (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": order}))
    return root


@pytest.fixture(scope="session")
def make_box_folder():
    """`box_folder`: a folder of images and masks with known content, made to order."""
    return box_folder


# --- runs ----------------------------------------------------------------------------------------

def tiny_config(out: str | Path, epochs: int = 2, **train) -> RunConfig:
    """A run of a base-8 U-Net on 96 synthetic 32 x 32 images: about a second an epoch."""
    return RunConfig(
        data=DataConfig(source="synthetic", size=32, batch_size=8, train_samples=96,
                        val_samples=24),
        model=UNetConfig(base=8),
        train=TrainConfig(**{"out": str(out), "epochs": epochs, "lr": 1e-2, "progress": False,
                             **train}),
    )


def smallest_config(out: str | Path, epochs: int = 1, train_samples: int = 16,
                    val_samples: int = 8, **train) -> RunConfig:
    """The least training that still is training: a base-4 U-Net, 32 x 32 synthetic images in
    batches of 8 (``train_samples`` / 8 steps an epoch), fp32."""
    return RunConfig(
        data=DataConfig(source="synthetic", size=32, batch_size=8, train_samples=train_samples,
                        val_samples=val_samples),
        model=UNetConfig(base=4),
        train=TrainConfig(**{"out": str(out), "epochs": epochs, "lr": 1e-2, "progress": False,
                             "precision": "fp32", **train}),
    )


@pytest.fixture(scope="session")
def make_tiny_config():
    """`tiny_config` for tests that need their own run of the shared run's shape."""
    return tiny_config


@pytest.fixture(scope="session")
def make_smallest_config():
    """`smallest_config` for tests about training itself, which need their own run."""
    return smallest_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[RunConfig, FitResult]:
    """One uninterrupted 2-epoch run, shared by every test that only reads its results."""
    config = tiny_config(tmp_path_factory.mktemp("runs") / "tiny")
    return config, fit(config)


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> RunConfig:
    """The config of a copy of `tiny_run`'s folder, for a test that changes the run."""
    config, result = tiny_run
    copy = tmp_path / "tiny-copy"
    shutil.copytree(result.run_dir, copy)
    return replace(config, train=replace(config.train, out=str(copy)))


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory) -> tuple[RunConfig, FitResult]:
    """A finished 2-epoch run on a folder of 16 `box_folder` images of 40 x 56, of which 4
    validate: a height that is no multiple of 16, so scoring whole images pads them. Classes
    background and box."""
    root = tmp_path_factory.mktemp("folder-run")
    config = RunConfig(
        data=DataConfig(source=str(box_folder(root / "data", 16, size=(40, 56), seed=0)),
                        size=32, batch_size=4, val_ratio=0.25),
        model=UNetConfig(base=4),
        train=TrainConfig(out=str(root / "run"), epochs=2, lr=1e-2, progress=False),
    )
    return config, fit(config)


@pytest.fixture(scope="session")
def shapes_checkpoint(tiny_run) -> Path:
    """best.safetensors of the shared `tiny_run` (a U-Net trained on synthetic shapes), for
    the prediction tests. They use it for invariants (tiles against whole images, precision
    against precision, ONNX against PyTorch), never for its accuracy, so the shared run does:
    a second, longer run on larger shapes took seconds for nothing those tests check."""
    return tiny_run[1].run_dir / "best.safetensors"
