"""The one precision decision: `--precision auto` measures the faster of fp32 and bf16 on this
CPU, caches it and keeps it on resume; an explicit choice is kept; fp16 needs CUDA."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import unetseg.precision as precision
from unetseg.cli import main
from unetseg.model import UNetConfig
from unetseg.precision import cpu_has_bf16 as real_cpu_has_bf16  # before own_cache
from unetseg.precision import decide_precision, replayed_precision

CONFIG = UNetConfig(3, 3, base=4)
CPU = torch.device("cpu")


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
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)


@pytest.mark.parametrize("seconds,expected", [({"fp32": 1.0, "bf16": 0.5}, "bf16"),
                                              ({"fp32": 0.5, "bf16": 1.0}, "fp32"),
                                              ({"fp32": 1.0, "bf16": 0.97}, "fp32")])
def test_the_faster_precision_is_chosen_and_a_tie_is_fp32(seconds, expected):
    calls: list = []
    choice = decide_precision("auto", CPU, CONFIG, 8, 64, fake_steps(seconds, calls))
    assert choice.precision == expected
    assert choice.seconds == seconds
    # Warm-up once each, then alternated: a busy moment slows both candidates alike.
    assert calls == ["fp32", "bf16"] + ["fp32", "bf16"] * precision.ROUNDS


def test_the_choice_is_cached_per_cpu_torch_and_shapes(tmp_path):
    calls: list = []
    measure = fake_steps({"fp32": 1.0, "bf16": 0.5}, calls)
    decide_precision("auto", CPU, CONFIG, 8, 64, measure)
    measured = len(calls)
    again = decide_precision("auto", CPU, CONFIG, 8, 64, measure)
    assert len(calls) == measured and again.precision == "bf16"
    assert "cached" in again.reason
    decide_precision("auto", CPU, CONFIG, 8, 128, measure)         # other shapes
    assert len(calls) > measured
    cache = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert len(cache) == 2


def test_two_cpus_of_one_model_name_never_share_a_cached_choice(monkeypatch):
    """Cloud machines named "AMD EPYC" came with and without AVX-512 BF16, and
    ATEN_CPU_CAPABILITY lowers the kernels of one machine: the cache is kept per CPU kind, not
    per model name, so a home folder shared between such machines re-measures on each."""
    monkeypatch.setattr(precision, "cpu_model", lambda: "AMD EPYC")
    calls: list = []
    measure = fake_steps({"fp32": 1.0, "bf16": 0.5}, calls)
    kinds = []
    for flags in (("avx512_bf16", "avx2"), ("amx_bf16", "avx2")):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        kinds.append(precision.cpu_kind())
        before = len(calls)
        choice = decide_precision("auto", CPU, CONFIG, 8, 64, measure)
        assert len(calls) > before and "measured earlier" not in choice.reason    # on each
    assert kinds[0] != kinds[1] and all(k.startswith("AMD EPYC (") for k in kinds)


@pytest.mark.parametrize("flags,native", [(("avx512_bf16", "avx2"), True),
                                          (("amx_bf16",), True), (("avx2",), False), ((), False)])
def test_native_bf16_is_avx512_bf16_or_amx(monkeypatch, flags, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert real_cpu_has_bf16() is native


def test_a_cpu_without_native_bf16_is_not_measured(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    calls: list = []
    choice = decide_precision("auto", CPU, CONFIG, 8, 64, fake_steps({}, calls))
    assert choice.precision == "fp32" and calls == []


def test_measuring_leaves_the_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    decide_precision("auto", CPU, CONFIG, 2, 32)                    # real steps
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


def test_an_explicit_precision_is_kept_without_measuring():
    calls: list = []
    for requested in ("fp32", "bf16"):
        choice = decide_precision(requested, CPU, CONFIG, 8, 64, fake_steps({}, calls))
        assert choice.precision == requested and calls == []


@pytest.mark.parametrize("requested,match", [("fp16", "fp16 autocast needs a CUDA device"),
                                             ("fp8", "--precision must be one of")])
def test_a_precision_the_cpu_cannot_run_is_refused_naming_the_flag(requested, match):
    with pytest.raises(ValueError, match=match):
        decide_precision(requested, CPU, CONFIG)


def test_a_recorded_choice_is_kept_and_a_cpu_without_a_model_runs_fp32():
    calls: list = []
    recorded = {"precision": "bf16", "seconds": {"fp32": 2.0, "bf16": 1.0}}
    kept = decide_precision("auto", CPU, CONFIG, 8, 64, fake_steps({}, calls), recorded)
    assert kept.precision == "bf16" and kept.reason == "as when the run started" and not calls
    assert decide_precision("auto", CPU).precision == "fp32"


def test_a_checkpoint_is_scored_in_its_own_precision_fp16_only_on_a_gpu():
    assert replayed_precision("bf16", CPU) == "bf16"
    assert replayed_precision("fp16", CPU) == "fp32"
    assert replayed_precision("fp16", torch.device("cuda")) == "fp16"
