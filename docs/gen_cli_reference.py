"""The CLI reference page, generated from the argparse parser, so it cannot drift from --help.

Used two ways:

- as a mkdocs hook (``hooks:`` in mkdocs.yml): every ``mkdocs build`` or ``mkdocs serve`` adds
  the page ``cli.md`` to the site from ``unetseg.cli.build_parser()``; no file is written into
  docs/, so there is nothing generated to commit or to forget to regenerate;
- as a script: ``python docs/gen_cli_reference.py [FILE]`` prints the page (or writes FILE),
  to read it without building the site.

The page holds, for every subcommand, its one-line help, its usage line and a table of its
arguments with their help text as ``unetseg COMMAND --help`` prints it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

PAGE = "cli.md"
WIDTH = "100"              # usage lines wrap at this many columns, the same on every machine
SRC = Path(__file__).resolve().parents[1] / "src"


def _parser() -> argparse.ArgumentParser:
    if str(SRC) not in sys.path:            # the working tree's package, installed or not
        sys.path.insert(0, str(SRC))
    from unetseg.cli import build_parser
    return build_parser()


def _subcommands(parser: argparse.ArgumentParser):
    """(name, one-line help, subparser) for each subcommand, in the parser's order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]


def _escape(text: str) -> str:
    """Markdown-safe table cell text; `code spans` are kept as they are."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):       # outside backticks only
        part = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts[i] = re.sub(r"([\\*_|\[\]])", r"\\\1", part)
    return "`".join(parts).replace("|", "\\|")


def _invocation(action: argparse.Action) -> str:
    """How the argument is written, as in --help: ``--size SIZE``, ``--tta``, ``checkpoint``."""
    if action.choices is not None and action.metavar is None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        metavar = action.metavar or (action.dest.upper() if action.option_strings
                                     else action.dest)
    if not action.option_strings:
        return metavar
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    return ", ".join(f"{flag} {metavar}" for flag in action.option_strings)


def _help(action: argparse.Action) -> str:
    text = " ".join((action.help or "").split())
    if "%" in text:                          # argparse's own expansion: %(default)s, ...
        values = {**vars(action), "prog": "unetseg"}
        values = {k: (", ".join(map(str, v)) if k == "choices" and v else v)
                  for k, v in values.items()}
        text = text % values
    return text


def _arguments_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]
    if not rows:
        return []
    lines = ["| argument | what it does |", "| --- | --- |"]
    for action in rows:
        flag = _invocation(action).replace("|", "\\|")
        lines.append(f"| `{flag}` | {_escape(_help(action))} |")
    return lines


def render() -> str:
    """The whole page as Markdown."""
    os.environ["COLUMNS"] = WIDTH            # argparse wraps usage lines to the terminal
    parser = _parser()
    out = [
        "# Command-line reference",
        "",
        "Generated from the `unetseg` argument parser (`unetseg.cli.build_parser()`) each time",
        "the site is built (`docs/gen_cli_reference.py`), so it says what `unetseg COMMAND "
        "--help` says.",
        "Every flag's default is at the end of its help text.",
        "",
        "```text",
        parser.format_usage().rstrip(),
        "```",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    commands = _subcommands(parser)
    out += [f"| [`{name}`](#unetseg-{name}) | {_escape(text)} |" for name, text, _ in commands]
    for name, text, sub in commands:
        out += ["", f"## unetseg {name}", "", _escape(text[:1].upper() + text[1:]) + ".", "",
                "```text", sub.format_usage().rstrip(), "```", ""]
        out += _arguments_table(sub)
    return "\n".join(out) + "\n"


# --- the mkdocs hook -----------------------------------------------------------------------------

def on_files(files, config):
    """Add the generated page to the site's files (mkdocs >= 1.6: File.generated)."""
    from mkdocs.structure.files import File
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    page = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(page)
    else:
        sys.stdout.write(page)
