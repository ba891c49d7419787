"""Training: schedules, class weights, learning, resume, checkpoints and mixed precision.

The runs are tiny (base-8 U-Net, 32 x 32 synthetic images) so the whole file takes seconds; the
demo and the real-data runs in the README show the same loop at full size.
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

from unetseg.checkpoint import load_model, read_metadata
from unetseg.config import DataConfig, RunConfig, TrainConfig
from unetseg.data.build import build_datasets
from unetseg.evaluation import evaluate
from unetseg.jobs.evaluate import evaluate_checkpoint
from unetseg.losses import make_loss
from unetseg.model import UNet, UNetConfig
from unetseg.optim import lr_factor, parameter_groups
from unetseg.rundir import RunDir
from unetseg.runtime import Runtime, autocast
from unetseg.train import fit


@pytest.fixture
def trained(tiny_run):
    """The session's shared 2-epoch run (see conftest.py)."""
    return tiny_run


# --- schedule and class weights ----------------------------------------------------------------

def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    total, warmup = 100, 10
    factors = [lr_factor(step, total, warmup, "cosine") for step in range(total + 1)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)                  # half-way through the decay
    assert factors[100] == pytest.approx(0.0, abs=1e-12)
    decay = factors[10:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_onecycle_starts_and_ends_where_torch_onecycle_does():
    # OneCycleLR's defaults: start at max_lr / 25, end at max_lr / 25 / 1e4.
    total, warmup = 100, 30
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total,
                                                         pct_start=0.3)
    first = optimizer.param_groups[0]["lr"]
    for _ in range(total - 1):
        optimizer.step()
        torch_schedule.step()
    last = optimizer.param_groups[0]["lr"]
    ours_first = 1 / 25 + (1 - 1 / 25) * 0 / warmup               # before the first warm-up step
    assert first == pytest.approx(ours_first)
    assert lr_factor(total, total, warmup, "onecycle") == pytest.approx(last)
    assert lr_factor(warmup, total, warmup, "onecycle") == pytest.approx(1.0)


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


def test_checkpoint_reproduces_the_recorded_validation_miou(trained, tmp_path):
    """evaluate on best.safetensors gives the validation mIoU that training logged for it."""
    _, result = trained
    recorded = result.history[result.best_epoch - 1]["val_miou"]
    assert recorded == result.best_miou
    again = evaluate_checkpoint(result.run_dir / "best.safetensors", tmp_path)
    assert again.evaluation.scores.miou == pytest.approx(recorded, abs=1e-9)
    assert (tmp_path / "evaluation.json").is_file() and (tmp_path / "confusion.png").is_file()


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


def test_a_finished_run_is_not_overwritten_without_resume(trained):
    config, _ = trained
    with pytest.raises(ValueError, match="already holds a run .*--resume"):
        fit(config)


