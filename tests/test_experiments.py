"""The studies in experiments/: the checkerboard score on hand-made logits, the loop's small
helpers, and each study's --quick mode run end to end through its `main` in this process
(which has imported torch and MONAI already: a process of its own spent seconds on imports);
the GPU script, a shell script, runs as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unetseg.config import DataConfig
from unetseg.data.build import build_datasets
from unetseg.data.presets import ISBI_TEST

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
EXP_PYTHON = ROOT / ".venv-exp" / "bin" / "python"
ISBI = ROOT.parent / "shared" / "datasets" / "isbi2012-membrane"
CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"

sys.path.insert(0, str(EXPERIMENTS))
import loss_study  # noqa: E402
import peer_run  # noqa: E402
import plan_study  # noqa: E402
import smp_study  # noqa: E402
import upsample_study  # noqa: E402
from common import (  # noqa: E402  (experiments/ is not a package)
    Contender,
    Recipe,
    load_data,
    lr_factor,
    make_model,
    pad_to_multiple,
    train_contender,
)
from smp_study import ISBI_TARGET, summarise  # noqa: E402
from upsample_study import checkerboard_score  # noqa: E402

# ---------------------------------------------------------------- the checkerboard score

def grid(height: int = 64, width: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(height, dtype=torch.float64),
                          torch.arange(width, dtype=torch.float64), indexing="ij")


def blob(height: int = 64, width: int = 64) -> torch.Tensor:
    y, x = grid(height, width)
    return torch.exp(-((y - height / 2) ** 2 + (x - width / 3) ** 2) / (2 * 9.0**2))


@pytest.mark.parametrize("size", [(64, 64), (63, 65), (16, 40)])
def test_a_pure_checkerboard_and_stripes_score_one(size):
    y, x = grid(*size)
    assert checkerboard_score((-1.0) ** (y + x)) > 0.99
    assert checkerboard_score((-1.0) ** x) > 0.99           # period 2 along x only
    assert checkerboard_score(3.0 + 0.5 * (-1.0) ** y) > 0.99   # an offset changes nothing


def test_smooth_maps_score_about_zero():
    y, x = grid()
    assert checkerboard_score(0.3 * x - 0.7 * y + 5.0) < 1e-3          # a ramp
    assert checkerboard_score(10.0 * blob()) < 1e-3                   # a smooth bump
    assert checkerboard_score(torch.full((64, 64), 4.0)) == 0.0       # no energy at all


def test_the_score_grows_with_the_checkerboard_on_smooth_logits():
    y, x = grid()
    scores = [checkerboard_score(blob() + amplitude * (-1.0) ** (y + x))
              for amplitude in (0.0, 0.01, 0.05, 0.2)]
    assert scores == sorted(scores) and scores[0] < 1e-9 < 1e-4 < scores[1]
    assert scores[-1] > 0.1


def test_an_unevenly_overlapping_transposed_convolution_scores_high():
    """Odena et al.'s case: a stride-2 transposed 3x3 convolution of a constant map overlaps
    unevenly and paints a period-2 pattern; bilinear upsampling of a smooth map does not."""
    up = torch.nn.ConvTranspose2d(1, 1, kernel_size=3, stride=2, padding=1, output_padding=1,
                                  bias=False)
    torch.nn.init.ones_(up.weight)
    smooth = blob(32, 32).float()[None, None] + 1.0                     # (1, 1, 32, 32)
    with torch.no_grad():
        transposed = up(smooth)                                         # (1, 1, 64, 64)
    bilinear = F.interpolate(smooth, scale_factor=2, mode="bilinear", align_corners=False)
    assert checkerboard_score(transposed) > 0.3
    assert checkerboard_score(bilinear) < 1e-3


def test_leading_dimensions_pool_their_energy():
    y, x = grid()
    maps = torch.stack([(-1.0) ** (y + x), 0.2 * x])                    # (2, 64, 64)
    alone = checkerboard_score(maps[0])
    pooled = checkerboard_score(maps[None])                             # (1, 2, 64, 64)
    assert 0.0 < pooled < alone


def test_the_score_refuses_maps_smaller_than_two_by_two():
    with pytest.raises(ValueError, match="at least 2 x 2, found 1 x 8"):
        checkerboard_score(torch.zeros(3, 1, 8))


# ---------------------------------------------------------------- the loop's helpers

def test_padding_reaches_the_next_multiple_of_32_on_the_bottom_and_right():
    image = torch.randn(1, 3, 360, 480)
    padded = pad_to_multiple(image)
    assert padded.shape == (1, 3, 384, 480)
    assert torch.equal(padded[..., :360, :], image) and padded[..., 360:, :].abs().sum() == 0
    assert pad_to_multiple(torch.zeros(1, 1, 512, 512)).shape == (1, 1, 512, 512)


def test_the_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 0.0, 4) == pytest.approx(0.25)
    assert lr_factor(3, 0.0, 4) == pytest.approx(1.0)
    assert lr_factor(10, 0.5, 4) == pytest.approx(0.5)
    assert lr_factor(10, 1.0, 4) == pytest.approx(0.0, abs=1e-12)


def isbi_run(name: str, seed: int, curve: list[tuple[float, float]], final: float) -> dict:
    """A hand-made library-study run: (CPU seconds, membrane IoU) at each evaluation."""
    def metrics(membrane):
        return {"miou": (0.9 + membrane) / 2, "pixel_error": 0.1,
                "iou": {"cell": 0.9, "membrane": membrane}}
    return {"dataset": "isbi", "contender": {"name": name}, "seed": seed, "params": 10,
            "steps": 4, "step_wall_s": 1.0, "recipe": {"seconds": 600.0},
            "curve": [{"train_cpu_s": s, "metrics": metrics(m)} for s, m in curve],
            "final": metrics(final)}


def test_the_library_summary_spreads_seeds_and_times_the_target():
    """Hand-computed: seed 0 reaches the target at its second evaluation (250 s), seed 1
    never; within half the budget (300 s) their best are 0.66 and 0.60."""
    target = ISBI_TARGET
    runs = [isbi_run("a", 0, [(100, target - 0.1), (250, target + 0.01), (500, target - 0.02)],
                     final=0.70),
            isbi_run("a", 1, [(150, 0.55), (290, 0.60), (590, target - 0.01)], final=0.64)]
    row, = summarise(runs)
    assert row["seeds"] == 2
    assert row["iou_membrane"] == pytest.approx(0.67)
    assert (row["iou_membrane_min"], row["iou_membrane_max"]) == (0.64, 0.70)
    assert row["miou_min"] == pytest.approx(0.77) and row["miou_max"] == pytest.approx(0.80)
    assert row["reached_target"] == "1/2" and row["cpu_s_to_target"] == 250
    assert row["best_membrane_half_budget"] == pytest.approx((target + 0.01 + 0.60) / 2)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_the_loop_trains_in_the_recipes_precision_and_scores_in_fp32(precision, dtype):
    """bf16 runs the training forward pass in bfloat16 (through unetseg's fast path) and
    still updates the model's own weights; evaluation stays float32 either way."""
    from unetseg.config import DataConfig

    data, _ = load_data(DataConfig(source="synthetic", size=32, train_samples=4,
                                   val_samples=1))
    seen: list[tuple[bool, torch.dtype]] = []
    original = torch.nn.Conv2d.forward

    def recording(conv, x):             # what each convolution computed in
        out = original(conv, x)
        seen.append((conv.training, out.dtype))
        return out

    contender = Contender("tiny", base=4)
    torch.manual_seed(0)                       # train_contender's seed: its initial weights
    initial = make_model(contender, data.in_channels, data.spec.num_classes).state_dict()
    recipe = Recipe(batch_size=2, eval_every=1, steps=2, warmup_steps=1, precision=precision)
    torch.nn.Conv2d.forward = recording
    try:
        model, run = train_contender(contender, data, recipe, seed=0)
    finally:
        torch.nn.Conv2d.forward = original
    trained = model.state_dict()
    assert not torch.equal(trained["head.weight"], initial["head.weight"])
    assert {d for training, d in seen if training} == {dtype}
    assert {d for training, d in seen if not training} == {torch.float32}
    assert run["recipe"]["precision"] == precision and run["steps"] == 2
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ValueError, match="precision"):
        Recipe(batch_size=2, eval_every=1, steps=2, precision="fp16")


