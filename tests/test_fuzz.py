"""Untrusted input, systematically: random image and mask files (sizes, modes, bit depths,
palettes, truncated files and lying headers) and random dataset files go through
``unetseg check``, ``unetseg train --max-steps 1`` and ``unetseg predict``. Each must end in
success or a one-line error (exit 0, 1 or 2): never a traceback, never a hang.

``make test`` runs a few examples (``UNETSEG_FUZZ_EXAMPLES``, default 4); ``make fuzz`` runs
9,000, about ten minutes on the 2-core machine (3,000 took 204 s there).
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from unetseg.cli import main

EXAMPLES = int(os.environ.get("UNETSEG_FUZZ_EXAMPLES", "4"))
# One example (three commands on a few tiny files) takes about a second; far past this is a
# hang, not slowness.
EXAMPLE_SECONDS = 60

MODES = ("L", "RGB", "RGBA", "P", "I;16", "1", "LA")
FORMATS = ("png", "jpg", "tif", "bmp")
DAMAGE = ("none",) * 12 + ("truncated", "lying header", "garbage", "empty")


def _encode(array: np.ndarray, mode: str, fmt: str) -> bytes:
    """``array`` as an image file of ``fmt``; modes a format cannot hold become RGB or L."""
    image = Image.fromarray(array.astype(np.uint16 if mode == "I;16" else np.uint8))
    if mode in ("P", "1", "LA", "RGBA"):
        image = image.convert(mode)
    if fmt == "jpg" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if fmt == "bmp" and image.mode in ("I;16", "LA"):
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format={"jpg": "JPEG", "tif": "TIFF"}.get(fmt, fmt.upper()))
    return buffer.getvalue()


def _damaged(data: bytes, damage: str, rng: np.random.Generator) -> bytes:
    if damage == "truncated":
        return data[: int(rng.integers(1, max(2, len(data))))]
    if damage == "garbage":
        return bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
    if damage == "empty":
        return b""
    if damage == "lying header" and data.startswith(b"\x89PNG"):
        claim = struct.pack(">II", *rng.integers(1, 70_000, 2).tolist())
        body = b"IHDR" + claim + data[24:29]
        return data[:12] + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF) + data[33:]
    return data


@st.composite
def folders(draw) -> dict:
    """A dataset folder as bytes: images/ and masks/ files by name, and maybe a dataset file."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    files = {}
    for index in range(draw(st.integers(1, 4))):
        height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        for kind in ("images", "masks"):
            mode = draw(st.sampled_from(MODES if kind == "images" else ("L", "P", "RGB", "I;16")))
            fmt = draw(st.sampled_from(FORMATS if kind == "images" else ("png", "png", "tif")))
            top = 65535 if mode == "I;16" else (draw(st.sampled_from([2, 3, 256]))
                                                if kind == "masks" else 256)
            channels = (3,) if mode in ("RGB", "RGBA") else ()
            array = rng.integers(0, top, (height, width, *channels))
            data = _damaged(_encode(array, mode, fmt), draw(st.sampled_from(DAMAGE)), rng)
            files[f"{kind}/{index}.{fmt}"] = data
    spec = draw(st.one_of(
        st.none(),
        st.fixed_dictionaries({"classes": st.lists(st.text("abc", min_size=1, max_size=3),
                                                   min_size=1, max_size=4)},
                              optional={"ignore_index": st.integers(-3, 300),
                                        "remap": st.dictionaries(st.integers(-2, 300),
                                                                 st.integers(-2, 300),
                                                                 max_size=3)}),
        st.just("classes: [a, b\n  remap: {"),                   # not YAML
    ))
    return {"files": files, "spec": spec}


def _write(root: Path, folder: dict) -> Path:
    for name, data in folder["files"].items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    spec = folder["spec"]
    if spec is not None:
        (root / "dataset.yaml").write_text(spec if isinstance(spec, str) else
                                           yaml.safe_dump(spec))
    return root


def _runs_cleanly(argv: list[str], capsys) -> None:
    """``unetseg ARGV`` ends with exit 0, 1 or 2 and at most one error line per input, in
    bounded time: an exception escaping `main` (a traceback) fails the example."""
    start = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, err
    assert seconds < EXAMPLE_SECONDS, (argv, seconds)


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 4,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(folder=folders())
def test_random_files_end_in_success_or_one_line_errors(folder, tmp_path_factory,
                                                         shapes_checkpoint, capsys):
    root = _write(tmp_path_factory.mktemp("fuzz"), folder)
    _runs_cleanly(["check", str(root), "--quiet"], capsys)
    _runs_cleanly(["train", "--data", str(root), "--max-steps", "1", "--size", "16",
                   "--batch-size", "2", "--base", "4", "--precision", "fp32", "--quiet",
                   "--out", str(root.parent / "run")], capsys)
    if (root / "images").is_dir():
        _runs_cleanly(["predict", str(shapes_checkpoint), str(root / "images"), "--out",
                       str(root.parent / "pred"), "--precision", "fp32", "--quiet"], capsys)