def test_resume_without_a_checkpoint_and_out_that_is_a_file_are_refused(make_tiny_config,
                                                                          tmp_path):
    with pytest.raises(ValueError, match="cannot resume: .*last.safetensors does not exist"):
        fit(make_tiny_config(tmp_path / "nothing"), resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file; expected a folder"):
        fit(make_tiny_config(tmp_path / "file"))


def test_early_stopping_ends_the_run_after_patience_epochs(make_tiny_config, tmp_path,
                                                           caplog):
    caplog.set_level(logging.INFO, logger="unetseg")
    # With lr 0 only BatchNorm's running statistics move, so validation mIoU soon stalls.
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


def test_binary_data_trains_with_bce_dice_and_one_output_channel(make_tiny_config, tmp_path):
    config = make_tiny_config(tmp_path / "binary", epochs=1, loss="bce_dice")
    config = replace(config, data=replace(config.data, source="binary", foreground=0.2))
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    assert model.config.num_classes == 1 and meta["binary"]
    assert meta["class_names"] == ["background", "object"]
    assert math.isfinite(result.history[0]["val_miou"])


def test_bce_dice_refuses_more_than_two_classes(make_tiny_config, tmp_path):
    with pytest.raises(ValueError, match="bce_dice is for binary tasks .* has 3"):
        fit(make_tiny_config(tmp_path / "b", loss="bce_dice"))


def test_missing_tensorboard_is_reported_and_training_goes_on(make_tiny_config, tmp_path, caplog,
                                                              monkeypatch):
    import builtins

    caplog.set_level(logging.INFO, logger="unetseg")
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    fit(make_tiny_config(tmp_path / "tb", epochs=1, tensorboard=True))
    assert "tensorboard package is not installed" in caplog.text
    assert (tmp_path / "tb" / "last.safetensors").is_file()


# --- mixed precision and memory layout ---------------------------------------------------------

def test_channels_last_fp32_equals_the_default_layout(trained):
    _, result = trained
    model, _ = load_model(result.run_dir / "best.safetensors")
    images = torch.randn(4, 3, 40, 56)
    with torch.inference_mode():
        plain = model(images)
        fast = model.to(memory_format=torch.channels_last)(
            images.contiguous(memory_format=torch.channels_last))
    assert (plain - fast).abs().max().item() < 1e-4


def test_bf16_autocast_changes_only_near_ties(trained):
    """bf16 + channels_last (the default where the CPU has native bf16) against fp32: the
    probabilities move by bf16's rounding, and a label changes only where fp32 itself was
    nearly tied between two classes. Both hold for any weights, trained well or not."""
    config, result = trained
    model, _ = load_model(result.run_dir / "best.safetensors")
    images, _ = next(iter(DataLoader(build_datasets(config.data).val, batch_size=24)))
    with torch.inference_mode():
        high = model(images).float().softmax(1)
        with autocast(torch.device("cpu"), "bf16"):
            low = model.to(memory_format=torch.channels_last)(
                images.contiguous(memory_format=torch.channels_last)).float().softmax(1)
    assert (low - high).abs().mean().item() < 0.01
    top2 = high.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]                     # fp32's lead of the winning class
    changed = low.argmax(1) != high.argmax(1)
    assert (margin[changed] < 0.1).all()


def test_validation_loss_is_the_training_objective(make_tiny_config, tmp_path):
    """val_loss uses the run's own loss: with --dice-weight 0, CE + Dice is plain CE, so the
    logged validation loss equals the cross-entropy of the saved model on the validation set."""
    config = make_tiny_config(tmp_path / "ce_only", epochs=1, dice_weight=0.0,
                              class_weights="1,2,3")
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    loader = DataLoader(build_datasets(config.data).val, batch_size=config.data.batch_size)
    weights = torch.tensor([1.0, 2.0, 3.0])
    ce = evaluate(model, loader, 3, make_loss("ce", class_weights=weights),
                  Runtime(torch.device("cpu"), meta["precision"], True))   # as the run did
    assert result.history[0]["val_loss"] == pytest.approx(ce.loss, rel=1e-6)


def test_weight_decay_spares_biases_and_norm_parameters():
    model = UNet(3, 2, base=4)
    decayed, spared = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and decayed["params"]
    assert all(p.ndim == 1 for p in spared["params"]) and spared["params"]
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norm_weights <= {id(p) for p in spared["params"]}
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))


# --- how long a run trains: --max-steps, --time-budget, --val-every -----------------------------

def test_max_steps_ends_part_way_through_an_epoch_at_the_end_of_the_cosine(make_tiny_config,
                                                                           tmp_path):
    """96 images in batches of 8 make 12 steps an epoch: 18 steps end half-way through the
    second epoch, with a validation there, and the schedule spans exactly those 18 steps
    (the learning rate after the last one is the cosine's end, 0)."""
    result = fit(make_tiny_config(tmp_path / "steps", epochs=50, max_steps=18))
    assert [(row["epoch"], row["step"]) for row in result.history] == [(1, 12), (2, 18)]
    assert result.history[-1]["lr"] == 0.0
    assert result.history[0]["lr"] > 0.0


