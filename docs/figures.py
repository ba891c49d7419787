"""The docs' measured figures, regenerated from the committed results files that hold them.

A measured figure in README.md or docs/ lives in a block that names its results file and the
function of the script that measured it, which renders the block from that file:

    <!-- figures: docs/results/demo.json benchmarks/demo_figures.py:held_out -->
    ...what demo_figures.held_out(the file's JSON) returns...
    <!-- /figures -->

Words after the function are passed to it too (``plan_study.py:dataset isbi``, or the path of
another results file to compare with).

``python docs/figures.py`` (``make docs``) rewrites every block from its file; ``--check``
rewrites nothing and lists the blocks that differ (tests/test_figures.py runs it). Nothing
between the markers is typed by hand, so a figure cannot drift from the run that measured it.
`measured_figures` finds figure-like numbers left outside blocks (the test holds the pages it
lists to none).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
OPENER = "<!-- figures:"
CLOSER = "<!-- /figures -->"
# A block's body never holds another opener: an unclosed block is refused, not run on into
# the next one.
BLOCK = re.compile(r"(<!-- figures: (\S+) (\S+):(\w+)((?: [\w./-]+)*) -->\n)"
                   r"((?:(?!<!-- figures:).)*?)(<!-- /figures -->)", re.S)
# What a measured figure looks like in prose: a ratio ("2.4x"), a number with a unit of time,
# memory or share, or a score with two or more decimals. Settings are written as `--flags` (in
# backticks, not scanned) or in words; sizes as "64 x 64".
FIGURE = re.compile(
    r"(?<![\w.-])\d[\d,]*(?:\.\d+)?(?:x|×|\s?(?:s|ms|min|seconds?|minutes?|hours?|MiB|GiB|MB"
    r"|GB|%|img/s|GFLOP/s|points))(?![\w/])"
    r"|(?<![\w.-])\d+\.\d{2,}(?![\w.])")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@cache
def _script(path: str) -> ModuleType:
    """A script of benchmarks/ or experiments/ (not packages) as a module; its own folder
    is importable, as when it runs."""
    file = ROOT / path
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    spec.loader.exec_module(module)
    return module


def render(results: str, script: str, function: str, *arguments: str) -> str:
    """What ``function`` of ``script`` makes of the results file ``results`` (and of the
    block's further words, such as a dataset's name)."""
    document = json.loads((ROOT / results).read_text())
    text = getattr(_script(script), function)(document, *arguments).strip("\n")
    if OPENER in text or CLOSER in text:
        raise ValueError(f"{script}:{function} rendered a figures marker")
    return f"\n{text}\n\n"


def regenerated(text: str) -> str:
    """``text`` with every figures block rendered afresh from its results file. An opener
    that is not a block's (unclosed, or not of the form above) is an error, never skipped."""
    if text.count(OPENER) != len(BLOCK.findall(text)) or text.count(CLOSER) != text.count(
            OPENER):
        lines = [n for n, line in enumerate(text.splitlines(), 1) if OPENER in line]
        raise ValueError(f"figures markers that do not pair into blocks (openers on lines "
                         f"{lines}): each is `{OPENER} FILE SCRIPT:FUNCTION [WORDS] -->`, "
                         f"closed by `{CLOSER}`")
    return BLOCK.sub(lambda m: m[1] + render(m[2], m[3], m[4], *m[5].split()) + m[7], text)


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(results file, script, function) of each block in ``text``."""
    return [(m[2], m[3], m[4]) for m in BLOCK.finditer(text)]


def measured_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) of each figure-like number outside blocks, code spans and comments
    (code blocks are scanned: a printout's figures are measured too)."""
    text = BLOCK.sub(lambda m: "\n" * m[0].count("\n"), text)
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"`[^`]*`|<!--.*?-->", "", line)
        found.extend((number, m[0]) for m in FIGURE.finditer(line))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rewrite nothing; fail listing the pages whose blocks are stale")
    args = parser.parse_args()
    stale = []
    for page in pages():
        text = page.read_text()
        fresh = regenerated(text)
        if fresh != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(fresh)
    if args.check and stale:
        raise SystemExit("figures out of date with their results files (make docs rewrites "
                         "them): " + ", ".join(map(str, stale)))
    print(f"{'stale' if args.check else 'rewrote'}: {', '.join(map(str, stale)) or 'none'}")


if __name__ == "__main__":
    main()