def test_a_study_scored_on_test_sees_images_neither_training_nor_validation_drew():
    """``scored="test"``: the synthetic test draw shares no image with the training or the
    validation draw; on ISBI the scored slices are exactly the held-out block."""
    config = DataConfig(source="synthetic", size=32, train_samples=4, val_samples=3)
    validated, info_val = load_data(config)
    tested, info = load_data(config, scored="test")
    assert (info["scored_split"], info["scored_images"]) == ("test", 3)
    assert info_val["scored_split"] == "val"
    drawn = [image for image, _ in (*validated.train, *validated.val)]
    for image, _ in tested.val:
        assert not any(torch.equal(image, other) for other in drawn)
    if ISBI.is_dir():
        isbi, info = load_data(DataConfig(source="isbi", root=str(ISBI), size=32),
                               scored="test")
        assert sorted(Path(image).stem for image, _ in isbi.val.pairs) == sorted(ISBI_TEST)
        assert not {Path(image).stem for image, _ in isbi.train.pairs} & set(ISBI_TEST)


def test_a_full_study_publishes_its_table_charts_and_provenance_and_a_quick_one_nothing(
        tmp_path, monkeypatch):
    import reporting

    monkeypatch.setattr(reporting, "DOCS", tmp_path / "docs")
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "curve.png")
    results = {"study": "toy", "mode": "quick", "wall_s": 12.3}
    reporting.write_summary(out, results, "| a |\n| --- |\n| 1 |", charts=(out / "curve.png",))
    assert (out / "summary.md").exists() and not (tmp_path / "docs").exists()
    reporting.write_summary(out, {**results, "mode": "full"}, "| a |\n| --- |\n| 1 |",
                            charts=(out / "curve.png",))
    document = json.loads((tmp_path / "docs" / "results" / "toy_study.json").read_text())
    assert document["charts"] == ["images/experiments/toy_study_curve.png"]
    assert (tmp_path / "docs" / document["charts"][0]).read_bytes() == \
        (out / "curve.png").read_bytes()
    shown = reporting.summary(document)
    assert shown.startswith("| a |") and "(images/experiments/toy_study_curve.png)" in shown
    assert f"commit {document['commit']}" in shown and "12 s wall" in shown