def test_val_every_validates_every_n_epochs_and_after_the_last(make_tiny_config, tmp_path):
    result = fit(make_tiny_config(tmp_path / "sparse", epochs=5, val_every=2))
    assert [(row["epoch"], row["step"]) for row in result.history] == [(2, 24), (4, 48),
                                                                      (5, 60)]
    # Each row's seconds cover the epochs since the previous row; none is lost.
    state = load_model(result.run_dir / "last.safetensors")[1]["training"]
    assert sum(row["seconds"] for row in result.history) == pytest.approx(
        state["progress"]["seconds"],
                                                                          abs=0.05)


def test_a_timed_plan_fits_the_steps_its_pace_allows():
    from unetseg.config import TrainConfig
    from unetseg.run_length import RunLength

    plan = RunLength.from_config(TrainConfig(time_budget=1.0, warmup_epochs=1.0), 12)
    assert plan.timed and plan.warmup_steps == 12
    plan.estimate(10, 5.0)                   # 0.5 s a step: 120 steps fit in 60 s
    assert plan.total_steps == 120 and plan.epochs == 10
    plan.estimate(100, 70.0)                 # the budget is spent: stop where it stands
    assert plan.total_steps == 100 and plan.finished(100)
    capped = RunLength.from_config(TrainConfig(time_budget=1.0, max_steps=30), 12)
    capped.estimate(10, 1.0)                 # 600 steps would fit; --max-steps says 30
    assert capped.total_steps == 30
    tiny = RunLength.from_config(TrainConfig(time_budget=0.01, warmup_epochs=2.0), 12)
    tiny.estimate(2, 0.3)                    # 4 steps fit: the warm-up shrinks below them
    assert tiny.total_steps == 4 and tiny.warmup_steps == 3
    one_step_epochs = RunLength.from_config(TrainConfig(time_budget=30.0), 1)
    one_step_epochs.estimate(10, 1.0)        # the 1000-epoch guess is no limit: 18,000 fit
    assert one_step_epochs.total_steps == 18_000
    untimed = RunLength.from_config(TrainConfig(epochs=3), 12)
    untimed.estimate(10, 1e6)                # epochs are exact: the clock changes nothing
    assert untimed.total_steps == 36 and not untimed.timed


def test_a_time_budget_ends_the_run_with_a_validation_at_the_end_of_its_schedule(
        make_tiny_config, tmp_path):
    """A budget far shorter than the 1000 epochs a timed run first plans: the run re-plans
    from its pace, stops, and ends validated and checkpointed at the bottom of its cosine."""
    result = fit(make_tiny_config(tmp_path / "timed", epochs=1, time_budget=0.05))
    last = result.history[-1]
    assert last["lr"] == 0.0
    assert 1 <= last["step"] < 1000 * 12
    assert (result.run_dir / "last.safetensors").is_file()


def test_a_time_budget_is_kept_with_epochs_shorter_than_a_read_interval(make_tiny_config,
                                                                        tmp_path):
    """Two steps an epoch never reach the 5-batch read interval: the plan is re-estimated at
    every epoch's end as well, or this run would plan 1000 epochs and never stop early."""
    config = make_tiny_config(tmp_path / "short", epochs=1, time_budget=0.03)
    config = replace(config, data=replace(config.data, train_samples=16))
    result = fit(config)
    assert result.history[-1]["lr"] == 0.0 and result.history[-1]["step"] < 1000 * 2


def test_a_changed_plan_takes_effect_before_the_next_step():
    """The scheduler sets the learning rate once per step, from the plan of that moment; after
    a re-plan, `follow_schedule` makes the next step use the new plan's rate."""
    from unetseg.config import TrainConfig
    from unetseg.optim import follow_schedule, make_optimizer
    from unetseg.run_length import RunLength

    model = torch.nn.Conv2d(1, 1, 3)
    plan = RunLength.from_config(TrainConfig(epochs=10, lr=1.0, warmup_epochs=1.0), 10)
    optimizer, scheduler = make_optimizer(model, TrainConfig(lr=1.0), plan)
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_factor(50, 100, 10, "cosine"))
    plan.total_steps = 50                     # the budget is spent: the plan ends here
    follow_schedule(scheduler)
    assert [group["lr"] for group in optimizer.param_groups] == [0.0, 0.0]
