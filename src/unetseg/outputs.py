"""Where a command may write, and when it may replace what is there: the one output policy.

Every verb that writes files checks its outputs here, before it does any work, so that a
refusal costs nothing and an accepted run never stops half-way over a file it may not replace.
Two policies, and each verb says which it uses (in its docstring and its ``--help``):

========================  =========  ===================================================
verb                      policy     what it does with an existing output
========================  =========  ===================================================
train                     refuse     a folder holding files is refused unless --overwrite
                                     (or --resume); see `unetseg.rundir.RunDir.check`
evaluate, inspect         refuse     its report files are refused unless --overwrite
predict                   refuse     its masks, overlays, probabilities: same
export, check --json      refuse     the one file it writes: same
demo                      numbered   never replaced: the next free ``out-2``, ``out-3``...
========================  =========  ===================================================

Whatever the policy, an output folder that is a file, an output file that is a folder, and
(for train and check) an output inside the data's own folders are refused: not even
--overwrite may put a command's files among the images it reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["check_output_folder", "check_output_file", "refuse_existing_outputs",
           "refuse_inside", "refusal", "numbered_folder", "claim_folder", "claim_file"]

SHOWN = 3                      # existing outputs a refusal names; the rest are counted


def check_output_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a Path, after checking it can be an output folder: missing (to be created) or
    a folder. ``flag`` names the option it came from, for the message.

    Raises:
        ValueError: ``path`` exists and is not a folder, or is a link to nothing.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{flag} {path} is a link to {os.readlink(path)}, which does not "
                         f"exist; expected a folder (or a link to one)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder")
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """``path`` as a Path, after checking it can be an output file: not a folder, in a folder
    that exists or can be created."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a file name")
    check_output_folder(path.parent, f"{flag}'s folder")
    return path


def refusal(flag: str, path: Path, what: str, *, also: str = "",
            overwrite_does: str = "replace it") -> ValueError:
    """The one message for an output the policy refuses: it names the path, the flag and the
    fixes, ``also`` (ending in ", ") first, e.g. ``--out runs/a already holds report.html;
    choose another --out, or pass --overwrite to replace it``."""
    return ValueError(f"{flag} {path} {what}; {also}choose another {flag}, or pass --overwrite "
                      f"to {overwrite_does}")


def _listed(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def refuse_existing_outputs(paths: Iterable[Path], flag: str = "--out") -> None:
    """The refuse policy for named outputs: raise ValueError naming those of ``paths`` that
    exist (up to three, and how many in all) after the folder that holds them. Call it only
    without ``--overwrite``."""
    existing = [Path(path) for path in paths if Path(path).exists()]
    if not existing:
        return
    folder = Path(os.path.commonpath([path.parent for path in existing]))
    names = [str(path.relative_to(folder)) for path in existing]
    held = names[0] if len(names) == 1 else f"{len(names)} of its outputs ({_listed(names)})"
    raise refusal(flag, folder, f"already holds {held}",
                  overwrite_does="replace them" if len(names) > 1 else "replace it")


def refuse_inside(path: str | Path, folders: Iterable[Path], flag: str) -> None:
    """Refuse an output ``path`` inside one of the data's ``folders`` (images/, masks/, the
    dataset folder), whatever ``--overwrite`` says: it would land among the data, and later be
    read as data (a ``dataset.json``, an image)."""
    inside = Path(path).resolve()
    for folder in sorted(folders):
        if inside == folder.resolve() or folder.resolve() in inside.parents:
            raise ValueError(f"{flag} {path} is inside the data folder {folder}; choose "
                             f"another {flag}, outside the dataset")


def claim_folder(out: str | Path, names: Iterable[str], overwrite: bool,
                 flag: str = "--out") -> Path:
    """The refuse policy for a folder of named outputs (evaluate, inspect): ``out`` as a Path
    once it is a folder or missing and, unless ``overwrite``, holds none of ``names``."""
    out = check_output_folder(out, flag)
    if not overwrite:
        refuse_existing_outputs((out / name for name in names), flag)
    return out


def claim_file(path: str | Path, overwrite: bool, flag: str,
               data_folders: Iterable[Path] = ()) -> Path:
    """The refuse policy for a command's one output file (export, check --json): ``path`` as
    a Path once it is not inside ``data_folders``, not a folder and, unless ``overwrite``, not
    an existing file."""
    refuse_inside(path, data_folders, flag)
    path = check_output_file(path, flag)
    if path.exists() and not overwrite:
        raise refusal(flag, path, "exists")
    return path


def numbered_folder(out: str | Path) -> Path:
    """The numbered policy (demo): ``out`` if it does not exist yet, else the first free
    ``out-2``, ``out-3``, ...; what exists is never touched."""
    out = Path(out)
    candidate, number = out, 2
    while candidate.exists():
        candidate = out.with_name(f"{out.name}-{number}")
        number += 1
    return candidate
