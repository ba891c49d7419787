"""The benchmarks' own bookkeeping (their timings are not tests: `make bench` runs them)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def race_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import time_to_accuracy

    yield time_to_accuracy
    sys.modules.pop("time_to_accuracy", None)


def _fake_result(contenders, failed=()):
    """What `run_race` returns: ours reaches the threshold at 20 s, the others never."""
    history = {c.name: [{"seconds": 20.0, "steps": 5, "iou": [1.0, 0.95, 0.95],
                         "test_iou": [1.0, 0.95 if c.kind == "ours" else 0.5, 0.95]}]
               for c in contenders}
    return {"history": history, "skipped": {name: "stopped" for name in failed},
            "failed": {name: "stopped" for name in failed},
            "ready": {c.name: {"precision": "bf16"} for c in contenders}}


def test_a_kept_race_run_is_read_back_and_never_taken_for_one_with_other_settings(
        race_module, monkeypatch, tmp_path):
    """An interrupted --full race resumes: a finished (lr, seed) run is not trained again
    under the same settings, a run with other settings gets a file of its own, and a run in
    which a contender stopped mid-way (a crash, Ctrl-C) is not kept as finished."""
    ran, stop = [], []

    def fake_run(race, contenders, threads, lr, seed):
        ran.append((race.cap, lr, seed))
        return _fake_result(contenders, failed=stop)

    monkeypatch.setattr(race_module, "run_race", fake_run)
    race = race_module.Race("synthetic", {"source": "synthetic"}, (1,), 0.9, cap=4, every=2)
    ours = [race_module.Contender("ours", "ours")]
    first = race_module.kept_run(race, ours, 1, 1e-3, 0, tmp_path)
    again = race_module.kept_run(race, ours, 1, 1e-3, 0, tmp_path)
    assert again == first and ran == [(4, 1e-3, 0)]
    longer = race_module.Race("synthetic", {"source": "synthetic"}, (1,), 0.9, cap=8, every=2)
    race_module.kept_run(longer, ours, 1, 1e-3, 0, tmp_path)
    assert race_module.kept_run(race, ours, 1, 1e-3, 0, tmp_path) == first
    assert ran == [(4, 1e-3, 0), (8, 1e-3, 0)] and len(list(tmp_path.iterdir())) == 2
    stop.append("ours")
    race_module.kept_run(race, ours, 1, 3e-3, 0, tmp_path)
    race_module.kept_run(race, ours, 1, 3e-3, 0, tmp_path)
    assert ran[2:] == [(4, 3e-3, 0)] * 2 and len(list(tmp_path.iterdir())) == 2
    # One CPU model name with other instruction sets (cloud "AMD EPYC"s with and without
    # AVX-512 BF16) is another machine: its run is its own.
    stop.clear()
    monkeypatch.setattr(race_module, "cpu_kind", lambda: "AMD EPYC (avx2; ATen AVX2)")
    race_module.kept_run(race, ours, 1, 1e-3, 0, tmp_path)
    assert ran[-1] == (4, 1e-3, 0) and len(ran) == 5 and len(list(tmp_path.iterdir())) == 3


def test_the_full_race_runs_two_at_a_time_and_a_second_invocation_trains_nothing(
        race_module, monkeypatch, tmp_path):
    """`--full --jobs 2`: the first two (lr, seed) runs overlap (each waits for the other at
    a barrier), every run is made once and kept, and the tables are made from all of them;
    the same command again reads every run back."""
    import harness
    import torch

    ran, together = [], threading.Barrier(2, timeout=20)

    def fake_run(race, contenders, threads, lr, seed):
        if len(ran) < 2:
            ran.append((race.name, lr, seed))
            together.wait()             # broken (the test fails) unless both run at once
        else:
            ran.append((race.name, lr, seed))
        return _fake_result(contenders)

    monkeypatch.setattr(race_module, "run_race", fake_run)
    monkeypatch.setattr(race_module, "FULL_RUNS", tmp_path / "runs")
    monkeypatch.setattr(harness, "_PRINTED", [])
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    out = tmp_path / "race.json"
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--full", "--jobs", "2",
                                      "--threads", "1", "--skip", "isbi,guard",
                                      "--out", str(out)])
    race_module.main()
    assert sorted(ran) == sorted(("synthetic", lr, seed) for lr in (3e-4, 1e-3, 3e-3)
                                 for seed in range(3))
    assert len(list((tmp_path / "runs").iterdir())) == 9
    written = tmp_path / "race_synthetic.json"     # each part of the race a file of its own
    assert "20 s (20-20 s; 3 of 3)" in written.read_text()
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["race_synthetic.json"]
    ran.clear()
    harness._PRINTED.clear()
    written.unlink()
    race_module.main()
    assert ran == [] and "20 s (20-20 s; 3 of 3)" in written.read_text()


def test_make_bench_names_contenders_that_exist_and_a_wrong_name_lists_the_right_ones(
        monkeypatch):
    """`make bench` picks its two contenders by name: a name that matches none is an error
    naming the known ones, never a silently smaller run."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import train_step

    everyone = train_step.standard((32,))
    picked = train_step.chosen(everyone, "seed (plain) (a), ours b32")
    assert [c.name for c in picked] == ["ours b32", "seed (plain) (a)"]
    assert train_step.chosen(everyone, None) == everyone
    with pytest.raises(SystemExit, match="'ours b16'.*'MONAI BasicUNet \\(b\\)'"):
        train_step.chosen(everyone, "ours b16")
    makefile = (BENCHMARKS.parent / "Makefile").read_text()
    asked = makefile.split('--contenders "', 1)[1].split('"', 1)[0]
    assert len(train_step.chosen(everyone, asked)) == len(asked.split(","))


def test_the_race_refuses_more_threads_than_cores(race_module, monkeypatch, capsys):
    """Two runs of all cores each would slow each other unevenly: refused, with the fix."""
    cores = str(os.cpu_count())
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--jobs", "2", "--threads", cores])
    with pytest.raises(SystemExit):
        race_module.parse_args()
    assert "more threads than" in capsys.readouterr().err


@pytest.mark.parametrize("native_bf16", [True, False])
def test_a_peers_own_practice_is_amp_only_where_the_cpu_computes_bf16(monkeypatch,
                                                                    native_bf16):
    """Emulated bf16 is many times slower than fp32: a peer's (a) row, as its own docs train
    it, leaves AMP off on such a CPU, and its row says so. The seed is fp32 either way."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import contenders

    monkeypatch.setattr(contenders, "NATIVE_BF16", native_bf16)
    monai = contenders.Contender("MONAI BasicUNet (a)", "monai")
    assert contenders.own_step(monai) is (contenders.amp_step if native_bf16
                                          else contenders.plain_step)
    assert monai.practice.startswith("bf16 AMP" if native_bf16 else "fp32")
    seed = contenders.Contender("seed (plain) (a)", "seed")
    assert seed.practice == "fp32, NCHW (its own loop)"
