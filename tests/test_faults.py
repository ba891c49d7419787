"""Faults: a run killed at any moment resumes to the same weights, a corrupt last checkpoint
falls back to the one before, non-finite losses are skipped then stop the run, a full disk
leaves the previous checkpoint intact, and a pickle posing as a checkpoint never runs."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import unetseg.files as files_module
import unetseg.train as train_module
from unetseg.checkpoint import load_checkpoint, load_model, save_checkpoint
from unetseg.cli import main
from unetseg.config import DataConfig, RunConfig, TrainConfig, UNetConfig
from unetseg.model import UNet
from unetseg.rundir import RunDir
from unetseg.train import TrainingDiverged, fit

# fp32 pinned: a run and its resumed halves, in this process or another, take the same steps
# without depending on a measured precision choice.
FLAGS = ["--data", "synthetic", "--size", "32", "--train-samples", "32", "--val-samples", "8",
         "--base", "4", "--batch-size", "8", "--precision", "fp32", "--quiet"]


def config(out, epochs: int = 3, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(source="synthetic", size=32, batch_size=8, train_samples=48,
                        val_samples=8),
        model=UNetConfig(base=4),
        train=TrainConfig(**{"out": str(out), "epochs": epochs, "progress": False, **train}),
    )


def weights(path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


# --- kill -9, SIGTERM and SIGINT at any moment ------------------------------------------------

# The run each of them stops: 4 epochs of 8 steps.
INTERRUPTED = ["--epochs", "4", "--train-samples", "64"]
EPOCHS, STEPS_PER_EPOCH = 4, 8


def train_args(run, *extra: str) -> list[str]:
    return ["train", *FLAGS, *INTERRUPTED, "--out", str(run), *extra]


def train_command(run, *extra: str) -> list[str]:
    """``unetseg train`` in a process of its own: the one a test kills or signals."""
    return [sys.executable, "-m", "unetseg", *train_args(run, *extra)]


def epochs_logged(run) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The run uninterrupted, by the command line (in this process: only the runs that are
    killed or signalled from outside need a process of their own)."""
    run = tmp_path_factory.mktemp("whole") / "run"
    assert main(train_args(run)) == 0
    return run


def next_command(run) -> list[str]:
    """How a user carries on with ``run``: resume it, or start it again when nothing can be
    resumed (killed between best.safetensors and the epoch's resume checkpoint, the folder
    holds weights, which only --overwrite replaces)."""
    if (run / "last.safetensors").exists() or (run / "previous.safetensors").exists():
        return ["train", "--resume", str(run)]
    return train_args(run, "--overwrite")


