"""Training (`unetseg.train.fit`): learning, the run folder, resume, class weights, losses, and
how long a run trains.

Tests that read a finished run share the session's `tiny_run`; tests of training itself make
the smallest run that shows what they check (`smallest_config`: base 4, 32 x 32, 2 steps an
epoch). The demo and the real-data runs in the README show the same loop at full size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import unetseg.train as train_module
from unetseg.checkpoint import load_model, read_metadata
from unetseg.config import DataConfig, RunConfig, TrainConfig
from unetseg.data.build import build_datasets
from unetseg.evaluation import evaluate
from unetseg.losses import make_loss
from unetseg.model import UNet, UNetConfig
from unetseg.rundir import RunDir
from unetseg.train import fit


@pytest.fixture
def trained(tiny_run):
    """The session's shared 2-epoch run (see conftest.py)."""
    return tiny_run


# --- learning --------------------------------------------------------------------------------

def test_two_epochs_improve_on_the_untrained_model(trained):
    """Learning, judged against the same run's starting point, not a tuned threshold: the
    trained model's validation loss and mIoU beat those of the initial weights."""
    config, result = trained
    data = build_datasets(config.data)
    torch.manual_seed(config.train.seed)                 # the run's initial weights
    untrained = UNet(3, 3, base=config.model.base)
    before = evaluate(untrained, DataLoader(data.val, batch_size=8), 3, make_loss("ce_dice"))
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["val_loss"] < before.loss
    assert history[-1]["val_miou"] > before.scores.miou
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_run_folder_holds_config_checkpoints_logs_and_curves(trained):
    config, result = trained
    names = {path.name for path in result.run_dir.iterdir()}
    assert {"config.yaml", "last.safetensors", "best.safetensors", "metrics.jsonl",
            "metrics.csv", "curves.png"} <= names
    assert not [name for name in names if name.endswith(".tmp")]
    # Recorded as run: the model's channels in and out resolved from the data.
    resolved = replace(config, model=replace(config.model, in_channels=3, num_classes=3))
    assert RunConfig.from_yaml(result.run_dir / "config.yaml") == resolved
    csv = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert csv[0].split(",")[-3:] == ["iou_background", "iou_circle", "iou_square"]
    assert len(csv) == 3
    column = csv[0].split(",").index("val_miou")
    assert float(csv[2].split(",")[column]) == pytest.approx(result.history[1]["val_miou"])


def test_checkpoint_records_classes_normalisation_and_loads_without_pickle(trained):
    _, result = trained
    model, meta = load_model(result.run_dir / "best.safetensors")
    assert meta["class_names"] == ["background", "circle", "square"]
    assert len(meta["normalisation"]["mean"]) == 3
    assert meta["model_config"]["base"] == 8
    assert isinstance(model, UNet) and not model.training


def test_resume_after_epoch_one_equals_the_uninterrupted_run(trained, tmp_path, monkeypatch):
    """Stop a run right after its first checkpoint, resume it: same weights, bit for bit."""
    config, whole = trained
    interrupted = replace(config, train=replace(config.train, out=str(tmp_path / "resumed")))
    real_save = RunDir.save_resume

    def stop_after_first_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill after epoch 1's checkpoint")

    monkeypatch.setattr(RunDir, "save_resume", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted)
    monkeypatch.setattr(RunDir, "save_resume", real_save)
    resumed = fit(interrupted, resume=True)

    expected = load_file(whole.run_dir / "last.safetensors")
    found = load_file(resumed.run_dir / "last.safetensors")
    assert expected.keys() == found.keys()
    for name in expected:                  # weights, optimiser moments, RNG state
        assert torch.equal(expected[name], found[name]), name
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history] == strip


