"""ONNX export of a checkpoint, and a runner that predicts with the exported file.

The exported graph is the whole `Segmenter`: it takes float32 (N, C, H, W) images in [0, 1]
(normalisation is inside), with N, H and W free, and returns the logits. BatchNorm is folded
into the convolutions first. Class names and colours travel in the model's metadata, so
``unetseg predict model.onnx ...`` writes the same coloured masks as with the checkpoint.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install "unetseg[onnx]"``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_bytes
from .infer import load_segmenter
from .outputs import claim_file

__all__ = ["export_onnx", "OnnxSegmenter", "load_predictor", "METADATA_KEY"]

METADATA_KEY = "unetseg"
OPSET = 18


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise ValueError(f"ONNX support needs the {module} package: pip install "
                         f"'unetseg[onnx]'") from error


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch's ONNX exporter says, on every export, that torchvision is not installed (its
    detection operators are skipped: a U-Net uses none) and that a pytree class is
    deprecated: noise a user can do nothing about. Both are hushed for the export only; an
    error still surfaces."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def export_onnx(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``checkpoint`` as an ONNX model with dynamic batch, height and width.

    Its output policy (`unetseg.outputs`): an existing ``out`` is refused unless ``overwrite``.
    """
    onnx = _require("onnx")
    _require("onnxscript")
    out = claim_file(out, overwrite, "--out")
    segmenter = load_segmenter(checkpoint).to(memory_format=torch.contiguous_format)
    example = torch.rand(1, segmenter.in_channels, 64, 64)
    batch, height, width = (torch.export.Dim(name) for name in ("batch", "height", "width"))
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "model.onnx"
        with _quiet_exporter():
            torch.onnx.export(segmenter, (example,), str(staged), dynamo=True,
                              opset_version=OPSET, input_names=["images"],
                              output_names=["logits"],
                              dynamic_shapes={"images": {0: batch, 2: height, 3: width}},
                              verbose=False)
        model = onnx.load(str(staged))
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"class_names": segmenter.class_names,
                              "colours": [list(c) for c in segmenter.colours],
                              "in_channels": segmenter.in_channels,
                              "training_crop": segmenter.training_crop,
                              "temperature": segmenter.temperature,
                              "checkpoint": Path(checkpoint).name})
    atomic_write_bytes(out, model.SerializeToString())
    return out


class OnnxSegmenter:
    """Runs an exported model under onnxruntime with the `Segmenter` interface that
    `unetseg.infer.predict` uses: call it on float32 (N, C, H, W) images in [0, 1]."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:              # onnxruntime raises its own exception types
            raise ValueError(f"{path}: cannot be loaded as an ONNX model ({error})") from error
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ValueError(f"{path}: an ONNX model without unetseg metadata; expected a file "
                             f"written by `unetseg export`")
        meta = json.loads(raw)
        self.class_names = list(meta["class_names"])
        self.colours = [tuple(c) for c in meta["colours"]]
        self.in_channels = int(meta["in_channels"])
        self.training_crop = meta.get("training_crop")      # absent from older exports
        self.temperature = meta.get("temperature", 1.0)     # the checkpoint's calibration

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        (logits,) = self.session.run(["logits"], {"images": array})
        return torch.from_numpy(logits)


def load_predictor(path: str | Path, device: str | None = None):
    """A `Segmenter` for a ``.safetensors`` checkpoint or an `OnnxSegmenter` for ``.onnx``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; expected a .safetensors checkpoint or an "
                         f".onnx model")
    if path.suffix.lower() == ".onnx":
        return OnnxSegmenter(path)
    from .runtime import pick_device

    return load_segmenter(path, pick_device(device))
