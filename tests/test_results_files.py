"""Figures the docs quote from a results file are the file's, as the script that wrote it
prints them (`--report`): a table typed by hand, or one left behind by a newer run, fails here.
(Issue 24 asks this of every figure; these are the pages done so far.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "benchmarks")]

import data_speed  # noqa: E402  (benchmarks/ and experiments/ are not packages)
import plan_study  # noqa: E402


def results(pattern: str) -> list[Path]:
    found = sorted(ROOT.glob(pattern))
    assert found, f"no results file matches {pattern}"
    return found


def test_planning_shows_each_plan_study_as_the_study_reports_it():
    docs = (ROOT / "docs" / "planning.md").read_text()
    for path in results("docs/results/plan_study_b*.json"):
        rows = json.loads(path.read_text())["rows"]
        assert plan_study.summary(rows) in docs, path.name


def test_benchmarks_show_the_loader_timings_as_data_speed_reports_them():
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    for path in results("benchmarks/results/data_speed*.json"):
        document = json.loads(path.read_text())
        if path.stem == "data_speed":
            assert data_speed.report(document) in docs
        for crop in document["crops"]:            # the ratios the prose quotes
            assert f"{crop['fed_ratio']['workers=0']:.2f}x" in docs, (path.name, crop["size"])
