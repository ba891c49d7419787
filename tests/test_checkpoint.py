"""Checkpoints: weights, metadata and optimiser state come back exactly; anything that is not a
unetseg safetensors checkpoint (a pickle, a truncated or empty file, a folder, another format, a
newer schema) is refused naming the file, and nothing in it ever runs; a full disk while saving
reports the file and keeps the earlier checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

import unetseg.checkpoint as checkpoint_module
from unetseg.checkpoint import (
    SCHEMA_VERSION,
    load_checkpoint,
    load_model,
    read_metadata,
    restore_optimizer,
    save_checkpoint,
)
from unetseg.model import UNet
from unetseg.runtime import Accelerated, Runtime

METADATA = {"class_names": ["background", "shape"], "colours": [[0, 0, 0], [255, 0, 0]],
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}, "training": {"epoch": 3}}


def trained(seed: int = 0) -> tuple[UNet, torch.optim.Optimizer]:
    """A small U-Net after two Adam steps, so BatchNorm statistics and moments are not zero."""
    torch.manual_seed(seed)
    model = UNet(3, 2, base=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss = model(torch.randn(2, 3, 16, 16)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def tensor_reads_failing_with(error: Exception):
    """A stand-in for ``safe_open`` that opens the real file but whose every tensor read raises
    ``error``: the header (metadata, keys) still reads."""
    real_open = checkpoint_module.safe_open

    class FailingReads:
        def __init__(self, name, framework):
            self.file = real_open(name, framework=framework)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

        def metadata(self):
            return self.file.metadata()

        def keys(self):
            return self.file.keys()

        def get_tensor(self, name):
            raise error

    return FailingReads


@pytest.fixture
def saved(tmp_path):
    model, optimizer = trained()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model, METADATA, optimizer, {"rng.torch": torch.get_rng_state()})
    return path, model, optimizer


# --- round trip ----------------------------------------------------------------------------------

def test_weights_metadata_and_extra_tensors_come_back_exactly(saved):
    path, model, _ = saved
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["schema_version"] == SCHEMA_VERSION
    assert {k: checkpoint.metadata[k] for k in METADATA} == METADATA
    assert checkpoint.metadata["model_config"] == vars(model.config)
    weights = checkpoint.section("model")
    assert weights.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor), name
    assert torch.equal(checkpoint.tensors["rng.torch"], torch.get_rng_state())
    rebuilt, metadata = load_model(path)
    assert not rebuilt.training and metadata == checkpoint.metadata
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name


def test_the_metadata_alone_is_read_from_the_header(saved, tmp_path, monkeypatch):
    """read_metadata gives what load_checkpoint does without reading a tensor: with every
    tensor read made to fail, it still answers, and load_checkpoint does not."""
    path, _, _ = saved
    expected = load_checkpoint(path).metadata
    monkeypatch.setattr(checkpoint_module, "safe_open",
                        tensor_reads_failing_with(AssertionError("read a tensor")))
    assert read_metadata(path) == expected
    with pytest.raises(AssertionError, match="read a tensor"):
        load_checkpoint(path)
    pickle = tmp_path / "pickle.safetensors"
    torch.save({"weights": torch.zeros(2)}, pickle)
    with pytest.raises(ValueError, match=r"pickle\.safetensors is not a readable safetensors"):
        read_metadata(pickle)


def test_the_optimizer_resumes_with_the_same_state_and_the_same_next_step(saved):
    path, model, optimizer = saved
    fresh_model, fresh_optimizer = trained(seed=1)
    checkpoint = load_checkpoint(path)
    fresh_model.load_state_dict(checkpoint.section("model"))
    restore_optimizer(checkpoint, fresh_optimizer)
    before, after = optimizer.state_dict(), fresh_optimizer.state_dict()
    # The hyperparameters travel as JSON: betas come back as a list, which Adam accepts.
    assert after["param_groups"] == json.loads(json.dumps(before["param_groups"]))
    for param_id, slots in before["state"].items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(after["state"][param_id][name]),
                               torch.as_tensor(value)), (param_id, name)
    x = torch.randn(2, 3, 16, 16)
    for m, opt in ((model, optimizer), (fresh_model, fresh_optimizer)):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)


def test_a_fused_optimizer_on_channels_last_weights_resumes_with_the_same_next_step(tmp_path):
    """The file holds the moments contiguous; the fused AdamW walks weight, gradient and
    moments as flat arrays, so the moments must come back in the weight's channels_last order
    (otherwise the next step pairs the wrong elements)."""
    def build(seed: int):
        torch.manual_seed(seed)
        model = UNet(3, 2, base=4).to(memory_format=torch.channels_last)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)

    def step(model, optimizer, seed: int) -> None:
        torch.manual_seed(seed)
        optimizer.zero_grad()
        model(torch.randn(2, 3, 16, 16)).square().mean().backward()
        optimizer.step()

    model, optimizer = build(0)
    for seed in range(2):
        step(model, optimizer, seed)
    save_checkpoint(tmp_path / "last.safetensors", model, METADATA, optimizer)
    fresh_model, fresh_optimizer = build(1)
    checkpoint = load_checkpoint(tmp_path / "last.safetensors")
    fresh_model.load_state_dict(checkpoint.section("model"))
    restore_optimizer(checkpoint, fresh_optimizer)
    step(model, optimizer, 2)
    step(fresh_model, fresh_optimizer, 2)
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("wrap", [torch.nn.DataParallel,
                                  lambda model: Accelerated(model, Runtime(channels_last=True))])
def test_wrapped_models_are_saved_without_prefixes(tmp_path, wrap):
    model = UNet(3, 2, base=4)
    save_checkpoint(tmp_path / "m.safetensors", wrap(model), METADATA)
    assert (load_checkpoint(tmp_path / "m.safetensors").section("model").keys()
            == model.state_dict().keys())


# --- refusals ------------------------------------------------------------------------------------

class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_renamed_to_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    fake = tmp_path / "best.safetensors"
    torch.save({"model": RunsACommand(marker)}, fake)
    with pytest.raises(ValueError, match=r"best\.safetensors is not a readable safetensors "
                                         r"checkpoint .* never unpickled"):
        load_checkpoint(fake)
    with pytest.raises(ValueError, match=r"best\.safetensors is not a readable safetensors"):
        load_model(fake)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [1000, 0, 5], ids=["truncated", "empty", "shorter-than-header"])
def test_a_truncated_or_empty_file_is_refused_naming_it(saved, keep):
    path, _, _ = saved
    broken = path.with_name("broken.safetensors")
    broken.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ValueError, match=r"broken\.safetensors is not a readable safetensors "
                                         r"checkpoint .* never unpickled"):
        load_checkpoint(broken)


def test_a_tensor_that_cannot_be_read_is_refused_naming_the_file(saved, monkeypatch):
    """safetensors checks the header against the file size when opening; should a read still
    fail, the error names the file like any other unreadable checkpoint."""
    path, _, _ = saved
    monkeypatch.setattr(checkpoint_module, "safe_open", tensor_reads_failing_with(
        SafetensorError("Error while deserializing: out of range")))
    with pytest.raises(ValueError, match=r"last\.safetensors is not a readable safetensors "
                                         r"checkpoint \(Error while deserializing"):
        load_checkpoint(path)


def test_a_missing_file_or_a_folder_is_reported_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: .*gone\.safetensors"):
        load_checkpoint(tmp_path / "gone.safetensors")
    folder = tmp_path / "run.safetensors"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"run\.safetensors is a folder; expected a safetensors "
                                         r"checkpoint file"):
        load_checkpoint(folder)


def test_other_safetensors_files_and_newer_schemas_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match=r"plain\.safetensors is a safetensors file without "
                                         r"unetseg metadata"):
        load_checkpoint(plain)
    future = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(2)}, future, metadata={"unetseg": json.dumps(
        {"schema_version": SCHEMA_VERSION + 1})})
    with pytest.raises(ValueError, match=rf"future\.safetensors has checkpoint schema version "
                                         rf"{SCHEMA_VERSION + 1}; this unetseg reads version "
                                         rf"{SCHEMA_VERSION}"):
        load_checkpoint(future)


# --- a full disk while streaming the file --------------------------------------------------------

def test_a_write_the_file_system_refuses_keeps_the_earlier_checkpoint(tmp_path):
    """A real I/O failure inside safetensors' writer, not a stand-in: a file-size limit makes the
    kernel refuse the write (EFBIG), as a full disk would (ENOSPC). Run in a child process so the
    limit cannot touch pytest's own files."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from unetseg.checkpoint import save_checkpoint
        from unetseg.model import UNet
        path = {str(tmp_path / "last.safetensors")!r}
        save_checkpoint(path, UNet(3, 2, base=4), {{}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the default action kills the process
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            save_checkpoint(path, UNet(3, 2, base=8), {{}})
        except OSError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert "last.safetensors: File too large; any earlier version of it is intact" in done.stdout
    model, _ = load_model(tmp_path / "last.safetensors")
    assert model.config.base == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
