"""The run folder (`unetseg.rundir`): its logs, its one config.yaml reader, its refusals."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from unetseg import rundir
from unetseg.cli import main
from unetseg.rundir import CURVES_EVERY, LOG_COLUMNS, RunDir, load_run_config, read_run_config
from unetseg.train import fit


def history(epochs: int, classes: int) -> list[dict]:
    """metrics.jsonl rows as training writes them (`epoch_row`), with made-up numbers."""
    return [{**{column: 0.5 + epoch for column in LOG_COLUMNS}, "epoch": epoch + 1,
             "val_iou": [0.25 * c + epoch for c in range(classes)],
             "val_bf1": [math.nan] * classes} for epoch in range(epochs)]


def test_metrics_csv_keeps_a_class_name_with_a_comma_and_a_quote_in_one_field(tmp_path):
    """It was built with ",".join: a class called 'car, parked' shifted every column after it."""
    names = ["background", 'car, parked', 'the "sky"']
    RunDir(tmp_path).write_logs(history(2, len(names)), names)
    with open(tmp_path / "metrics.csv", newline="") as table:
        rows = list(csv.reader(table))
    assert rows[0] == LOG_COLUMNS + ["iou_background", "iou_car, parked", 'iou_the "sky"']
    assert len(rows) == 3 and all(len(row) == len(rows[0]) for row in rows)
    assert float(rows[2][rows[0].index('iou_the "sky"')]) == 1.5
    assert float(rows[2][rows[0].index("val_miou")]) == 1.5


def test_metrics_jsonl_has_null_where_a_score_is_undefined(tmp_path):
    RunDir(tmp_path).write_logs(history(1, 2), ["a", "b"])
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["val_bf1"] == [None, None] and row["val_iou"] == [0.0, 0.25]


def test_curves_are_drawn_at_most_every_curves_every_seconds_and_when_the_run_ends(
        tmp_path, monkeypatch):
    drawn, clock = [], [100.0]
    monkeypatch.setattr(rundir, "plot_curves", lambda rows, names, path: drawn.append(len(rows)))
    monkeypatch.setattr(rundir, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    run = RunDir(tmp_path)
    run.write_logs(history(1, 2), ["a", "b"])              # just started: not yet
    clock[0] += CURVES_EVERY
    run.write_logs(history(2, 2), ["a", "b"])              # due
    clock[0] += 1
    run.write_logs(history(3, 2), ["a", "b"])              # too soon after
    assert drawn == [2] and len(json_rows(tmp_path)) == 3   # the logs are always written
    run.finish_logs()                                       # the run's end draws the last
    run.finish_logs()                                       # and nothing twice
    assert drawn == [2, 3]


def json_rows(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_config_yaml_is_read_back_with_its_records(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"data": {"size": 32}, "runtime": {"precision": "bf16"}})
    assert read_run_config(run.path) == {"data": {"size": 32},
                                         "runtime": {"precision": "bf16"}}
    assert run.record("runtime") == {"precision": "bf16"} and run.record("data_check") is None


def test_an_unreadable_config_yaml_is_no_record_but_an_error_to_resume_from(tmp_path):
    (tmp_path / "config.yaml").write_text("data: [unclosed\n")
    assert RunDir(tmp_path).record("runtime") is None
    with pytest.raises(ValueError, match=r"config\.yaml: not valid YAML at line"):
        read_run_config(tmp_path)


def test_an_unstarted_run_is_started_again_but_someones_files_are_not_replaced(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config({"data": {}, "data_check": {"classes": {}}})
    assert run.check(resume=False) is True                  # only what a run writes first
    (run.path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"--out .*run already holds files \(config\.yaml, "
                                         r"notes\.txt\) but no run to resume; choose another "
                                         r"--out, or pass --overwrite to start a new run there"):
        run.check(resume=False)


def test_a_finished_run_is_not_overwritten_without_resume(tiny_run, capsys):
    """By `fit` or by `unetseg train`: the run folder is refused, pointing at --resume, and
    nothing in it changes."""
    config, result = tiny_run
    before = {path.name: path.stat().st_mtime_ns for path in result.run_dir.iterdir()}
    with pytest.raises(ValueError, match="already holds a run .*--resume"):
        fit(config)
    assert main(["train", "--out", str(result.run_dir), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in result.run_dir.iterdir()} == before


def test_a_runs_configuration_is_loaded_as_it_was_written(tmp_path, make_tiny_config):
    config = make_tiny_config(tmp_path / "run")
    RunDir(tmp_path / "run").write_config(config.to_yaml({"runtime": {"precision": "fp32"}}))
    assert load_run_config(tmp_path / "run") == config


# --- the lock: one run at a time in a folder (issue 22, item 2) ---------------------------------

def test_two_runs_into_one_out_the_second_is_refused_naming_the_first(tmp_path,
                                                                      make_tiny_config):
    """Two runs started 0.5 s apart both trained into one folder, and one model was lost: the
    folder is now held for the whole run, and the second run is refused before it writes."""
    first = RunDir(tmp_path / "twice")
    first.lock()                               # a run in progress (another fd: another run)
    try:
        for resume in (False, True):
            with pytest.raises(ValueError, match=r"--out .*twice is in use by another run "
                                                 rf"\(unetseg train, PID {os.getpid()}, "
                                                 r"started .*\); wait for it to end"):
                fit(make_tiny_config(tmp_path / "twice"), resume=resume)
        assert [p.name for p in (tmp_path / "twice").iterdir()] == [".lock"]
    finally:
        first.close()
    assert not (tmp_path / "twice").exists()       # the first made it and wrote nothing
    assert fit(make_tiny_config(tmp_path / "twice", epochs=1)).best_epoch == 1
    assert not (tmp_path / "twice" / ".lock").exists()


def test_a_stale_lock_from_a_killed_run_does_not_block_a_resume(tmp_path, tiny_run):
    """A SIGKILLed run leaves its .lock file behind, but not the lock: the kernel releases it
    with the process, so the run resumes."""
    config, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(config.train.out, run)
    holder = ("import fcntl, os, sys; f = open(sys.argv[1], 'a+'); "
              "fcntl.flock(f, fcntl.LOCK_EX); f.write('PID killed'); f.flush(); "
              "os.kill(os.getpid(), 9)")
    killed = subprocess.run([sys.executable, "-c", holder, str(run / ".lock")])
    assert killed.returncode == -9 and (run / ".lock").read_text() == "PID killed"
    longer = replace(config, train=replace(config.train, out=str(run),
                                           epochs=config.train.epochs + 1))
    assert len(fit(longer, resume=True).history) == config.train.epochs + 1


def test_a_run_that_stops_before_writing_leaves_no_folder_behind(tmp_path, make_tiny_config):
    """The lock makes the folder; a run refused before it writes (no checkpoint to resume)
    takes it away again, so nothing of it is left to be refused next time."""
    with pytest.raises(ValueError, match="cannot resume"):
        fit(make_tiny_config(tmp_path / "never"), resume=True)
    assert not (tmp_path / "never").exists()
