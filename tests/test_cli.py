"""The `unetseg` command."""

from __future__ import annotations

import subprocess
import sys

from unetseg.cli import main


def test_demo_trains_and_prints_the_per_class_table(capsys):
    assert main(["demo", "--steps", "3", "--size", "32", "--base", "4"]) == 0
    out = capsys.readouterr().out
    for word in ("background", "circle", "square", "mIoU", "pixel accuracy", "step    3/3"):
        assert word in out


def test_console_script_help_lists_the_demo():
    result = subprocess.run([sys.executable, "-m", "unetseg.cli", "demo", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--steps" in result.stdout and "default: 300" in result.stdout
