"""Atomic writes: the target holds the old contents or the new, never a mix and never a leftover
temporary file; new files get the permissions the umask gives; the umask itself is left alone.
And the one CSV, JSON and YAML dialect every file the package writes goes through."""

from __future__ import annotations

import csv
import errno
import importlib
import json
import math
import os
from pathlib import Path

import pytest

import unetseg.files as files_module
from unetseg.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    write_csv,
    write_json,
    write_jsonl,
    write_yaml,
)


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(previous)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- permissions and process state -------------------------------------------------------------

def test_new_files_get_the_umask_permissions_and_the_umask_is_never_touched(
        tmp_path, monkeypatch, umask_027):
    calls = []
    real_umask = os.umask

    def recording_umask(mask):
        calls.append(mask)
        return real_umask(mask)

    monkeypatch.setattr(os, "umask", recording_umask)
    importlib.reload(files_module)                      # what importing it does
    files_module.atomic_write_text(tmp_path / "a.json", "{}")
    files_module.atomic_write(tmp_path / "b.bin", lambda temporary: temporary.write_bytes(b"1"))
    monkeypatch.undo()
    assert calls == []
    assert os.umask(umask_027) == umask_027            # reading it sets it; same value back
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask_027


# --- failures leave the old file whole -----------------------------------------------------------

def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_module.os, "fsync", no_space)
    with pytest.raises(OSError, match=r"cannot write .*metrics\.json: No space left on device; "
                                      r"any earlier version of it is intact") as caught:
        atomic_write_bytes(target, b"new")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert names(tmp_path) == ["metrics.json"]


def fail_halfway(failure: BaseException):
    def write(temporary: Path) -> None:
        temporary.write_bytes(b"ne")
        raise failure
    return write


def test_a_writer_os_error_names_the_file_and_leaves_the_old_one(tmp_path):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old")
    with pytest.raises(OSError, match=r"cannot write .*model\.safetensors: Disk quota exceeded; "
                                      r"any earlier version of it is intact"):
        atomic_write(target, fail_halfway(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))))
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("failure", [ValueError("bad tensor"), KeyboardInterrupt()])
def test_any_other_writer_failure_passes_through_and_leaves_the_old_file(tmp_path, failure):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old")
    with pytest.raises(type(failure)):
        atomic_write(target, fail_halfway(failure))
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["model.safetensors"]


# --- writers that want a file name ---------------------------------------------------------------

def test_atomic_write_hands_the_writer_an_empty_temporary_file_beside_the_target(tmp_path):
    target = tmp_path / "new" / "folder" / "probs.npy"
    seen = []

    def write(temporary: Path) -> None:
        seen.append((temporary, temporary.exists(), temporary.stat().st_size))
        with open(temporary, "wb") as file:
            file.write(b"payload")

    atomic_write(target, write)
    (temporary, existed, size), = seen
    assert temporary.parent == target.parent and existed and size == 0
    assert temporary.name.startswith(".probs.npy.") and temporary.name.endswith(".tmp")
    assert target.read_bytes() == b"payload"
    assert names(target.parent) == ["probs.npy"]


def test_atomic_write_replaces_an_existing_file(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second, ünïcode")
    assert target.read_text(encoding="utf-8") == "second, ünïcode"
    assert names(tmp_path) == ["summary.json"]


# --- the one CSV, JSON and YAML dialect ---------------------------------------------------------

def test_csv_fields_with_commas_quotes_and_newlines_read_back_whole(tmp_path):
    rows = [["car, parked", 'the "sky"', 0.5], ["two\nlines", "", math.nan]]
    write_csv(tmp_path / "t.csv", ["name", "other", "value"], rows)
    with open(tmp_path / "t.csv", newline="") as table:
        assert list(csv.reader(table)) == [["name", "other", "value"],
                                           ["car, parked", 'the "sky"', "0.5"],
                                           ["two\nlines", "", "nan"]]
    assert names(tmp_path) == ["t.csv"]


def test_json_has_null_for_nan_and_a_compact_form_for_caches(tmp_path):
    write_json(tmp_path / "a.json", {"iou": [0.5, math.nan], "n": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"iou": [0.5, None], "n": 2}
    write_json(tmp_path / "c.json", {"a": [1, 2]}, indent=None)
    assert (tmp_path / "c.json").read_text() == '{"a":[1,2]}'
    write_jsonl(tmp_path / "l.jsonl", [{"x": math.nan}, {"x": 1}])
    assert (tmp_path / "l.jsonl").read_text() == '{"x": null}\n{"x": 1}\n'


def test_yaml_keeps_the_order_it_was_given(tmp_path):
    import yaml

    write_yaml(tmp_path / "c.yaml", {"train": {"lr": 0.003}, "data": {"size": 32}})
    text = (tmp_path / "c.yaml").read_text()
    assert text.index("train") < text.index("data")
    assert yaml.safe_load(text) == {"train": {"lr": 0.003}, "data": {"size": 32}}
