"""The `unetseg` command: argument parsing and printing only; the work lives in the library."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .data.synthetic import CLASS_NAMES
    from .demo import format_table, run_demo

    print(f"Training a U-Net (base {args.base}) on synthetic shapes for {args.steps} steps "
          f"at {args.size}x{args.size}; held-out images come from other seeds.")
    result = run_demo(steps=args.steps, size=args.size, base=args.base, seed=args.seed)
    print()
    print(format_table(result.scores, result.boundary_f1, list(CLASS_NAMES)))
    print(f"({result.seconds:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetseg", description="Semantic segmentation with a U-Net.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train on synthetic shapes and print per-class scores",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--steps", type=int, default=300, help="optimiser steps of 16 images")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels")
    demo.add_argument("--base", type=int, default=16, help="channels of the first U-Net level")
    demo.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
