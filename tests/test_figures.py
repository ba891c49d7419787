"""The docs' measured figures are their results files' (docs/figures.py): every figures block
is what its script renders from its committed file, and no page (README.md and every page under
docs/, a new one included) quotes a figure outside a block, but for the settings `SETTINGS`
lists for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))

import figures  # noqa: E402  (docs/ is no package)

# The settings a page states in figure-like form (a budget, a rule's constant): each was read
# and is no measurement. A page not listed may state none.
SETTINGS = {
    "README.md": {"3.11"},
    "docs/planning.md": {"15 minutes", "1.5x", "85%", "10x", "5%", "0.75", "15%",
                         "5 minutes", "60 minutes"},
    "docs/data.md": {"0.05", "5%", "2x", "4 GiB", "37.5%"},
    "docs/model-losses-metrics.md": {"0.75%"},
    "docs/python.md": {"0.003"},
    "docs/robustness.md": {"0.01"},
    # the health monitor's thresholds, and an example of over-confidence
    "docs/training.md": {"0.01", "1%", "99.9%", "10%", "0.95", "95%"},
    "docs/prediction.md": {"4x", "0.25"},
    # the race's thresholds, the tiles' overlap, the loader's memory cap
    "docs/benchmarks.md": {"0.90", "0.65", "0.25", "4 GiB"},
    "docs/getting-started.md": {"0.75", "15 minutes"},
    # the binary study's foreground share; the labelling study's starting and added shares
    "docs/experiments.md": {"5%", "25%", "10%"},
    # the verdicts' thresholds
    "docs/skills/segmentation-mask-inspector.md": {"1%", "0.5%", "2%", "0.90", "50%", "25%",
                                                   "0.7x", "40%", "30 points"},
}
PAGES = [page.relative_to(ROOT).as_posix() for page in figures.pages()]


@pytest.mark.parametrize("page", PAGES)
def test_each_figures_block_is_what_its_script_renders_from_its_results_file(page):
    text = (ROOT / page).read_text()
    assert figures.regenerated(text) == text, f"{page}: stale figures; `make docs` renders them"


def test_each_block_names_a_committed_results_file_that_says_where_it_was_measured():
    named = {results for page in PAGES for results, _, _ in
             figures.blocks((ROOT / page).read_text())}
    assert {"docs/results/demo.json", "docs/results/plan_study_b15.json",
            "docs/results/printouts.json", "docs/results/loss_study.json",
            "docs/results/upsample_study.json"} <= named
    for results in named:
        document = json.loads((ROOT / results).read_text())
        assert {"machine", "commit", "command"} <= document.keys(), results


def test_the_settings_name_pages_that_exist():
    assert set(SETTINGS) <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_a_page_quotes_no_measured_figure_outside_a_block(page):
    found = figures.measured_figures((ROOT / page).read_text())
    unbacked = [(line, figure) for line, figure in found if figure not in SETTINGS.get(page, ())]
    assert not unbacked, f"{page}: figures with no results file (line, figure): {unbacked}"


def test_the_scan_finds_figures_in_prose_but_not_in_blocks_code_spans_or_sizes():
    text = ("took 77 s, 2.4x faster, 814 MiB, IoU 0.711 and 12% of it; `--lr 3e-3 0.5x`,\n"
            "64 x 64 images\n"
            "<!-- figures: a.json b.py:f -->\n0.999 inside\n<!-- /figures -->\n")
    assert [figure for _, figure in figures.measured_figures(text)] == [
        "77 s", "2.4x", "814 MiB", "0.711", "12%"]


def test_a_marker_that_does_not_pair_into_a_block_is_an_error_not_skipped():
    unclosed = ("<!-- figures: a.json b.py:f -->\nprose\n"
                "<!-- figures: c.json d.py:g -->\nx\n<!-- /figures -->\n")
    malformed = "<!-- figures: a.json b.py -->\nx\n<!-- /figures -->\n"
    for text in (unclosed, malformed):
        with pytest.raises(ValueError, match="do not pair"):
            figures.regenerated(text)


def test_the_scan_knows_rates_points_and_long_decimals():
    text = "12 img/s, 340 GFLOP/s, 5 points, 2 hours, 1 minute and 12.34"
    assert [figure for _, figure in figures.measured_figures(text)] == [
        "12 img/s", "340 GFLOP/s", "5 points", "2 hours", "1 minute", "12.34"]
