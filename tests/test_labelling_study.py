"""experiments/labelling_study.py: the pool's split, and one round of its --quick loop end to
end (train, suggest, train again, score on test/), through its `main`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from unetseg.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import labelling_study  # noqa: E402


def test_the_pool_splits_into_validation_a_start_and_rounds_of_a_tenth():
    stems = [f"{i:02d}" for i in range(50)]
    val, pool, start, step = labelling_study.split_pool(stems, seed=3)
    assert len(val) == 10 and len(pool) == 40 and not set(val) & set(pool)
    assert sorted(val + pool) == stems
    assert (start, step) == (10, 4)
    assert labelling_study.split_pool(stems, seed=3)[1] == pool        # seeded
    assert labelling_study.split_pool(stems, seed=4)[1] != pool


def in_this_process(*arguments: str) -> subprocess.CompletedProcess:
    """`python -m unetseg ...` run by its `main` here: the study's commands without a
    process (and a torch import) each."""
    assert arguments[:2] == ("-m", "unetseg")
    return subprocess.CompletedProcess(arguments, main(list(arguments[2:])), "", "")


def test_one_quick_round_labels_what_suggest_ranked_first(tmp_path, monkeypatch):
    for name in ("RUNS", "RESULTS", "CURVE"):       # --quick moves them under --out
        monkeypatch.setattr(labelling_study, name, getattr(labelling_study, name))
    monkeypatch.setattr(labelling_study, "_run", in_this_process)
    assert labelling_study.main(["--quick", "--out", str(tmp_path), "--rounds", "1",
                                 "--jobs", "1", "--strategies", "suggest"]) == 0
    document = json.loads((tmp_path / "labelling_study.json").read_text())
    assert document["machine"] and document["commit"] and document["command"]
    found = {(row["strategy"], row["round"], row["labelled"]) for row in document["rows"]}
    assert found == {("start", 0, 4), ("suggest", 1, 6)}
    assert all(0.0 <= row["miou"] <= 1.0 and row["test_images"] == 4
               for row in document["rows"])
    runs = tmp_path / "runs" / "data-s0"
    start = (runs / "start" / "labelled.txt").read_text().split()
    with open(runs / "suggest-r1" / "suggest" / "suggest.csv", newline="") as handle:
        ranked = sorted((int(row["rank"]), Path(row["image"]).stem)
                        for row in csv.DictReader(handle) if row["rank"])
    assert (runs / "suggest-r1" / "labelled.txt").read_text().split() == \
        start + [stem for _, stem in ranked]
    assert "| data | 0 | 25% |" in labelling_study.table(document)
    assert (tmp_path / "labelling_study.png").is_file()
