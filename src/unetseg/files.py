"""Writing files so that an interruption never leaves a half-written one.

Every file the toolkit writes (checkpoints, metrics, plots, reports, predictions) goes to a
temporary file in the destination folder, is fsynced, then renamed over the target: a crash, a
kill or a full disk leaves either the old file or the new one, never a mix. Tables, records
and configurations are written by `write_csv`, `write_json`, `write_jsonl` and `write_yaml`,
so every CSV, JSON and YAML file has one dialect: CSV quoted by the `csv` module, JSON
without NaN, YAML in the order it was given.

Whether a file may be written at all (an existing report, a folder of data) is
`unetseg.outputs`' business.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "leftover_temporaries",
           "write_csv", "write_json", "write_jsonl", "write_yaml", "yaml_text", "json_ready",
           "cache_dir"]

# A write's temporary file: ".NAME.TOKEN.tmp" beside its target, TOKEN random hex.
_TOKEN_BYTES = 8
_TEMPORARY = re.compile(rf"\..+\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


def _new_temporary(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` and return its name.

    Mode 0o666 lets the kernel apply the process umask, so the file gets the permissions any
    new file would, without reading the umask (which only ``os.umask`` can, by changing it).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temporary


def leftover_temporaries(folder: Path) -> list[Path]:
    """The temporary files in ``folder`` of writes that never finished (a process killed
    inside one leaves it behind). Only whoever alone writes there may remove them."""
    return [path for path in folder.glob(".*.tmp") if _TEMPORARY.fullmatch(path.name)]


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
        mode = os.stat(temporary).st_mode & 0o777        # a new file's, by the umask
        write(temporary)
        # A writer that makes its own file (safetensors does, mode 0600) gets the same
        # permissions as every other output.
        os.chmod(temporary, mode)
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


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table as CSV (``\\n`` line ends), quoted by the `csv` module: a class name with a
    comma or a quote stays one field. Values are written as ``str`` gives them."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> None:
    """``value`` as JSON, undefined numbers (NaN) as null (`json_ready`); ``indent`` None
    writes one compact line (a cache no one reads by eye)."""
    separators = (",", ":") if indent is None else None
    atomic_write_text(path, json.dumps(json_ready(value), indent=indent, separators=separators))


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """One JSON line per row, NaN as null, rewritten whole (a log that grows by rows)."""
    atomic_write_text(path, "".join(json.dumps(json_ready(row)) + "\n" for row in rows))


def yaml_text(value: Any) -> str:
    """``value`` (plain dicts, lists, numbers, strings) as YAML, keys in the order given, so a
    configuration reads in the order its sections are declared."""
    import yaml

    return yaml.safe_dump(value, sort_keys=False)


def write_yaml(path: str | Path, value: Any) -> None:
    """``value`` as YAML (`yaml_text`)."""
    atomic_write_text(path, yaml_text(value))


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


def cache_dir() -> Path:
    """``$UNETSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/unetseg``, else ``~/.cache/unetseg``."""
    if os.environ.get("UNETSEG_CACHE_DIR"):
        return Path(os.environ["UNETSEG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetseg"
