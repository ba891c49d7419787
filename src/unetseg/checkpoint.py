"""Checkpoints: one safetensors file of tensors plus JSON metadata; loading never unpickles.

A checkpoint holds the model weights (``model.*``) and a JSON document under the safetensors
header key ``"unetseg"``: schema version, model config, class names and colours, normalisation,
and, for a training checkpoint, the training state. Training tensors that are not weights (the
optimiser's moments, RNG states) are stored beside the weights under ``optimizer.*`` and
``rng.*``; everything else (step counts, learning rates, the scheduler's numbers) is JSON.

Weights are saved from the plain module: DistributedDataParallel and ``torch.compile`` wrappers
are taken off first, so the keys never carry ``module.`` or ``_orig_mod.`` prefixes.

Files are streamed to a temporary file in the same folder, fsynced and renamed, so an
interrupted write leaves the previous checkpoint whole; loading reads the header, then one
tensor at a time, so neither holds a second copy of the whole file in memory.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .architectures import build_model
from .config import ModelConfig
from .files import atomic_write
from .model import UNetConfig
from .runtime import Accelerated

__all__ = ["SCHEMA_VERSION", "Checkpoint", "unwrap", "save_checkpoint", "load_checkpoint",
           "add_metadata", "read_metadata", "restore_optimizer", "load_model"]

SCHEMA_VERSION = 1
METADATA_KEY = "unetseg"
# safetensors reports an I/O failure only in its message, as Rust formats it.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel, `unetseg.runtime.Accelerated` and/or
    ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):        # torch.compile's OptimizedModule
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel,
                                Accelerated)):
            model = model.module
        else:
            return model


@dataclass
class Checkpoint:
    """What a checkpoint file holds: metadata (JSON) and tensors by name."""

    metadata: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.``, with the prefix removed."""
        start = len(prefix) + 1
        return {k[start:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def _optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state_dict into tensors and a JSON-able remainder."""
    tensors, scalars = {}, {}
    for param_id, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(checkpoint: Checkpoint, json_part: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in checkpoint.section("optimizer").items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, slots in json_part["scalars"].items():
        state.setdefault(int(param_id), {}).update(slots)
    return {"state": state, "param_groups": json_part["param_groups"]}


def _save_file(tensors: dict[str, torch.Tensor], path: Path, header: dict[str, str]) -> None:
    """Stream ``tensors`` to ``path`` with safetensors; its I/O failures (a full disk, a quota)
    come out as the OSError they are, so `atomic_write` reports them as it reports its own."""
    try:
        save_file(tensors, path, metadata=header)
    except SafetensorError as error:
        found = _OS_ERROR.search(str(error))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from error


def save_checkpoint(
    path: str | Path, model: nn.Module, metadata: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None, extra_tensors: dict | None = None,
) -> None:
    """Save weights and metadata (and optionally the optimiser) to one safetensors file.

    ``metadata`` must be JSON-serialisable; ``model_config`` is filled in from the model.
    ``extra_tensors`` (for example RNG states) are stored under their own names.
    """
    plain = unwrap(model)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in plain.state_dict().items()}
    document = {"schema_version": SCHEMA_VERSION, **metadata}
    config = getattr(plain, "config", None)          # a UNet's or an SmpModel's
    if isinstance(config, (UNetConfig, ModelConfig)):
        document["model_config"] = asdict(config)
    if optimizer is not None:
        optimizer_tensors, optimizer_json = _optimizer_to_tensors(optimizer.state_dict())
        tensors.update({k: v.contiguous().cpu() for k, v in optimizer_tensors.items()})
        document["optimizer"] = optimizer_json
    for name, value in (extra_tensors or {}).items():
        tensors[name] = value.contiguous().cpu()
    header = {METADATA_KEY: json.dumps(document)}
    atomic_write(path, lambda temporary: _save_file(tensors, temporary, header))


def add_metadata(path: str | Path, out: str | Path, records: dict[str, Any]) -> None:
    """Write ``path``'s checkpoint to ``out`` (which may be ``path``: atomically replaced)
    with ``records`` added to its metadata; every tensor is written back as it was read."""
    checkpoint = load_checkpoint(path)
    header = {METADATA_KEY: json.dumps({**checkpoint.metadata, **records})}
    atomic_write(out, lambda temporary: _save_file(checkpoint.tensors, temporary, header))


def _unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable safetensors checkpoint ({error}); expected a file "
        f"written by unetseg (checkpoints are never unpickled)"
    )


def _document(path: Path, header: dict[str, str] | None) -> dict[str, Any]:
    """The unetseg JSON document of a safetensors header's metadata, schema checked."""
    raw = (header or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path} is a safetensors file without unetseg metadata")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} has unetseg metadata that is not JSON ({error})") from error
    version = document.get("schema_version") if isinstance(document, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has checkpoint schema version {version!r}; this unetseg reads "
            f"version {SCHEMA_VERSION}"
        )
    return document


def _open(path: Path):
    """``safe_open`` of a checkpoint file, with errors that name it and what was expected."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a safetensors checkpoint file")
    try:
        return safe_open(path, framework="pt")
    except FileNotFoundError as error:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from error
    except SafetensorError as error:    # a pickle, a truncated or empty file, another format
        raise _unreadable(path, error) from error


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A checkpoint's metadata (class names, normalisation, run configuration, ...) from its
    header alone: no tensor is read, so damaged tensor data goes unnoticed here. A missing,
    foreign or unreadable file raises as in `load_checkpoint`."""
    path = Path(path)
    with _open(path) as file:
        return _document(path, file.metadata())


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file without running any code from it.

    The header is read first and checked; the tensors are then read one at a time from the
    memory-mapped file, as CPU tensors that own their memory.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the path is a folder, or the file is not a unetseg safetensors checkpoint
            (a pickle, truncated, empty, another format, or a newer schema), naming the file
            and what was expected.
    """
    path = Path(path)
    with _open(path) as file:
        document = _document(path, file.metadata())
        try:
            tensors = {name: file.get_tensor(name) for name in file.keys()}
        except SafetensorError as error:
            raise _unreadable(path, error) from error
    return Checkpoint(document, tensors)


def restore_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    """Load the optimiser state saved by `save_checkpoint` into ``optimizer``.

    Each moment buffer gets its parameter's memory layout back: the file holds it contiguous,
    and a fused optimiser walks parameter, gradient and buffers as flat arrays, so a
    channels_last weight with a contiguous buffer would pair the wrong elements.
    """
    optimizer.load_state_dict(_optimizer_from_tensors(checkpoint, checkpoint.metadata["optimizer"]))
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            slots = optimizer.state.get(parameter, {})
            for name, value in slots.items():
                if (isinstance(value, torch.Tensor) and value.shape == parameter.shape
                        and value.stride() != parameter.stride()):
                    slots[name] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (a `UNet`, or an smp model: `unetseg.architectures`)
    with its weights, in eval mode; returns (model, metadata). Nothing is downloaded: an smp
    encoder is built without pretrained weights, then given the file's."""
    checkpoint = load_checkpoint(path)
    config = checkpoint.metadata.get("model_config")
    if config is None:
        raise ValueError(f"{path} holds no model_config: expected a unetseg model checkpoint")
    try:
        model = build_model(ModelConfig(**config))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: cannot rebuild its model: {error}") from error
    names = checkpoint.metadata.get("class_names")
    if names is not None:
        outputs = 1 if checkpoint.metadata.get("binary") else len(names)
        if outputs != model.config.num_classes:
            raise ValueError(
                f"{path}: metadata names {len(names)} classes ({', '.join(names)}), which "
                f"needs {outputs} output channel(s), but the model has "
                f"{model.config.num_classes}")
    weights = checkpoint.section("model")
    expected = model.state_dict()
    for name, tensor in expected.items():
        found = weights.get(name)
        if found is None or found.shape != tensor.shape:
            raise ValueError(
                f"{path}: weight {name} should have shape {tuple(tensor.shape)} for "
                f"{config}, found {None if found is None else tuple(found.shape)}"
            )
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), checkpoint.metadata
