"""A user's mistake gets a clear answer and loses nothing: the cases of training, resuming,
scoring and the command line (data mistakes: tests/test_data_mistakes.py; predict and the
reports: tests/test_job_errors.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import unetseg.train as train_module
from unetseg.cli import main
from unetseg.jobs.scoring import score_split
from unetseg.rundir import RunDir

TINY = ["--data", "synthetic", "--size", "32", "--train-samples", "32", "--val-samples", "8",
        "--base", "4", "--batch-size", "8", "--quiet"]


def train(out, *flags) -> int:
    return main(["train", *TINY, "--epochs", "1", "--out", str(out), *flags])


# --- work that must never be lost ---------------------------------------------------------------

def test_a_folder_with_a_trained_model_but_no_resumable_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"a model someone trained")
    (out / "notes.txt").write_text("mine")
    assert train(out) == 2
    err = capsys.readouterr().err
    assert "already holds files (best.safetensors, notes.txt)" in err and "--overwrite" in err
    assert (out / "best.safetensors").read_bytes() == b"a model someone trained"
    assert train(out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"              # not a run file: kept
    assert (out / "best.safetensors").read_bytes() != b"a model someone trained"


def test_a_users_own_config_yaml_is_not_taken_for_an_unstarted_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("my: own settings\n")
    assert train(out) == 2
    assert "already holds files (config.yaml)" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == "my: own settings\n"


def test_a_run_folder_inside_the_masks_folder_is_refused(tmp_path, capsys, make_box_folder):
    data = make_box_folder(tmp_path / "data", 6)
    out = data / "masks" / "run"
    assert main(["train", "--data", str(data), "--plan", "none", "--size", "16",
                 "--batch-size", "2", "--base", "4", "--epochs", "1", "--quiet", "--out",
                 str(out)]) == 2
    assert "is inside the data folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_first_epoch_of_many_batches_is_checkpointed_early(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "FIRST_CHECKPOINT_BATCHES", 2)
    saves = []
    real = RunDir.save_resume

    def counting(self, *args, **kwargs):
        saves.append(self.path)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "save_resume", counting)
    assert train(tmp_path / "run") == 0                  # 4 batches: 2 + the epoch's end
    assert len(saves) == 2


@pytest.mark.parametrize("flag,value,message", [
    ("--overlap", "1.0", "--overlap must be >= 0 and < 1, found 1.0"),
    ("--batch-size", "0", "--batch-size must be a whole number >= 1, found 0"),
    ("--tile", "-5", "--tile must be a whole number >= 1 (0 for whole images), found -5")])
def test_predict_options_are_checked_once_before_the_first_image(folder_run, tmp_path, capsys,
                                                                 flag, value, message):
    """`--overlap 1.0`, `--batch-size 0` or `--tile -5` gave 60 error lines for 30 images:
    one line, exit 2, nothing written."""
    config, result = folder_run
    out = tmp_path / f"pred{flag}"
    assert main(["predict", str(result.run_dir / "best.safetensors"),
                 str(Path(config.data.source) / "images"), "--out", str(out), flag, value,
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


# --- one line, not a traceback ------------------------------------------------------------------

@pytest.mark.parametrize("device,message", [
    ("gpu", "--device gpu: not a device name; expected cpu, cuda or cuda:N"),
    ("cuda", "--device cuda: this PyTorch"),
])
def test_a_device_that_is_not_there_is_one_line(tmp_path, capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert train(tmp_path / "run", "--device", device) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_malformed_yaml_names_the_file_and_the_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  epochs: 3\n  lr: [0.1\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config}: not valid YAML at line" in err and "Traceback" not in err


def test_a_negative_size_is_one_line(tmp_path, capsys):
    assert main(["train", "--size", "-64", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith("--size must be a whole number >= 1, "
                                                    "found -64")


def test_an_abort_is_one_line_that_names_the_run_to_resume(tmp_path, capsys, monkeypatch):
    """Issue 22: the double-Ctrl-C message said "--resume RUN", not the run's path."""
    run = tmp_path / "run"

    def aborted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "fit", aborted)
    assert train(run) == 130
    err = capsys.readouterr().err
    assert f"unetseg train: aborted before the first checkpoint; {run} holds nothing" in err
    run.mkdir()
    (run / "last.safetensors").write_bytes(b"")
    assert train(run) == 130
    err = capsys.readouterr().err
    assert (f"unetseg train: aborted; {run} keeps its last checkpoint: unetseg train --resume "
            f"{run} continues from it") in err
    assert "Traceback" not in err


# --- logs ---------------------------------------------------------------------------------------