# ---------------------------------------------------------------- the studies, end to end

def smp_python() -> str | None:
    """The experiments interpreter when it exists and imports smp and unetseg, else None."""
    if not EXP_PYTHON.exists():
        return None
    probe = subprocess.run([str(EXP_PYTHON), "-c", "import segmentation_models_pytorch, unetseg"],
                           capture_output=True, text=True)
    return str(EXP_PYTHON) if probe.returncode == 0 else None


def run_study(python: str, script: str, out: Path, *options: str) -> subprocess.CompletedProcess:
    """The study's --quick mode as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([python, str(EXPERIMENTS / script), "--quick", "--out", str(out),
                           *options], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_study_here(study, out: Path, *options: str) -> None:
    """The study's --quick mode through its `main`, in this process (whose torch thread count
    the study's loop changes, and this puts back)."""
    threads = torch.get_num_threads()
    try:
        assert study.main(["--quick", "--out", str(out), *options]) == 0
    finally:
        torch.set_num_threads(threads)


def in_unit_range(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def check_results(out: Path, expected: set[tuple[str, str]], metrics: tuple[str, ...]) -> dict:
    """results.json holds one run per expected (dataset, contender) with a non-empty curve and
    final metrics finite in [0, 1]; the summary table and a plot exist."""
    results = json.loads((out / "results.json").read_text())
    found = {(run["dataset"], run["contender"]["name"]) for run in results["runs"]}
    assert found == expected
    for run in results["runs"]:
        assert run["curve"] and run["steps"] >= 1 and run["params"] > 0
        for name in metrics:
            assert in_unit_range(run["final"][name]), (run["dataset"], run["contender"], name)
        assert all(v is None or in_unit_range(v) for v in run["final"]["iou"].values())
    assert results["mode"] == "quick" and results["machine"]["torch"]
    assert "| --- |" in (out / "summary.md").read_text()
    assert list(out.glob("*.png"))
    return results


def datasets_here(*wanted: str) -> list[str]:
    roots = {"isbi": ISBI, "camvid": CAMVID}
    return [name for name in wanted if name not in roots or roots[name].is_dir()]


def test_loss_study_quick(tmp_path):
    datasets = datasets_here("binary", "isbi")
    run_study_here(loss_study, tmp_path, "--datasets", ",".join(datasets))
    results = check_results(tmp_path, {(d, loss) for d in datasets for loss in ("BCE", "BCE+Dice")},
                            ("fg_iou", "miou", "pixel_accuracy"))
    assert all(run["steps"] == 6 and len(run["curve"]) == 2 for run in results["runs"])
    losses = {run["contender"]["name"]: run["contender"]["loss"] for run in results["runs"]}
    assert losses == {"BCE": "bce", "BCE+Dice": "bce_dice"}


@pytest.mark.slow
def test_upsample_study_quick(tmp_path):
    datasets = datasets_here("synthetic", "isbi")
    run_study_here(upsample_study, tmp_path, "--datasets", ",".join(datasets))
    results = check_results(tmp_path, {(d, v) for d in datasets
                                       for v in ("bilinear", "transpose")}, ("miou",))
    for run in results["runs"]:
        assert in_unit_range(run["checkerboard"]) and run["inference_s"] > 0
    for dataset in datasets:
        assert (tmp_path / f"artefacts_{dataset}.png").stat().st_size > 0
    params = {run["contender"]["upsample"]: run["params"] for run in results["runs"]}
    assert params["bilinear"] != params["transpose"]


def test_smp_study_quick(tmp_path):
    python = smp_python()
    if python is None:
        pytest.skip(f"{EXP_PYTHON} is missing or cannot import segmentation_models_pytorch "
                    f"(make exp-env builds it)")
    if not (ISBI.is_dir() and CAMVID.is_dir()):
        pytest.skip(f"needs the ISBI and CamVid copies in {ISBI.parent}")
    run_study(python, "smp_study.py", tmp_path)
    contenders = ("ours U-Net", "ours U-Net b16 T", "smp Unet r34", "MONAI BasicUNet")
    expected = {(d, c) for d in ("isbi", "camvid") for c in contenders}
    results = check_results(tmp_path, expected | {("camvid", "ours U-Net CE")},
                            ("miou", "pixel_accuracy", "pixel_error"))
    camvid = [run for run in results["runs"] if run["dataset"] == "camvid"]
    assert all(len(run["final"]["iou"]) == 11 for run in camvid)
    assert "CE vs CE + Dice" in (tmp_path / "summary.md").read_text()


SKIP_SMP = ("--skip-smp", "--datasets", "isbi")


@pytest.fixture(scope="module")
def study_without_smp(tmp_path_factory) -> Path:
    """The library study's --quick run without smp, on ISBI."""
    if not ISBI.is_dir():
        pytest.skip(f"needs the ISBI copy at {ISBI}")
    out = tmp_path_factory.mktemp("smp-study") / "skip"
    run_study_here(smp_study, out, *SKIP_SMP)
    return out


def test_smp_study_without_smp_says_so_or_runs_without_it(study_without_smp, tmp_path, capsys):
    """In an environment without smp: exit status 2 with the reason, and --skip-smp runs our
    U-Net and MONAI."""
    if smp_study.smp_missing() is None:
        pytest.skip("this interpreter has segmentation_models_pytorch")
    assert smp_study.main(["--quick", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "segmentation_models_pytorch cannot be imported" in err
    assert "--skip-smp" in err and not (tmp_path / "refused").exists()
    check_results(study_without_smp, {("isbi", "ours U-Net"), ("isbi", "ours U-Net b16 T"),
                                      ("isbi", "MONAI BasicUNet")}, ("miou", "pixel_error"))


def test_smp_study_resume_trains_only_the_missing_runs(study_without_smp, tmp_path, capsys):
    """--resume keeps the finished runs (same curve, same numbers) and trains the one taken
    out; a results file from another budget is refused by name."""
    path = tmp_path / "results.json"
    first = json.loads((study_without_smp / "results.json").read_text())
    kept, dropped = first["runs"][:-1], first["runs"][-1]["contender"]["name"]
    path.write_text(json.dumps({**first, "runs": kept}))
    resume = ["--quick", *SKIP_SMP, "--out", str(tmp_path), "--resume"]

    assert smp_study.main(resume) == 0
    second = json.loads(path.read_text())
    assert second["runs"][:-1] == kept                      # untouched, not retrained
    assert second["runs"][-1]["contender"]["name"] == dropped
    assert len(second["commands"]) == 2 and dropped in capsys.readouterr().out
    assert second["wall_s"] > first["wall_s"]                # both parts' wall time

    assert smp_study.main(resume) == 0                        # nothing left
    third = json.loads(path.read_text())
    assert third["runs"] == second["runs"] and third["machine"] == second["machine"]

    with pytest.raises(SystemExit, match="--seconds None"):
        smp_study.main([*resume, "--seconds", "5"])


# ---------------------------------------------------------------- the GPU script

def _camvid_gpu(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "run"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(EXPERIMENTS / "camvid_gpu.sh"), *args, str(CAMVID)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"no CamVid at {CAMVID}")
def test_the_camvid_gpu_script_runs_end_to_end_on_the_cpu_in_quick_mode(tmp_path):
    result = _camvid_gpu(tmp_path, "--quick")
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("sky", "pole", "bicyclist", "mIoU"):          # the per-class table
        assert name in result.stdout
    assert (tmp_path / "run" / "best.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the full run would start")
@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"no CamVid at {CAMVID}")
def test_the_camvid_gpu_script_has_nothing_to_do_without_a_gpu(tmp_path):
    result = _camvid_gpu(tmp_path)
    assert result.returncode == 0 and "no CUDA GPU here: nothing to do" in result.stdout
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the recipe search's chart

def fake_run(folder: Path, rows: list[tuple[float, int, float, list]]) -> Path:
    """A `unetseg train` run folder by hand: metrics.jsonl rows of (seconds since the last
    row, step, val mIoU, per-class IoU) and a checkpoint naming the classes."""
    from unetseg.checkpoint import save_checkpoint
    from unetseg.model import UNet

    folder.mkdir(parents=True)
    save_checkpoint(folder / "best.safetensors", UNet(1, 3, base=2, depth=1),
                    {"class_names": ["sky", "road", "pole"]})
    lines = [json.dumps({"seconds": seconds, "step": step, "val_miou": miou, "val_iou": iou})
             for seconds, step, miou, iou in rows]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_recipe_curves_reads_the_runs_clock_and_reports_best_within_and_time_to_target(
        tmp_path, capsys):
    from recipe_curves import main

    # Cumulative clock: 30, 90, 150 minutes. The best within 100 minutes is the second row
    # (0.35, its lowest class 0.05); the 0.4 target is first met at 150 minutes.
    run = fake_run(tmp_path / "c1", [(1800, 100, 0.20, [0.6, 0.0, None]),
                                     (3600, 300, 0.35, [0.8, 0.2, 0.05]),
                                     (3600, 500, 0.42, [0.9, 0.3, 0.06])])
    chart = tmp_path / "chart.png"
    assert main([f"{run}=recipe", "--metric", "miou", "--within", "100",
                 "--target", "0.3,0.4,0.9", "--out", str(chart)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| recipe"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == ["3", "500", "150.000"]
    assert cells[4] == "0.350 at 90.0 min (0.050)"
    assert cells[5:] == ["90.0 (step 300)", "150.0 (step 500)", "-"]
    assert chart.stat().st_size > 0

    assert main([str(run), "--metric", "iou:road", "--target", "0.25", "--out", str(chart)]) == 0
    assert "150.0 (step 500)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="sky, road, pole"):
        main([str(run), "--metric", "iou:car", "--out", str(chart)])
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        main([str(tmp_path), "--out", str(chart)])


# ---------------------------------------------------------------- the planning study

def test_the_summary_gives_foreground_iou_for_two_classes_and_miou_for_more():
    rows = [{"dataset": "d", "contender": "planned", "seed": s, "test_images": 5, "miou": m,
             "iou": {"background": 0.9, "fg": f}, "steps": n}
            for s, (m, f, n) in enumerate([(0.7, 0.5, 2864), (0.8, 0.7, 4120)])]
    rows.append({"dataset": "e", "contender": "smp", "seed": 0, "test_images": 2, "miou": 0.4,
                 "iou": {"a": 0.2, "b": 0.4, "c": None}})           # from before steps were kept
    assert plan_study.summary(rows).splitlines()[2:] == [
        "| d | 5 | planned | 2 | foreground IoU 0.600 (0.500-0.700) | 0.750 | 2,864-4,120 |",
        "| e | 2 | smp | 1 | mIoU 0.400 | 0.400 | - |"]


def test_a_study_run_on_some_datasets_keeps_the_other_rows_of_its_results_file(tmp_path):
    def row(dataset, contender, seed, miou):
        return {"dataset": dataset, "contender": contender, "seed": seed, "miou": miou}

    path = tmp_path / "plan_study_b15.json"
    plan_study.write_results(path, [row("d", "planned", 0, 0.5), row("e", "smp", 0, 0.4)])
    plan_study.write_results(path, [row("d", "planned", 0, 0.6), row("d", "planned", 1, 0.7)])
    rows = json.loads(path.read_text())["rows"]
    assert [(r["dataset"], r["seed"], r["miou"]) for r in rows] == [
        ("d", 0, 0.6), ("d", 1, 0.7), ("e", 0, 0.4)]       # replaced, added, kept


def test_a_kept_row_keeps_the_machine_of_the_file_that_held_it(tmp_path):
    """A study spans sessions on different machines: a row written before rows named their
    machine is the machine of the file that wrote it, not of the next session's writer."""
    path = tmp_path / "plan_study_b60.json"
    plan_study.write_results(path, [{"dataset": "d", "contender": "planned", "seed": 0}])
    first = json.loads(path.read_text())
    first["machine"] = "the first machine"
    path.write_text(json.dumps(first))
    plan_study.write_results(path, [{"dataset": "e", "contender": "smp", "seed": 0,
                                     "machine": "the second machine"}])
    document = json.loads(path.read_text())
    assert [row["machine"] for row in document["rows"]] == ["the first machine",
                                                            "the second machine"]
    assert plan_study.machines(document) == ("d on the first machine; e on the second machine")
    document["rows"][1]["machine"] = "the first machine"
    assert plan_study.machines(document) == "On the first machine"


def test_the_longer_budget_sits_beside_the_shorter_with_gains_in_points(tmp_path, monkeypatch):
    def row(contender, seed, budget, fg):
        return {"dataset": "d", "contender": contender, "seed": seed, "budget_min": budget,
                "miou": 0.5, "iou": {"background": 0.9, "fg": fg}}

    short = {"machine": "m", "rows": [row("planned", 0, 15, 0.60), row("planned", 1, 15, 0.70),
                                      row("smp", 0, 15, 0.50), row("monai", 0, 15, 0.55)]}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b15.json").write_text(json.dumps(short))
    monkeypatch.setattr(plan_study, "HERE", tmp_path / "experiments")
    longer = {"machine": "m", "rows": [row("planned", 0, 60, 0.72), row("smp", 0, 60, 0.56)]}
    assert plan_study.longer_budget(longer, "docs/b15.json").splitlines() == [
        "| data | contender | 15 min (seeds) | 60 min (seeds) | gain, points |",
        "| --- | --- | --- | --- | --- |",
        "| d | planned | 0.650 (2) | 0.720 (1) | +7.0 |",
        "| d | smp | 0.500 (1) | 0.560 (1) | +6.0 |",
        "",
        "| data | peer | planned - peer, 15 min | planned - peer, 60 min |",
        "| --- | --- | --- | --- |",
        "| d | smp | +15.0 | +16.0 |"]


def test_the_isbi_view_holds_out_the_test_slices_and_reads_masks_as_the_preset(
        tmp_path, monkeypatch):
    """Linked, not copied: slices 24-29 are test/, the rest train/; a stored 0 (membrane) is
    class 1 and 255 (cell) class 0, as --data isbi reads them."""
    root = tmp_path / "shared" / "isbi2012-membrane"
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
    mask = np.full((32, 32), 255, np.uint8)
    mask[:, :8] = 0
    for stem in range(30):
        Image.fromarray(np.full((32, 32), stem, np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    monkeypatch.setattr(plan_study, "SHARED", tmp_path / "shared")
    monkeypatch.setattr(plan_study, "RUNS", tmp_path / "runs")
    view = plan_study.dataset_folder("isbi")
    assert sorted(p.stem for p in (view / "test" / "images").iterdir()) == sorted(ISBI_TEST)
    train = sorted(p.stem for p in (view / "train" / "images").iterdir())
    assert len(train) == 24 and not set(train) & set(ISBI_TEST)
    assert all(p.is_symlink() for p in (view / "train" / "masks").iterdir())
    data = build_datasets(DataConfig(source=str(view), size=32, augment=False))
    assert data.spec.class_names == ("cell", "membrane")
    _, labels = data.train[0]
    assert (labels[:, :8] == 1).all() and (labels[:, 8:] == 0).all()
    assert plan_study.dataset_folder("isbi") == view            # a second call changes nothing


@pytest.mark.parametrize("native_bf16, precision", [(True, "bf16"), (False, "fp32")])
def test_a_peer_trains_for_its_budget_and_writes_what_evaluate_writes(
        tmp_path, make_box_folder, monkeypatch, native_bf16, precision):
    """AMP, its own practice, where the CPU computes bf16; emulated, bf16 is many times
    slower than fp32, and the peer trains in fp32 as its user would."""
    monkeypatch.setattr(peer_run, "cpu_has_bf16", lambda: native_bf16)
    root = tmp_path / "d"
    make_box_folder(root / "train", 10, size=(32, 32))     # BasicUNet halves 32 four times
    make_box_folder(root / "test", 3, size=(32, 32), seed=7)
    (root / "dataset.yaml").write_text("classes: [background, box]\n")
    monkeypatch.setattr(peer_run, "CROP", 32)
    monkeypatch.setattr(peer_run, "BATCH", 2)
    evaluation = peer_run.run_peer(root, "monai", 0, 0.02, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "test" / "evaluation.json").read_text())
    assert written == evaluation and written["images"] == 3 and written["split"] == "test"
    assert [row["class"] for row in written["classes"]] == ["background", "box"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["steps"] >= 1 and run["recipe"]["precision"] == precision
    assert run["curve"][-1]["train_cpu_s"] >= 0.02 * 60
