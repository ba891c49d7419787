"""Writing files so that an interruption never leaves a half-written one.

Every file the toolkit writes (checkpoints, metrics, plots, reports, predictions) goes to a
temporary file in the destination folder, is fsynced, then renamed over the target: a crash, a
kill or a full disk leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "cache_dir",
           "check_output_folder", "refuse_existing_outputs", "json_ready"]


def _new_temporary(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` and return its name.

    Mode 0o666 lets the kernel apply the process umask, so the file gets the permissions any
    new file would, without reading the umask (which only ``os.umask`` can, by changing it).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temporary


def _fsync(path: Path) -> None:
    """Push ``path``'s data to the disk (any descriptor of a file syncs all of its pages)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` through ``write``, which fills a temporary file it is given the name of.

    The temporary file is in ``path``'s folder (created if missing), so the final rename stays on
    one file system. After ``write`` returns, the file is fsynced and renamed over ``path``.
    On any failure, interruptions included, the temporary file is removed and ``path`` keeps its
    earlier contents, if it had any; an ``OSError`` (a full disk, a quota, a vanished folder) is
    raised again as ``cannot write PATH: REASON; any earlier version of it is intact``, with the
    original errno.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        temporary = _new_temporary(path)
        write(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}; any "
                                   f"earlier version of it is intact") from error
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as `atomic_write` does."""
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path``, UTF-8 encoded, as `atomic_write` does."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a Path, after checking it can be an output folder: missing (to be created) or
    a folder. ``flag`` names the option it came from, for the message.

    Raises:
        ValueError: ``path`` exists and is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder")
    return path


def json_ready(value: Any) -> Any:
    """``value`` with every NaN (an undefined score, such as the IoU of an absent class) as
    None: JSON has no NaN, and strict readers (browsers, jq) refuse Python's ``NaN`` token."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def refuse_existing_outputs(paths: Iterable[Path]) -> None:
    """Raise ValueError naming the ``paths`` that exist (up to three, and how many in all).

    Every job calls it on all its outputs before doing any work, so that a refusal costs
    nothing and an accepted run never stops half-way over a file it may not replace.
    """
    existing = [path for path in paths if path.exists()]
    if existing:
        listed = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise ValueError(f"{len(existing)} output file(s) exist ({listed}{more}); pass "
                         f"--overwrite to replace them, or choose another --out")


def cache_dir() -> Path:
    """``$UNETSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/unetseg``, else ``~/.cache/unetseg``."""
    if os.environ.get("UNETSEG_CACHE_DIR"):
        return Path(os.environ["UNETSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetseg"