def test_a_log_gets_lines_not_progress_frames(tmp_path, capsys):
    """Not a terminal, as a log file is not: no carriage returns, one line per epoch with the
    time left."""
    assert main(["train", *TINY[:-1], "--epochs", "2", "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out and "\r" not in err
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and "left)" in epochs[0] and "left)" not in epochs[1]


# --- scoring on other data ----------------------------------------------------------------------

@pytest.fixture
def boxes_run(folder_run, tmp_path):
    """The session's run on box images (classes background and box), and a folder for data."""
    _, result = folder_run
    return result.run_dir / "best.safetensors", tmp_path


def test_classes_in_another_order_are_matched_by_name(boxes_run, make_box_folder):
    checkpoint, root = boxes_run
    same = make_box_folder(root / "same", 5)
    swapped = make_box_folder(root / "swapped", 5, order=("box", "background"))
    a = score_split(checkpoint, data={"source": str(same)}, inspect=False)
    b = score_split(checkpoint, data={"source": str(swapped)}, inspect=False)
    np.testing.assert_array_equal(a.evaluation.scores.matrix, b.evaluation.scores.matrix)


def test_other_class_names_are_refused_listing_both(boxes_run, capsys, make_box_folder):
    checkpoint, root = boxes_run
    other = make_box_folder(root / "other", 3, classes=("background", "box", "car"))
    assert main(["evaluate", str(checkpoint), "--data", str(other), "--out",
                 str(root / "ev-other")]) == 2
    err = capsys.readouterr().err
    assert "predicts the classes background, box" in err and "background, box, car" in err


def test_evaluating_another_folder_scores_all_of_it(boxes_run, capsys, make_box_folder):
    checkpoint, root = boxes_run
    test = make_box_folder(root / "test", 7)
    (test / "dataset.yaml").unlink()             # no dataset file: the checkpoint's classes
    assert main(["evaluate", str(checkpoint), "--data", str(test), "--out",
                 str(root / "ev-test"), "--quiet"]) == 0
    assert "over 7 images" in capsys.readouterr().out


def test_evaluate_data_scope_does_not_depend_on_how_the_path_is_typed(folder_run, tmp_path,
                                                                      capsys, monkeypatch):
    """The training folder given relatively scored its validation images, given absolutely
    all of them, and the output never named the split: paths are compared resolved, and every
    evaluation says how many images of which split it scored."""
    config, result = folder_run
    data = Path(config.data.source)
    monkeypatch.chdir(data.parent)
    for typed in (str(data), data.name, data.name + "/", "./" + data.name):
        out = tmp_path / f"ev-{len(typed)}-{typed.count('/')}"
        assert main(["evaluate", str(result.run_dir / "best.safetensors"), "--data", typed,
                     "--out", str(out), "--quiet", "--no-inspect"]) == 0
        out = capsys.readouterr().out
        assert "over 4 images\n(split val; 0.0% of the pixels ignored)" in out, typed


def test_resume_does_not_depend_on_how_or_where_the_data_path_was_typed(
        tmp_path, make_box_folder, capsys, monkeypatch):
    """A trailing slash, or an absolute --data for a relative one, counted as a change, and
    from another working directory resume failed with "no such folder": a run records its
    paths absolute and compares them resolved."""
    make_box_folder(tmp_path / "project" / "data", 6)
    monkeypatch.chdir(tmp_path / "project")
    flags = ["--plan", "none", "--size", "16", "--batch-size", "2", "--base", "4", "--quiet"]
    assert main(["train", "--data", "data", "--epochs", "1", "--out", "run", *flags]) == 0
    recorded = yaml.safe_load((tmp_path / "project" / "run" / "config.yaml").read_text())
    assert recorded["data"]["source"] == str(tmp_path / "project" / "data")
    monkeypatch.chdir(tmp_path)                  # somewhere else
    capsys.readouterr()
    assert main(["train", "--resume", "project/run", "--epochs", "2", "--quiet"]) == 0
    assert main(["train", "--resume", str(tmp_path / "project" / "run"), "--data",
                 "project/data/", "--epochs", "3", *flags]) == 0
    assert "epoch 3/3" in capsys.readouterr().out


def test_resume_after_the_data_folder_changed_is_refused_unless_data_changed_ok(
        tmp_path, make_box_folder, capsys):
    """Images added to the folder between two sessions of a run: validation went from 1 to 2
    images, config.yaml was rewritten and progress read "epoch 3/2", all silently. The
    change is named and refused; `--data-changed ok` continues and records it."""
    data = make_box_folder(tmp_path / "data", 5)
    run = tmp_path / "run"
    flags = ["--plan", "none", "--size", "16", "--batch-size", "2", "--base", "4", "--quiet"]
    assert main(["train", "--data", str(data), "--epochs", "1", "--out", str(run),
                 *flags]) == 0
    more = make_box_folder(tmp_path / "more", 3)
    for kind in ("images", "masks"):
        for index in range(3):
            (more / kind / f"{index}.png").rename(data / kind / f"new{index}.png")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "the data changed since the run started (train images 4 -> 6; val images 1 -> 2" \
        in err and "--data-changed ok" in err
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data-changed", "ok"]) == 0
    recorded = yaml.safe_load((run / "config.yaml").read_text())["data_check"]
    assert recorded["train_images"] == 6 and "train images 4 -> 6" in \
        recorded["changed_on_resume"][0]


def test_evaluate_on_a_folder_without_a_dataset_file_reads_masks_as_the_run_did(
        tmp_path, make_box_folder, capsys):
    """A checkpoint trained with a dataset file mapping 0/255 masks (membrane black, as in
    ISBI), evaluated on the same images without the file, swapped the classes silently
    (mIoU 0.106 for 0.579): the checkpoint's recorded mapping reads them, and says so."""
    data = make_box_folder(tmp_path / "data", 8)
    for mask_path in (data / "masks").iterdir():      # box stored black, background white
        mask = np.array(Image.open(mask_path))
        Image.fromarray(np.where(mask == 1, 0, 255).astype(np.uint8)).save(mask_path)
    (data / "dataset.yaml").write_text("classes: [background, box]\nremap: {255: 0, 0: 1}\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--plan", "none", "--size", "16",
                 "--batch-size", "2", "--base", "4", "--epochs", "1", "--quiet", "--out",
                 str(run)]) == 0
    plain = tmp_path / "plain"
    shutil.copytree(data, plain)
    (plain / "dataset.yaml").unlink()
    checkpoint = run / "best.safetensors"
    with_file = score_split(checkpoint, data={"source": str(data)}, split="all", inspect=False)
    without = score_split(checkpoint, data={"source": str(plain)}, split="all", inspect=False)
    assert torch.equal(without.evaluation.scores.matrix, with_file.evaluation.scores.matrix)
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--data", str(plain), "--out",
                 str(tmp_path / "ev"), "--quiet", "--no-inspect"]) == 0
    assert ("has no dataset file: its masks are read as the checkpoint's run read them "
            "(classes background, box; stored 255 -> 0, 0 -> 1; ignore_index 255)"
            ) in capsys.readouterr().out


