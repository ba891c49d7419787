"""``unetseg pick``: the dialogue around `unetseg.picker.recommend` (the rules live there).
It imports no torch: the picker answers in an instant on any machine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import TextIO

from ..picker import BUDGETS, CONTENTS, DOMAINS, OUTPUTS, Needs, Recommendation, recommend

__all__ = ["add_pick_arguments", "run_pick"]


# Needs field -> (question, allowed answers; None for a whole number >= 1).
QUESTIONS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "output": ("Do you need one label per pixel, separate objects, or both?", OUTPUTS),
    "content": ("Are the targets countable things, amorphous stuff, or both?", CONTENTS),
    "domain": ("Which domain?", DOMAINS),
    "images": ("How many labelled images do you have?", None),
    "budget": ("Latency or memory budget at prediction time?", BUDGETS),
    "image_size": ("Typical image size (long side, pixels)?", None),
}


def _pick_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _count(text: str) -> int | None:
    """``text`` as a whole number >= 1 ("5000", "5,000" and "5_000" alike), else None."""
    digits = text.replace(",", "").replace("_", "").strip()
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


def _positive_int(text: str) -> int:
    value = _count(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return value


def add_pick_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `unetseg pick`, one per `Needs` field; a flag left out is asked for."""
    parser.add_argument("--output", choices=OUTPUTS, help="one label per pixel (labels), "
                        "separate objects, or both (default: ask)")
    parser.add_argument("--content", choices=CONTENTS, help="countable things, amorphous "
                        "stuff, or both (default: ask)")
    parser.add_argument("--domain", choices=DOMAINS, help="the images' domain (default: ask)")
    parser.add_argument("--images", type=_positive_int, metavar="N",
                        help="number of labelled images (default: ask)")
    parser.add_argument("--budget", choices=BUDGETS, help="latency or memory budget at "
                        "prediction time; tight = edge device or CPU (default: ask)")
    parser.add_argument("--image-size", type=_positive_int, dest="image_size", metavar="N",
                        help="typical long side of the images in pixels (default: ask)")


def _ask(name: str, input_fn: Callable[[str], str], out: TextIO) -> str | int:
    """Ask for field ``name`` until the answer is allowed; EOFError propagates."""
    question, allowed = QUESTIONS[name]
    prompt = f"{question} [{'/'.join(allowed)}] " if allowed else f"{question} "
    while True:
        answer = input_fn(prompt).strip().lower()
        if allowed is None and _count(answer) is not None:
            return _count(answer)
        if allowed is not None and answer in allowed:
            return answer
        expected = f"one of {', '.join(allowed)}" if allowed else "a whole number >= 1"
        print(f"  please answer {expected} (found {answer!r})", file=out)


def _print_recommendation(answer: Recommendation, out: TextIO) -> None:
    also = f" (alternatives: {', '.join(answer.alternatives)})" if answer.alternatives else ""
    print(f"task:          {answer.task} segmentation", file=out)
    print(f"architecture:  {answer.architecture}{also}", file=out)
    print(f"in unetseg:    {'yes' if answer.covered else 'no'}", file=out)
    print("why:", file=out)
    for reason in answer.reasons:
        print(f"  - {reason}", file=out)
    print(f"next step:     {answer.next_step}", file=out)


def run_pick(args: argparse.Namespace, input_fn: Callable[[str], str] | None = None,
        out: TextIO | None = None) -> int:
    """Ask for what the flags left out, then print the recommendation to ``out`` (default: the
    current ``sys.stdout``, looked up at the call so redirection works); the exit status.

    Questions go through ``input_fn`` when given, else through `input` when stdin is a
    terminal. With neither, a missing flag cannot be asked: the missing flags are named on
    stderr and the status is 2, as it is when the input ends before every answer.
    """
    out = sys.stdout if out is None else out
    values = {f.name: getattr(args, f.name, None) for f in fields(Needs)}
    missing = [name for name, value in values.items() if value is None]
    if missing and input_fn is None:
        if not sys.stdin.isatty():
            print(f"unetseg pick: stdin is not a terminal, so the questions cannot be asked; "
                  f"give {', '.join(_pick_flag(name) for name in missing)}", file=sys.stderr)
            return 2
        input_fn = input
    for name in missing:
        try:
            values[name] = _ask(name, input_fn, out)
        except EOFError:
            print(f"\nunetseg pick: input ended before an answer for {_pick_flag(name)}",
                  file=sys.stderr)
            return 2
    _print_recommendation(recommend(Needs(**values)), out)
    return 0
