"""`unetseg plan` and planned training (`unetseg.jobs.plan`, ``train --plan``): the plan is
printed with its reasons, written as a --config file that trains, recorded in config.yaml and
every checkpoint, overridden decision by decision, and never made again on --resume."""

from __future__ import annotations

import json
import os

import pytest
import yaml

import unetseg.jobs.plan as plan_job
from unetseg.checkpoint import read_metadata
from unetseg.cli import main
from unetseg.planner import Plan

# Seconds a step: a stand-in for the machine, so the plan does not depend on its load.
FAST = 0.01


@pytest.fixture(autouse=True)
def steady_machine(monkeypatch):
    monkeypatch.setattr(plan_job, "measured_step_seconds",
                        lambda model, crop, batch, device=None: FAST * (model.base / 16) ** 2)


@pytest.fixture
def data(tmp_path, make_box_folder):
    return make_box_folder(tmp_path / "data", 8, size=(48, 64))


SHORT = ["--max-steps", "2", "--val-every", "1", "--quiet", "--precision", "fp32"]


def test_plan_prints_each_decision_with_its_reason_and_writes_a_config_that_trains(
        data, tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(data), "--time-budget", "5", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "plan for 5 minutes" in text and "--size 48" in text
    assert "capped at the median image side; median image 48 x 64" in text
    written = yaml.safe_load(out.read_text())
    assert written["data"]["source"] == str(data) and written["data"]["size"] == 48
    assert written["train"]["time_budget"] == 5.0
    assert written["plan"]["fingerprint"]["images"] == 6           # the training split only
    run = tmp_path / "run"
    assert main(["train", "--config", str(out), *SHORT, "--out", str(run)]) == 0
    used = yaml.safe_load((run / "config.yaml").read_text())
    assert used["data"]["size"] == 48 and used["model"]["upsample"] == "transpose"


def test_plan_refuses_an_existing_out_file_before_reading_the_data(data, tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    out.write_text("mine")
    assert main(["plan", str(data), "--out", str(out), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "mine"


def test_plan_of_built_in_data_is_one_line(capsys):
    assert main(["plan", "synthetic", "--quiet"]) == 2
    assert "there are no masks to plan from" in capsys.readouterr().err


def test_train_on_a_folder_plans_by_default_and_records_the_plan(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--size", "32", *SHORT, "--out", str(run)]) == 0
    text = capsys.readouterr().out
    assert "plan for 15 minutes" in text
    assert "--size 48" in text and "[replaced: 32]" in text          # the flag wins, and says so
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["data"]["size"] == 32 and recorded["model"]["upsample"] == "transpose"
    assert recorded["plan"]["decisions"][0]["setting"] == "data.size"
    metadata = read_metadata(run / "last.safetensors")
    assert Plan.from_record(metadata["plan"]).decisions == Plan.from_record(
        recorded["plan"]).decisions


def test_plan_none_trains_the_classic_configuration(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--plan", "none", *SHORT, "--out",
                 str(run)]) == 0
    assert "plan for" not in capsys.readouterr().out
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["model"]["upsample"] == "bilinear" and "plan" not in recorded


def _isbi_like(root, slices: int = 10, side: int = 48):
    """ISBI-2012's layout and encoding at toy size: images/ and masks/ N.png, membrane stored
    as 0 (a grid of 2-pixel lines), cell interior as 255."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(slices):
        membrane = np.zeros((side, side), dtype=bool)
        membrane[(np.arange(side) + i) % 12 < 2, :] = True
        membrane[:, (np.arange(side) + 2 * i) % 12 < 2] = True
        image = np.where(membrane, 40, 190) + rng.normal(0, 10, membrane.shape)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.where(membrane, 0, 255).astype(np.uint8)).save(
            root / "masks" / f"{i}.png")
    return root


def test_built_in_data_is_planned_like_a_folder(tmp_path, capsys):
    """``--data isbi`` (and camvid) had hand recipes; they were retired when the plan reached
    them on held-out images, so a built-in dataset's run is planned from its data like any
    folder's, and --plan none still gives the classic settings."""
    root = _isbi_like(tmp_path / "isbi")
    run = tmp_path / "run"
    assert main(["train", "--data", "isbi", "--root", str(root), *SHORT, "--out",
                 str(run)]) == 0
    assert "plan for 15 minutes" in capsys.readouterr().out
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["plan"]["fingerprint"]["images"] == 8           # 10 slices less validation
    assert recorded["model"]["upsample"] == "transpose" and recorded["data"]["size"] == 48
    classic = tmp_path / "classic"
    assert main(["train", "--data", "isbi", "--root", str(root), "--plan", "none", *SHORT,
                 "--out", str(classic)]) == 0
    recorded = yaml.safe_load((classic / "config.yaml").read_text())
    assert "plan" not in recorded and recorded["model"]["upsample"] == "bilinear"


def test_resume_keeps_the_recorded_plan_and_never_plans_again(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), *SHORT, "--out", str(run)]) == 0
    before = yaml.safe_load((run / "config.yaml").read_text())["plan"]
    monkeypatch.setattr(plan_job, "plan_data", lambda *a, **k: pytest.fail("planned again"))
    assert main(["train", "--resume", str(run), "--max-steps", "3"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["plan"] == before


def test_a_plan_file_is_a_plan_layer_under_the_flags(data, tmp_path):
    out = tmp_path / "plan.yaml"
    assert main(["plan", str(data), "--out", str(out), "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--plan", str(out), "--base", "4", *SHORT,
                 "--out", str(run)]) == 0
    used = yaml.safe_load((run / "config.yaml").read_text())
    assert used["model"]["base"] == 4 and used["data"]["size"] == 48
    assert main(["train", "--data", str(data), "--plan", str(tmp_path / "none.yaml"),
                 "--out", str(tmp_path / "r2")]) == 2


def test_nproc_plans_once_and_every_rank_trains_that_plan(data, tmp_path, monkeypatch):
    """The parent plans before torchrun starts the ranks and hands the plan on in the
    environment; a rank uses it and never times the machine itself (ranks timing at once
    could choose differently)."""
    import unetseg.cli.train_flags as train_flags
    from unetseg.cli import build_parser
    from unetseg.cli.train_flags import PLAN_VARIABLE, config_from_args

    monkeypatch.delenv(PLAN_VARIABLE, raising=False)
    monkeypatch.setattr(train_flags, "_relaunch_with_torchrun", lambda nproc, argv: 0)
    rank = ["train", "--data", str(data), "--quiet", "--out", str(tmp_path / "run")]
    assert main([*rank, "--nproc", "2"]) == 0
    handed = Plan.from_record(json.loads(os.environ[PLAN_VARIABLE]))
    monkeypatch.setattr(plan_job, "plan_data", lambda *a, **k: pytest.fail("a rank planned"))
    monkeypatch.setenv("WORLD_SIZE", "2")                   # as torchrun starts a rank
    config = config_from_args(build_parser("train").parse_args(rank))
    assert config.data.size == handed.settings()["data"]["size"]
    monkeypatch.delenv(PLAN_VARIABLE)
    with pytest.raises(ValueError, match="--plan auto under torchrun"):
        config_from_args(build_parser("train").parse_args(rank))


def test_small_images_and_a_class_in_one_image_only_get_a_plan(tmp_path, make_box_folder,
                                                                capsys):
    """Edge cases of issue 23: 32 x 32 images, a third class held by one mask, one image per
    class side: a plan and its printout, no traceback."""
    import numpy as np
    from PIL import Image

    root = make_box_folder(tmp_path / "d", 5, size=(32, 32),
                           classes=("background", "box", "rare"))
    mask = np.asarray(Image.open(root / "masks" / "0.png")).copy()
    mask[0, 0] = 2
    Image.fromarray(mask).save(root / "masks" / "0.png")
    assert main(["plan", str(root), "--val-ratio", "0.2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "--size 32" in text and "--depth 2" in text and "--focus-classes rare" in text


def test_one_image_and_masks_of_one_class_get_a_plan_and_a_message(tmp_path, make_box_folder,
                                                                   capsys):
    """More of issue 23's edge cases, as a user meets them: a plan, and what to know first."""
    import numpy as np
    from PIL import Image

    one = make_box_folder(tmp_path / "one", 1, size=(32, 32))
    assert main(["plan", str(one), "--quiet"]) == 0
    said = capsys.readouterr()
    assert "one image, so it both trains and validates" in said.err
    assert "plan for 15 minutes" in said.out and "1 training image(s)" in said.out
    blank = make_box_folder(tmp_path / "blank", 4, size=(32, 32))
    for mask in (blank / "masks").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    assert main(["plan", str(blank), "--quiet"]) == 0
    assert "of the training masks hold only background" in capsys.readouterr().out


@pytest.mark.slow
def test_a_planned_run_holds_its_time_budget_within_a_tenth(data, tmp_path):
    """The plan's length is its budget, validation and checkpoints included: the run's own
    clock (every validated epoch's seconds, summed) ends within 10% of it, at the bottom of
    the schedule. (benchmarks/plan_budget.py measures the same on real data.)"""
    run = tmp_path / "run"
    budget = 0.2                                                   # minutes
    assert main(["train", "--data", str(data), "--time-budget", str(budget), "--quiet",
                 "--precision", "fp32", "--out", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    spent = sum(row["seconds"] for row in rows)
    assert abs(spent - 60 * budget) <= 0.1 * 60 * budget, spent
    assert rows[-1]["lr"] == 0.0