def test_evaluate_without_the_inspector_states_the_ignored_share(boxes_run, make_box_folder,
                                                                  capsys):
    """`evaluate --no-inspect` never said how much of the truth was ignored: it does, on the
    terminal and in evaluation.json."""
    checkpoint, root = boxes_run
    ignored = make_box_folder(root / "ignored", 4)
    for index in range(4):                       # a quarter of every mask is ignore_index
        mask = np.array(Image.open(ignored / "masks" / f"{index}.png"))
        mask[:, :6] = 255
        Image.fromarray(mask).save(ignored / "masks" / f"{index}.png")
    assert main(["evaluate", str(checkpoint), "--data", str(ignored), "--out",
                 str(root / "ev-ignored"), "--quiet", "--no-inspect"]) == 0
    out = capsys.readouterr().out
    assert "over 4 images\n(split all; 25.0% of the pixels ignored)" in out
    written = json.loads((root / "ev-ignored" / "evaluation.json").read_text())
    assert written["ignored_share"] == 0.25


# --- unetseg check ------------------------------------------------------------------------------

def test_check_says_what_training_would_find_and_exits_by_severity(tmp_path, capsys,
                                                                  make_box_folder):
    data = make_box_folder(tmp_path / "data", 4)
    (data / "dataset.yaml").unlink()
    for mask in (data / "masks").iterdir():          # saved as 0/255, the classic trap
        Image.fromarray(np.asarray(Image.open(mask)) * 255).save(mask)
    assert main(["check", str(data), "--classes", "background,box", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "255 is read as class 1 (box)" in out and "status 1" in out
    assert main(["check", str(data), "--classes", "background,box", "--quiet",
                 "--strict"]) == 2
    capsys.readouterr()
    assert main(["check", str(data), "--quiet", "--json", str(tmp_path / "check.json")]) == 2
    assert "no dataset file" in capsys.readouterr().out
    assert (tmp_path / "check.json").is_file()


# --- the smaller cases (issue 22) ---------------------------------------------------------------

def test_nproc_0_is_refused(tmp_path, capsys):
    assert main(["train", "--nproc", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--nproc must be a whole number >= 1, found 0" in capsys.readouterr().err


def test_both_dataset_yaml_and_dataset_json_are_refused_not_one_ignored(tmp_path, capsys,
                                                                         make_box_folder):
    data = make_box_folder(tmp_path / "data", 4)
    (data / "dataset.json").write_text('{"classes": ["box", "background"]}')
    assert main(["check", str(data), "--quiet"]) == 2
    assert "holds dataset.yaml and dataset.json; expected one dataset file" in \
        capsys.readouterr().out


def test_a_dangling_symlink_as_out_is_named_not_errno_17(tmp_path, capsys):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    assert train(tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a link to" in err and "Errno" not in err


def test_resume_on_a_missing_or_empty_folder_is_one_line_without_errno(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for run in (tmp_path / "missing", tmp_path / "empty"):
        assert main(["train", "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert "Errno" not in err and err.count("\n") == 1 and str(run) in err


def test_checkpoints_get_the_permissions_of_every_other_output(tmp_path):
    """Checkpoints were written 0600 (safetensors' own file), other outputs 0644: both follow
    the umask now."""
    assert train(tmp_path / "run") == 0
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "run").iterdir()
             if path.is_file()}
    assert modes["best.safetensors"] == modes["config.yaml"] == modes["metrics.csv"]