def kill_when_logged(run, args: list[str], epochs: int, delay: float) -> None:
    """Run ``unetseg ARGS`` in a process of its own and SIGKILL it ``delay`` seconds after
    ``run`` has logged ``epochs`` epochs."""
    process = subprocess.Popen([sys.executable, "-m", "unetseg", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while epochs_logged(run) < epochs and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(delay)
    if process.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {process.stderr.read()}")
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


@pytest.mark.slow
def test_a_run_sigkilled_twice_resumes_to_the_uninterrupted_weights(tmp_path, whole):
    """Killed just after its first epoch's log (while it writes that epoch's checkpoints),
    then, resumed, 0.2 s after its second epoch's (inside the third), the run carried on each
    time ends with the weights and the log of the run never killed."""
    run = tmp_path / "killed"
    kill_when_logged(run, train_args(run), 1, 0.05)
    kill_when_logged(run, next_command(run), 2, 0.2)
    assert main(next_command(run)) == 0
    assert_same_weights(whole / "last.safetensors", run / "last.safetensors")
    assert epochs_logged(run) == EPOCHS
    assert not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_sigterm_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, whole):
    """SIGTERM from outside (a scheduler, `kill PID`) to a run in a process of its own."""
    run = tmp_path / "run"
    process = subprocess.Popen(train_command(run), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while epochs_logged(run) < 1 and process.poll() is None:
        time.sleep(0.005)
    time.sleep(0.05)
    assert process.poll() is None, "the run ended before the signal"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err
    assert f"unetseg train --resume {run}" in err
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_weights(whole / "last.safetensors", run / "last.safetensors")


def test_sigint_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, whole,
                                                                    monkeypatch, capsys):
    """Ctrl-C: the same handler as SIGTERM (`unetseg.interrupts.StopSignals`), so this run is
    stopped in this process, during a known step (batch 3 of epoch 2), instead of from outside
    at a moment a clock picks."""
    run = tmp_path / "run"
    real_step, steps = train_module.train_step, []

    def step_then_press_ctrl_c(*args, **kwargs):
        result = real_step(*args, **kwargs)
        steps.append(1)
        if len(steps) == STEPS_PER_EPOCH + 3:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(train_module, "train_step", step_then_press_ctrl_c)
    assert main(train_args(run)) == 128 + signal.SIGINT
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "stopped by SIGINT" in err and f"unetseg train --resume {run}" in err
    progress = load_checkpoint(run / "last.safetensors").metadata["training"]["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 3)      # the step finished, saved
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_weights(whole / "last.safetensors", run / "last.safetensors")


# --- interrupted and failed writes ---------------------------------------------------------------

def interrupt_after(monkeypatch, epochs: int) -> None:
    """Stop the run right after its ``epochs``-th resume checkpoint (the epoch's commit point)."""
    real = RunDir.save_resume
    calls = []

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_resume", save_then_stop)


@pytest.fixture(scope="module")
def whole_fit(tmp_path_factory):
    """An uninterrupted run of `config`, which the interrupted ones must end equal to."""
    return fit(config(tmp_path_factory.mktemp("whole") / "run"))


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, monkeypatch, caplog,
                                                                  whole_fit):
    caplog.set_level(logging.INFO, logger="unetseg")
    whole = whole_fit
    cfg = config(tmp_path / "run")
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    monkeypatch.undo()
    last = tmp_path / "run" / "last.safetensors"
    last.write_bytes(last.read_bytes()[: 1000])                  # truncated
    with pytest.raises(ValueError, match=r"last.safetensors is not a readable safetensors"):
        load_checkpoint(last)
    fit(cfg, resume=True)
    assert "resuming from previous.safetensors" in caplog.text
    assert_same_weights(whole.run_dir / "last.safetensors", last)


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    files_module.atomic_write_text(target, "old")

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        files_module.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_full_disk_stops_training_with_a_clear_error_and_the_last_checkpoint_intact(
        tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(config(run))
    monkeypatch.undo()
    before = weights(run / "last.safetensors")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_module.os, "fsync", no_space)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "No space left on device" in err and "intact" in err
    monkeypatch.undo()
    after = weights(run / "last.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# --- non-finite losses ---------------------------------------------------------------------------

class NaNOnSteps(torch.nn.Module):
    """The run's loss, made NaN at the training steps ``bad_steps(n)`` picks (n from 1);
    validation (under inference mode) is neither counted nor changed."""

    def __init__(self, loss_fn, bad_steps) -> None:
        super().__init__()
        self.loss_fn, self.bad_steps, self.steps = loss_fn, bad_steps, 0

    def forward(self, logits, target):
        loss = self.loss_fn(logits, target)
        if torch.is_inference_mode_enabled():
            return loss
        self.steps += 1
        return loss * float("nan") if self.bad_steps(self.steps) else loss


def nan_loss_on(monkeypatch, bad_steps) -> None:
    real = train_module.make_loss
    monkeypatch.setattr(train_module, "make_loss",
                        lambda *args, **kwargs: NaNOnSteps(real(*args, **kwargs), bad_steps))


def test_non_finite_losses_are_skipped_and_counted(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="unetseg")
    nan_loss_on(monkeypatch, lambda n: n in (2, 3, 8))
    result = fit(config(tmp_path / "run", epochs=2))
    assert "3 non-finite steps skipped so far" in caplog.text
    model, _ = load_model(result.run_dir / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_non_finite_losses_in_a_row_stop_the_run_keeping_the_good_checkpoint(
        tmp_path, monkeypatch, capsys):
    nan_loss_on(monkeypatch, lambda n: n > 6)                   # epoch 1 has 6 steps
    run = tmp_path / "run"
    assert main(["train", *FLAGS, "--train-samples", "48", "--epochs", "3", "--max-nonfinite",
                 "4", "--out", str(run)]) == 3
    err = capsys.readouterr().err
    assert "not finite for 4 steps in a row (epoch 2)" in err and str(run) in err
    state = load_checkpoint(run / "last.safetensors").metadata["training"]
    assert state["progress"]["epoch"] == 1
    with pytest.raises(TrainingDiverged):
        fit(replace(config(tmp_path / "again"), train=replace(config(tmp_path).train,
                                                              out=str(tmp_path / "again"),
                                                              max_nonfinite=2)))


# --- safe loading --------------------------------------------------------------------------------

class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_class_weights_with_a_loss_without_cross_entropy_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--loss dice has none"):
        fit(config(tmp_path / "run", loss="dice", class_weights="1,2,3"))


def test_a_pickle_renamed_to_a_checkpoint_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    fake = tmp_path / "run" / "last.safetensors"
    fake.parent.mkdir()
    torch.save({"model": RunsACommand(marker)}, fake)
    with pytest.raises(ValueError, match=r"last.safetensors is not a readable safetensors "
                                         r"checkpoint .* never unpickled"):
        load_checkpoint(fake)
    assert main(["evaluate", str(fake)]) == 2
    assert main(["train", "--resume", str(fake.parent)]) == 2
    assert not marker.exists()
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err


def test_metadata_that_contradicts_the_weights_is_refused_naming_the_mismatch(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, UNet(3, 3, base=4), {"class_names": ["a", "b", "c", "d"],
                                               "colours": [[0, 0, 0]] * 4})
    with pytest.raises(ValueError, match=r"names 4 classes \(a, b, c, d\), which needs 4 output "
                                         r"channel\(s\), but the model has 3"):
        load_model(path)
    doc = load_checkpoint(path).metadata
    assert doc["schema_version"] == 1
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    meta = json.loads(header["__metadata__"]["unetseg"])
    meta["schema_version"] = 99
    header["__metadata__"]["unetseg"] = json.dumps(meta)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    (tmp_path / "future.safetensors").write_bytes(
        len(new_header).to_bytes(8, "little") + new_header + data[8 + header_length:])
    with pytest.raises(ValueError, match=r"future.safetensors has checkpoint schema version 99"):
        load_checkpoint(tmp_path / "future.safetensors")


# --- mid-epoch checkpoints ----------------------------------------------------------------------

def test_a_run_killed_mid_epoch_resumes_from_its_mid_epoch_checkpoint_exactly(tmp_path,
                                                                            monkeypatch):
    # Dropout makes the RNG matter: a resumed epoch must draw the same masks.
    with_dropout = lambda out: replace(config(out, checkpoint_every=2),  # noqa: E731
                                       model=UNetConfig(base=4, dropout=0.5))
    whole = fit(with_dropout(tmp_path / "whole"))
    run = with_dropout(tmp_path / "run")
    real_save = RunDir.save_resume
    saves = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        # 6 batches an epoch, a checkpoint every 2: saves 1-2 are inside epoch 1, save 3 ends
        # it, save 4 is after batch 2 of epoch 2.
        if len(saves) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_resume", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(run)
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "run" / "last.safetensors").metadata["training"]
    assert state["progress"]["batch"] > 0                     # really stopped inside an epoch
    resumed = fit(run, resume=True)
    assert_same_weights(whole.run_dir / "last.safetensors", resumed.run_dir / "last.safetensors")
    def strip(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    assert strip(resumed.history) == strip(whole.history)    # training loss and mIoU too


def test_a_kill_after_the_logs_but_before_the_checkpoint_redoes_the_epoch_consistently(
        tmp_path, monkeypatch, whole_fit):
    """best.safetensors and the logs are written before the resume checkpoint: killed in
    between, the resumed run redoes the epoch and rewrites both, ending as if never stopped."""
    whole = whole_fit
    real = RunDir.save_resume
    calls = []

    def die_before_the_second_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(RunDir, "save_resume", die_before_the_second_save)
    cfg = config(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    monkeypatch.undo()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # ahead
    resumed = fit(cfg, resume=True)
    assert_same_weights(whole.run_dir / "last.safetensors", resumed.run_dir / "last.safetensors")
    assert_same_weights(whole.run_dir / "best.safetensors", resumed.run_dir / "best.safetensors")
    assert [json.loads(line)["epoch"] for line in
            (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