def test_resume_without_a_checkpoint_and_out_that_is_a_file_are_refused(make_tiny_config,
                                                                          tmp_path):
    with pytest.raises(ValueError, match="cannot resume: .*last.safetensors does not exist"):
        fit(make_tiny_config(tmp_path / "nothing"), resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file; expected a folder"):
        fit(make_tiny_config(tmp_path / "file"))


def test_early_stopping_ends_the_run_after_patience_epochs(make_tiny_config, tmp_path,
                                                           caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="unetseg")
    # With lr 0 only BatchNorm's running statistics move, so validation mIoU soon stalls. The
    # untrained model's classes look collapsed too, which --patience also stops on
    # (tests/test_health.py): that rule is left out here.
    monkeypatch.setattr(train_module, "_collapsed_for", lambda history: 0)
    config = make_tiny_config(tmp_path / "flat", epochs=6, lr=0.0, patience=1)
    result = fit(config)
    mious = [row["val_miou"] for row in result.history]
    best = max(range(len(mious)), key=mious.__getitem__)
    assert len(mious) == best + 1 + 1 < 6            # stopped one epoch after the best
    assert result.best_epoch == best + 1
    assert "early stop: no better validation mIoU in 1 validations" in caplog.text


def test_class_weights_are_checked_against_the_class_count(make_tiny_config, tmp_path):
    with pytest.raises(ValueError, match="--class-weights gives 2 weights for 3 classes"):
        fit(make_tiny_config(tmp_path / "w", class_weights="1,2"))
    with pytest.raises(ValueError, match="--class-weights median needs"):
        fit(make_tiny_config(tmp_path / "m", class_weights="median"))


@pytest.mark.parametrize("spec,power", [("median", 1.0), ("sqrt-median", 0.5)])
def test_median_weights_come_from_the_training_masks_pixels(tmp_path, spec, power):
    """The weights a folder run trains with are the (square roots of the) median-frequency
    weights of its training masks' pixels, counted here with numpy, not the validation's."""
    rng = np.random.default_rng(0)
    masks = {}
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            mask = (rng.random((32, 32)) < [[0.05], [0.3]][i % 2]).astype(np.uint8)
            mask[:, :4] = 2                            # class 2: an eighth of every mask
            for folder, array in (("images", rng.integers(0, 256, (32, 32, 3), np.uint8)),
                                  ("masks", mask)):
                (tmp_path / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(tmp_path / split / folder / f"{i}.png")
            masks[f"{split}{i}"] = mask
    train = np.stack([masks[f"train{i}"] for i in range(3)])
    freq = np.bincount(train.ravel(), minlength=3) / train.size
    expected = (np.median(freq) / freq) ** power
    config = RunConfig(data=DataConfig(source=str(tmp_path), size=32, batch_size=2,
                                       classes=("a", "b", "c"), augment=False),
                       model=UNetConfig(base=4),
                       train=TrainConfig(out=str(tmp_path / "run"), max_steps=1,
                                         class_weights=spec, progress=False))
    fit(config)
    recorded = read_metadata(tmp_path / "run" / "best.safetensors")["class_weights"]
    assert recorded == pytest.approx(expected.tolist(), rel=1e-6)


def test_binary_data_trains_with_bce_dice_and_one_output_channel(make_smallest_config,
                                                                 tmp_path):
    config = make_smallest_config(tmp_path / "binary", loss="bce_dice")
    config = replace(config, data=replace(config.data, source="binary", foreground=0.2))
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    assert model.config.num_classes == 1 and meta["binary"]
    assert meta["class_names"] == ["background", "object"]
    assert math.isfinite(result.history[0]["val_miou"])


def test_bce_dice_refuses_more_than_two_classes(make_tiny_config, tmp_path):
    with pytest.raises(ValueError, match="bce_dice is for binary tasks .* has 3"):
        fit(make_tiny_config(tmp_path / "b", loss="bce_dice"))


def test_missing_tensorboard_is_reported_and_training_goes_on(make_smallest_config, tmp_path,
                                                              caplog, monkeypatch):
    import builtins

    caplog.set_level(logging.INFO, logger="unetseg")
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    fit(make_smallest_config(tmp_path / "tb", tensorboard=True))
    assert "tensorboard package is not installed" in caplog.text
    assert (tmp_path / "tb" / "last.safetensors").is_file()


# --- how long a run trains: --max-steps, --time-budget, --val-every -----------------------------

def test_max_steps_ends_part_way_through_an_epoch_at_the_end_of_the_cosine(
        make_smallest_config, tmp_path):
    """32 images in batches of 8 make 4 steps an epoch: 6 steps end half-way through the
    second epoch, with a validation there, and the schedule spans exactly those 6 steps
    (the learning rate after the last one is the cosine's end, 0)."""
    result = fit(make_smallest_config(tmp_path / "steps", epochs=50, max_steps=6,
                                      train_samples=32))
    assert [(row["epoch"], row["step"]) for row in result.history] == [(1, 4), (2, 6)]
    assert result.history[-1]["lr"] == 0.0
    assert result.history[0]["lr"] > 0.0


def test_val_every_validates_every_n_epochs_and_after_the_last(make_smallest_config, tmp_path):
    result = fit(make_smallest_config(tmp_path / "sparse", epochs=5, val_every=2))
    assert [(row["epoch"], row["step"]) for row in result.history] == [(2, 4), (4, 8), (5, 10)]
    # Each row's seconds cover the epochs since the previous row; none is lost.
    state = load_model(result.run_dir / "last.safetensors")[1]["training"]
    assert sum(row["seconds"] for row in result.history) == pytest.approx(
        state["progress"]["seconds"], abs=0.05)


def test_epoch_steps_split_each_pass_so_validation_comes_every_n_steps(make_smallest_config,
                                                                       tmp_path):
    """36 images in batches of 8 are a pass of 4 whole batches (the 4 images left over are
    dropped, as in a whole pass); --epoch-steps 2 makes it two epochs of 2 steps, each
    validated, and --epochs then counts those."""
    result = fit(make_smallest_config(tmp_path / "parts", epochs=3, epoch_steps=2,
                                      train_samples=36))
    assert [(row["epoch"], row["step"]) for row in result.history] == [(1, 2), (2, 4), (3, 6)]


def test_a_time_budget_ends_the_run_with_a_validation_at_the_end_of_its_schedule(
        make_smallest_config, tmp_path):
    """A budget far shorter than the 1000 epochs a timed run first plans: the run re-plans
    from its pace, stops, and ends validated and checkpointed at the bottom of its cosine."""
    result = fit(make_smallest_config(tmp_path / "timed", time_budget=0.02, train_samples=96))
    last = result.history[-1]
    assert last["lr"] == 0.0
    assert 1 <= last["step"] < 1000 * 12
    assert (result.run_dir / "last.safetensors").is_file()


def test_a_time_budget_is_kept_with_epochs_shorter_than_a_read_interval(make_smallest_config,
                                                                        tmp_path):
    """Two steps an epoch never reach the read interval (`READ_EVERY` batches): the plan is
    re-estimated at every epoch's end as well, or this run would plan 1000 epochs and never stop
    early."""
    result = fit(make_smallest_config(tmp_path / "short", time_budget=0.02, train_samples=16))
    assert result.history[-1]["lr"] == 0.0 and result.history[-1]["step"] < 1000 * 2


def test_a_dataset_file_with_one_class_is_refused_before_training(tmp_path, make_tiny_config):
    """A dataset file naming one class is refused like `--classes` with one name: every pixel
    would be that class and the score a meaningless 1.0."""
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for index in range(4):
        Image.fromarray(np.full((16, 16), 40 * index, np.uint8)).save(
            tmp_path / "data" / "images" / f"{index}.png")
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(
            tmp_path / "data" / "masks" / f"{index}.png")
    (tmp_path / "data" / "dataset.yaml").write_text("classes: [membrane]\n")
    config = make_tiny_config(tmp_path / "run")
    config = replace(config, data=DataConfig(source=str(tmp_path / "data"), size=16,
                                             batch_size=config.data.batch_size))
    with pytest.raises(ValueError, match=r"the dataset names 1 class; segmentation needs at "
                                         r"least 2 .*--classes background,membrane"):
        fit(config)
    assert not (tmp_path / "run").exists()
