"""`--precision auto` measures: the faster of fp32 and bf16 on this CPU, cached, kept on resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import unetseg.tuning as tuning
from unetseg.cli import main
from unetseg.model import UNetConfig
from unetseg.tuning import choose_precision, measure_step

CONFIG = UNetConfig(3, 3, base=4)


def fake_steps(seconds: dict[str, float], calls: list):
    """A stand-in for `measure_step` whose steps take the given (pretend) seconds."""
    def measure(config, batch, size, precision):
        def step():
            calls.append(precision)
            return seconds[precision]
        return step
    return measure


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tuning, "cpu_has_bf16", lambda: True)


@pytest.mark.parametrize("seconds,expected", [({"fp32": 1.0, "bf16": 0.5}, "bf16"),
                                              ({"fp32": 0.5, "bf16": 1.0}, "fp32"),
                                              ({"fp32": 1.0, "bf16": 0.97}, "fp32")])
def test_the_faster_precision_is_chosen_and_a_tie_is_fp32(seconds, expected):
    calls: list = []
    choice = choose_precision(CONFIG, 8, 64, torch.device("cpu"), fake_steps(seconds, calls))
    assert choice.precision == expected
    assert choice.seconds == seconds
    # Warm-up once each, then alternated: a busy moment slows both candidates alike.
    assert calls == ["fp32", "bf16"] + ["fp32", "bf16"] * tuning.ROUNDS


def test_the_choice_is_cached_per_cpu_torch_and_shapes(tmp_path):
    calls: list = []
    measure = fake_steps({"fp32": 1.0, "bf16": 0.5}, calls)
    choose_precision(CONFIG, 8, 64, torch.device("cpu"), measure)
    measured = len(calls)
    again = choose_precision(CONFIG, 8, 64, torch.device("cpu"), measure)
    assert len(calls) == measured and again.precision == "bf16"
    assert "cached" in again.reason
    choose_precision(CONFIG, 8, 128, torch.device("cpu"), measure)         # other shapes
    assert len(calls) > measured
    cache = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert len(cache) == 2


def test_a_cpu_without_native_bf16_is_not_measured(monkeypatch):
    monkeypatch.setattr(tuning, "cpu_has_bf16", lambda: False)
    calls: list = []
    choice = choose_precision(CONFIG, 8, 64, torch.device("cpu"), fake_steps({}, calls))
    assert choice.precision == "fp32" and calls == []


def test_measuring_leaves_the_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    choose_precision(CONFIG, 2, 32, torch.device("cpu"))                    # real steps
    assert torch.equal(torch.rand(3), expected)


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["train", "--size", "32", "--train-samples", "16", "--val-samples", "4", "--base",
             "4", "--batch-size", "8", "--quiet"]
    assert main([*flags, "--epochs", "1", "--out", str(run)]) == 0
    started = yaml.safe_load((run / "config.yaml").read_text())["runtime"]["precision"]
    cache = tmp_path / "cache" / "precision.json"
    flipped = {key: {**value, "precision": "fp32" if started == "bf16" else "bf16"}
               for key, value in json.loads(cache.read_text()).items()}
    cache.write_text(json.dumps(flipped))                 # the cache now says the other one
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert f"precision {started}" in capsys.readouterr().out
    assert yaml.safe_load((run / "config.yaml").read_text())["runtime"]["precision"] == started


@pytest.mark.slow
def test_auto_is_never_slower_than_fp32_beyond_the_noise():
    """Measured for real: the chosen precision, timed again alternately with fp32, is not
    slower than fp32 by more than a quarter (the noise of a shared 2-core machine)."""
    config = UNetConfig(3, 3, base=8)
    choice = choose_precision(config, 2, 64, torch.device("cpu"))
    chosen, fp32 = (measure_step(config, 2, 64, p) for p in (choice.precision, "fp32"))
    chosen(), fp32()
    times = {"chosen": [], "fp32": []}
    for _ in range(5):
        times["chosen"].append(chosen())
        times["fp32"].append(fp32())
    assert min(times["chosen"]) <= 1.25 * min(times["fp32"])
