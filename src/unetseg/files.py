"""Writing files so that an interruption never leaves a half-written one.

Every file the toolkit writes (checkpoints, metrics, plots, reports, predictions) goes to a
temporary file in the destination folder, is flushed and fsynced, then renamed over the target:
a crash, a kill or a full disk leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "json_ready"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; written files get the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as error:                 # a full disk, a quota, a vanished folder
        Path(temporary).unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}; any "
                                   f"earlier version of it is intact") from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(value):
    """``value`` with every NaN (an undefined score, such as the IoU of an absent class) as
    None: JSON has no NaN, and strict readers (browsers, jq) refuse Python's ``NaN`` token."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
