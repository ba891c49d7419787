"""The `unetseg` command: help texts, train -> evaluate, config files, errors, and the demo."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unetseg.cli import build_parser, main
from unetseg.jobs.demo import free_run_dir, run_demo

TINY = ["--data", "synthetic", "--size", "32", "--train-samples", "32", "--val-samples", "8",
        "--base", "4", "--batch-size", "8", "--quiet"]


def strict_json(text: str):
    """Parse as a strict JSON reader would: Python's NaN/Infinity tokens are not JSON."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def test_undefined_scores_are_written_as_json_null():
    from unetseg.files import json_ready

    value = {"iou": [0.5, float("nan")], "miou": float("nan"), "name": "x"}
    assert strict_json(json.dumps(json_ready(value))) == {"iou": [0.5, None], "miou": None,
                                                           "name": "x"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = ["train", "evaluate", "predict", "export", "inspect", "check", "plan", "pick", "demo",
            "calibrate", "suggest"]


def test_every_command_is_there():
    assert sorted(subcommands()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_flag_with_its_default(command):
    parser = subcommands()[command]
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"
             and a.help != argparse.SUPPRESS]           # a retired flag is not in the help
    assert flags
    for action in flags:
        assert action.help and "default" in action.help, action.option_strings


def test_console_script_runs_as_a_module_and_lists_the_generated_flags(capsys):
    result = subprocess.run([sys.executable, "-m", "unetseg", "--help"], capture_output=True,
                            text=True, check=True)
    assert all(command in result.stdout for command in COMMANDS)
    with pytest.raises(SystemExit) as done:         # train's own help: the generated flags
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "--epochs EPOCHS" in out and "(default: 20)" in out
    assert "--base BASE" in out and "(default: 32)" in out


def test_train_then_evaluate_reports_the_per_class_table(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "best validation mIoU" in out
    assert "chosen on these validation images" in out        # model selection is said

    assert main(["evaluate", str(run / "best.safetensors"), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["class", "iou", "dice", "precision", "recall", "bf1", "share", "ece",
                      "ece_after"]
    for name in ("background", "circle", "square", "mIoU", "pixel accuracy"):
        assert name in out
    report = strict_json((tmp_path / "ev" / "evaluation.json").read_text())
    for line in (run / "metrics.jsonl").read_text().splitlines():
        strict_json(line)
    assert [row["class"] for row in report["classes"]] == ["background", "circle", "square"]
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0
    assert "the mask inspector" in out and "verdict" in out          # ends with the inspector
    assert (tmp_path / "ev" / "report.html").is_file()


def test_flags_override_the_yaml_config_and_the_run_records_the_result(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"base": 4, "norm": "group"},
                                      "train": {"epochs": 3, "lr": 0.001}}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), *TINY, "--epochs", "1",
                 "--out", str(run)]) == 0
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["model"]["norm"] == "group"          # from the file
    assert recorded["train"]["lr"] == 0.001              # from the file
    assert recorded["train"]["epochs"] == 1              # the flag wins
    assert recorded["data"]["size"] == 32


def test_resume_continues_a_run_from_its_folder(tiny_run_copy, capsys):
    run = Path(tiny_run_copy.train.out)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"] = 3               # e.g. the user extends the run
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--resume", str(run)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_bad_input_exits_2_with_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["train", *TINY, "--loss", "focal", "--out", str(tmp_path / "x")]) == 2
    assert "loss must be one of" in capsys.readouterr().err


def test_max_steps_and_val_every_from_the_command_line_then_evaluate_without_inspecting(
        tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "40", "--max-steps", "3", "--val-every", "5",
                 "--out", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [3]           # the last step, always validated
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.safetensors"), "--out", str(tmp_path / "ev"),
                 "--no-inspect"]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "mask inspector" not in out
    assert (tmp_path / "ev" / "evaluation.json").is_file()
    assert not (tmp_path / "ev" / "report.html").exists()


def test_a_retired_recipe_is_one_line_saying_what_replaced_it_and_writes_nothing(
        tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--recipe", "isbi", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--recipe isbi: the hand recipes were retired" in err and "Traceback" not in err
    assert not run.exists()


def test_evaluate_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x80\x04not a checkpoint")
    assert main(["evaluate", str(fake)]) == 2
    err = capsys.readouterr().err
    assert str(fake) in err and "safetensors" in err


def test_demo_trains_scores_held_out_shapes_and_writes_overlays(tmp_path):
    result = run_demo(out=tmp_path / "demo", epochs=1, base=4, size=32, train_samples=32,
                      test_samples=8, overlays=2, progress=False)
    scored = result.scored
    assert scored.class_names == ["background", "circle", "square"]
    assert scored.images == 8
    assert sorted(p.name for p in (result.run_dir / "overlays").iterdir()) == ["0.png", "1.png"]
    rows = scored.evaluation.rows(scored.class_names)
    assert [row["class"] for row in rows] == scored.class_names
    assert [row["class"] for row in scored.inspection.classes] == scored.class_names
    assert (result.run_dir / "report.html").is_file() and (result.run_dir / "report.json").is_file()


def test_demo_never_overwrites_an_earlier_demo(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").mkdir()
    assert free_run_dir(tmp_path / "demo") == tmp_path / "demo-3"
    assert free_run_dir(tmp_path / "other") == tmp_path / "other"
