"""Training: schedules, class weights, learning, resume, checkpoints and mixed precision.

The runs are tiny (base-8 U-Net, 32 x 32 synthetic images) so the whole file takes seconds; the
demo and the real-data runs in the README show the same loop at full size.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import unetseg.train as train_module
from unetseg.checkpoint import load_model
from unetseg.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from unetseg.data.sources import build_datasets
from unetseg.evaluation import evaluate, evaluate_checkpoint
from unetseg.model import UNet
from unetseg.runtime import autocast
from unetseg.train import fit, lr_factor, median_frequency_weights


def tiny_config(out, epochs: int = 2, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(source="synthetic", size=32, batch_size=8, train_samples=96,
                        val_samples=24),
        model=ModelConfig(base=8),
        train=TrainConfig(**{"out": str(out), "epochs": epochs, "lr": 1e-2, "progress": False,
                             **train}),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the tests that read its results."""
    config = tiny_config(tmp_path_factory.mktemp("runs") / "whole")
    return config, fit(config)


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


def test_median_frequency_weights_by_hand():
    # Shares 0.1, 0.3, 0.6: the median share is 0.3, so the weights are 3, 1 and 0.5.
    assert median_frequency_weights([100, 300, 600]) == pytest.approx([3.0, 1.0, 0.5])
    # An absent class gets weight 0 and does not move the median of the present ones.
    assert median_frequency_weights([100, 0, 300]) == pytest.approx([2.0, 0.0, 2 / 3])


# --- learning --------------------------------------------------------------------------------

def test_two_epochs_improve_validation_miou_over_the_untrained_model(trained):
    config, result = trained
    data = build_datasets(config.data)
    torch.manual_seed(config.train.seed)
    untrained = UNet(3, 3, base=config.model.base)
    before = evaluate(untrained, DataLoader(data.val, batch_size=8), 3, 255).scores.miou
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["val_miou"] > before + 0.1
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_run_folder_holds_config_checkpoints_logs_and_curves(trained):
    config, result = trained
    names = {path.name for path in result.run_dir.iterdir()}
    assert {"config.yaml", "last.safetensors", "best.safetensors", "metrics.jsonl",
            "metrics.csv", "curves.png"} <= names
    assert not [name for name in names if name.endswith(".tmp")]
    assert RunConfig.from_yaml(result.run_dir / "config.yaml") == config
    csv = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert csv[0].split(",")[-3:] == ["iou_background", "iou_circle", "iou_square"]
    assert len(csv) == 3
    assert float(csv[2].split(",")[4]) == pytest.approx(result.history[1]["val_miou"])


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
    real_save = train_module._save_last

    def stop_after_first_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill after epoch 1's checkpoint")

    monkeypatch.setattr(train_module, "_save_last", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted)
    monkeypatch.setattr(train_module, "_save_last", real_save)
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


def test_resume_without_a_checkpoint_and_out_that_is_a_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot resume: .*last.safetensors does not exist"):
        fit(tiny_config(tmp_path / "nothing"), resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file; expected a folder"):
        fit(tiny_config(tmp_path / "file"))


def test_early_stopping_ends_the_run_after_patience_epochs(tmp_path, capsys):
    # With lr 0 only BatchNorm's running statistics move, so validation mIoU soon stalls.
    config = tiny_config(tmp_path / "flat", epochs=6, lr=0.0, patience=1)
    result = fit(config)
    mious = [row["val_miou"] for row in result.history]
    best = max(range(len(mious)), key=mious.__getitem__)
    assert len(mious) == best + 1 + 1 < 6            # stopped one epoch after the best
    assert result.best_epoch == best + 1
    assert "early stop: no better validation mIoU for 1 epochs" in capsys.readouterr().out


def test_class_weights_are_checked_against_the_class_count(tmp_path):
    with pytest.raises(ValueError, match="2 class weights given for 3 classes"):
        fit(tiny_config(tmp_path / "w", class_weights="1,2"))
    with pytest.raises(ValueError, match="median-frequency class weights need"):
        fit(tiny_config(tmp_path / "m", class_weights="median"))


def test_binary_data_trains_with_bce_dice_and_one_output_channel(tmp_path):
    config = tiny_config(tmp_path / "binary", epochs=1, loss="bce_dice")
    config = replace(config, data=replace(config.data, source="binary", foreground=0.2))
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    assert model.config.num_classes == 1 and meta["binary"]
    assert meta["class_names"] == ["background", "object"]
    assert math.isfinite(result.history[0]["val_miou"])


def test_bce_dice_refuses_more_than_two_classes(tmp_path):
    with pytest.raises(ValueError, match="bce_dice is for binary tasks .* has 3"):
        fit(tiny_config(tmp_path / "b", loss="bce_dice"))


def test_missing_tensorboard_is_reported_and_training_goes_on(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    fit(tiny_config(tmp_path / "tb", epochs=1, tensorboard=True))
    assert "tensorboard package is not installed" in capsys.readouterr().out
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


def test_bf16_autocast_keeps_predictions_and_scores_within_tolerance(trained):
    """The default on CPUs with native bf16: the trained model's labels and mIoU under bf16 +
    channels_last match fp32 (labels differ only where two classes are nearly tied)."""
    config, result = trained
    model, meta = load_model(result.run_dir / "best.safetensors")
    data = build_datasets(config.data)
    loader = DataLoader(data.val, batch_size=8)
    fp32 = evaluate(model, loader, 3, 255, "cpu", "fp32")
    bf16 = evaluate(model.to(memory_format=torch.channels_last), loader, 3, 255, "cpu", "bf16",
                    channels_last=True)
    assert abs(bf16.scores.miou - fp32.scores.miou) < 0.01
    assert abs(bf16.loss - fp32.loss) < 0.02 * max(fp32.loss, 0.1)
    images, _ = next(iter(loader))
    with torch.inference_mode(), autocast(torch.device("cpu"), "bf16"):
        low = model(images.contiguous(memory_format=torch.channels_last)).float()
    with torch.inference_mode():
        high = model(images)
    agreement = (low.argmax(1) == high.argmax(1)).float().mean().item()
    assert agreement > 0.99
    assert (low.softmax(1) - high.softmax(1)).abs().mean().item() < 0.01
