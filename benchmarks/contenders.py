"""The contenders of `train_step.py` and `time_to_accuracy.py`, and the child processes they run in.

A contender is a network and the way its users train it:

- ``ours``: `unetseg.UNet` trained by `unetseg.train.train_step`, as ``unetseg train``
  runs it (tuned malloc, channels_last, measured precision, CE + Dice, gradient clipping, fused
  AdamW, the default schedule). Its switches (``malloc``, ``channels_last``, ``precision``,
  ``fused``) turn single levers off, to show what each one gives;
- ``seed``: the seed project's plain U-Net (`seed_unet.SeedUNet`), same architecture;
- ``monai``: MONAI's ``BasicUNet(spatial_dims=2)`` with its default features;
- ``monai_unet``: MONAI's ``UNet``, as its 2-D segmentation tutorial builds it (channels 16 to
  256, strides of 2, two residual units);
- ``smp``: segmentation_models_pytorch's ``Unet("resnet34", encoder_weights=None)``, which
  only the experiments environment (``.venv-exp``) has.

Each of the last four runs one of two ways (``path``), so that two claims are measured apart,
"the toolkit makes any network faster" and "our network is the better choice at equal cost":

- ``own``: as its own docs train it. The seed: its own loop, fp32. MONAI and smp: automatic
  mixed precision as MONAI's tutorials use it (on a CPU, bf16 autocast, where the CPU computes
  bf16 natively: emulated, it is many times slower than fp32, and AMP is left off), NCHW,
  the default allocator, AdamW with torch's defaults (lr 1e-3), a step that reads the loss
  back with ``.item()``;
- ``fast``: through unetseg's fast path as a Python user takes it, `unetseg.optimize_for_training`
  (channels_last, the precision timed faster) and a fused AdamW, nothing read back.

The allocator setting is process-wide, and the seed must run with glibc's default, so every
contender runs in a child process of its own (`Worker`), which the benchmark script starts with
``--worker SPEC`` and drives with one JSON request per line (`serve`). The workers stay alive
between requests, so the parent can alternate contenders (A B C A B C ...) without paying for
a start-up or a warm-up in every round.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from unetseg.allocator import tune_malloc
from unetseg.config import RunConfig, TrainConfig, UNetConfig
from unetseg.data.build import build_datasets
from unetseg.evaluation import evaluate, validation_loader
from unetseg.fastpath import optimize_for_training
from unetseg.losses import ce_dice_loss
from unetseg.model import UNet
from unetseg.optim import parameter_groups
from unetseg.precision import cpu_has_bf16
from unetseg.train import TrainingParts, train_step, training_parts, with_data_shapes

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_PYTHON = ROOT / ".venv-exp" / "bin" / "python"
KINDS = ("ours", "seed", "monai", "monai_unet", "smp")
PATHS = ("own", "fast")
# What a tutorial uses: torch's AdamW defaults (lr 1e-3, weight decay 1e-2).
PLAIN_LR = 1e-3
# Whether the peers' own practice, AMP, applies on this CPU (read once: a step must not read
# /proc/cpuinfo).
NATIVE_BF16 = cpu_has_bf16()


@dataclass(frozen=True)
class Contender:
    """One network and its training set-up; see the module docstring."""

    name: str
    kind: str
    base: int = 32                  # ours and seed: channels of the first level
    malloc: bool = True             # ours: glibc told to keep freed memory (the CLI's setting)
    channels_last: bool = True      # ours
    precision: str = "auto"         # ours: fp32, bf16, or auto (measured, cached)
    fused: bool = True              # ours: fused AdamW
    path: str = "own"               # the others: as their docs train them, or unetseg's fast path

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, found {self.kind!r}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, found {self.path!r}")

    @property
    def practice(self) -> str:
        """How it runs, for a table's row: precision and layout."""
        if self.kind == "ours":
            return "unetseg train's path"
        if self.path == "fast":
            return "optimize_for_training"
        if self.kind == "seed":
            return "fp32, NCHW (its own loop)"
        return "bf16 AMP, NCHW" if self.amp else "fp32, NCHW (no native bf16: AMP off)"

    @property
    def amp(self) -> bool:
        """Whether its own practice runs under bf16 autocast: MONAI's and smp's, on a CPU
        that computes bf16 natively."""
        return self.kind not in ("ours", "seed") and NATIVE_BF16

    @property
    def python(self) -> str:
        """The interpreter that runs it: smp is only installed in the experiments venv."""
        return str(EXPERIMENTS_PYTHON) if self.kind == "smp" else sys.executable

    def unavailable(self) -> str | None:
        """Why it cannot run here, or None."""
        if self.kind != "smp":
            return None
        if not EXPERIMENTS_PYTHON.exists():
            return f"{EXPERIMENTS_PYTHON} does not exist (smp runs only in the experiments venv)"
        probe = subprocess.run([str(EXPERIMENTS_PYTHON), "-c",
                                "import segmentation_models_pytorch, unetseg"],
                               capture_output=True, text=True)
        if probe.returncode:
            return f"{EXPERIMENTS_PYTHON} cannot import smp and unetseg: " \
                   f"{probe.stderr.strip().splitlines()[-1]}"
        return None


PEERS = {"seed": "seed (plain)", "monai": "MONAI BasicUNet", "monai_unet": "MONAI UNet",
         "smp": "smp Unet r34"}


def standard(bases: tuple[int, ...] = (32,)) -> list[Contender]:
    """Ours at each base, then each peer its own way (a) and through unetseg's fast path
    (b)."""
    ours = [Contender(f"ours b{base}", "ours", base) for base in bases]
    return ours + [Contender(f"{name} ({label})", kind, path=path)
                   for kind, name in PEERS.items()
                   for path, label in (("own", "a"), ("fast", "b"))]


# --- in the worker: networks and training steps ----------------------------------------------

def network(contender: Contender, in_channels: int, num_classes: int):
    """A freshly initialised network of the contender (seeded by the caller)."""
    if contender.kind == "ours":
        return UNet(in_channels, num_classes, base=contender.base)
    if contender.kind == "seed":
        from seed_unet import SeedUNet  # benchmarks/ is on the path of the scripts
        return SeedUNet(in_channels, num_classes, base=contender.base)
    if contender.kind == "monai":
        from monai.networks.nets import BasicUNet  # imported only where it runs
        return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)
    if contender.kind == "monai_unet":
        from monai.networks.nets import UNet as MonaiUNet
        return MonaiUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                         channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
                         num_res_units=2)
    import segmentation_models_pytorch as smp  # only in the experiments venv
    return smp.Unet("resnet34", encoder_weights=None, in_channels=in_channels,
                    classes=num_classes)


def plain_step(model, optimizer, images, masks) -> float:
    """The tutorial step with the package's CE + Dice (which honours ignore_index): forward,
    loss, zero_grad, backward, AdamW; the loss read back as the tutorial logs it."""
    loss = ce_dice_loss(model(images), masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def amp_step(model, optimizer, images, masks) -> float:
    """`plain_step` with the forward pass and the loss under automatic mixed precision, as
    MONAI's tutorials train (bf16 autocast: the CPU's half precision)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ce_dice_loss(model(images), masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


class FastTraining:
    """A network through unetseg's fast path as a Python user takes it: the model from
    `unetseg.optimize_for_training` at the timed shapes, a fused AdamW over its parameters,
    and a step that reads nothing back."""

    def __init__(self, model, batch: int, size: int) -> None:
        self.model = optimize_for_training(model, batch_size=batch, size=size)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=PLAIN_LR, fused=True)

    @property
    def precision(self) -> str:
        return self.model.runtime.precision

    def step(self, images, masks) -> None:
        loss = ce_dice_loss(self.model(images), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def own_step(contender: Contender):
    """The step a peer's own docs take: the seed's loop, or the AMP step (the plain one on a
    CPU without native bf16)."""
    if contender.kind == "seed":
        from seed_unet import train_step as seed_step  # benchmarks/ is on the scripts' path
        return seed_step
    return amp_step if contender.amp else plain_step


@dataclass
class OurTraining:
    """What ``unetseg train`` trains a contender with (`unetseg.train.training_parts`), and
    its step: `unetseg.train.train_step`, then the schedule's step, as the training loop
    takes them."""

    data: object                     # unetseg.data.build.Datasets
    parts: TrainingParts
    grad_clip: float

    @property
    def model(self):
        return self.parts.model

    @property
    def precision(self):
        return self.parts.precision

    def step(self, images, masks) -> None:
        self.step_only(images, masks)
        self.parts.scheduler.step()

    def step_only(self, images, masks) -> None:
        """The optimiser step alone, for a caller that sets the learning rate itself."""
        parts = self.parts
        train_step(parts.model, parts.loss_fn, parts.optimizer, images,
                   masks.to(parts.runtime.device), self.grad_clip, parts.scaler)


def our_trainer(contender: Contender, data, epochs: int = 20, seed: int = 0) -> OurTraining:
    """`OurTraining` for ``data`` (a `DataConfig`) with the contender's switches and otherwise
    the defaults of ``unetseg train`` (``seed`` draws the initial weights); it writes
    nothing."""
    train = TrainConfig(epochs=epochs, precision=contender.precision,
                        channels_last=contender.channels_last, progress=False, seed=seed)
    datasets = build_datasets(data)
    config = with_data_shapes(RunConfig(data=data, model=UNetConfig(base=contender.base),
                                        train=train), datasets)
    parts = training_parts(config, datasets)
    if not contender.fused:       # torch's default AdamW; train_step then skips on the host
        parts.optimizer = torch.optim.AdamW(parameter_groups(parts.model, train.weight_decay),
                                            lr=train.lr)
        parts.scheduler = torch.optim.lr_scheduler.LambdaLR(parts.optimizer, lambda step: 1.0)
    return OurTraining(datasets, parts, train.grad_clip)


def epoch_batches(dataset, batch_size: int, epoch: int, seed: int = 0):
    """One epoch of the training set as ``unetseg train`` draws it (single process): a seeded
    shuffle per epoch, full batches only, the dataset's augmentation seeded by the epoch."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = torch.randperm(len(dataset),
                           generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(),
                      drop_last=len(dataset) > batch_size)


def validate(model, dataset, num_classes: int, ignore_index: int | None, batch_size: int):
    """`unetseg.metrics.Scores` of ``model`` over ``dataset``, scored as ``unetseg evaluate``
    scores (`unetseg.evaluation.evaluate`: eval mode, no gradients, one confusion matrix); an
    `Accelerated` model runs in its own precision and layout."""
    loader = validation_loader(dataset, batch_size)
    return evaluate(model, loader, num_classes, ignore_index=ignore_index).scores


def set_up_process(contender: Contender, threads: int) -> None:
    """The process-wide settings of a worker: its allocator and all cores' threads."""
    if contender.kind == "ours" and contender.malloc:
        tune_malloc()
    torch.set_num_threads(threads)


def release_memory(contender: Contender) -> None:
    """Give the heap a tuned worker keeps back to the OS, between its turns: a dozen idle
    workers holding their peaks would fill the machine's memory, and the page reclaim that
    follows would slow whoever runs next (the default-allocator contenders most). The next
    turn's warm-up step grows the heap again before anything is timed."""
    if contender.kind == "ours" and contender.malloc:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def timed_steps(step: Callable[[], object], steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the protocol: one JSON request per line, one JSON reply per line ------------------------

class WorkerFailed(RuntimeError):
    """A worker exited or raised; the message holds its reason."""


def serve(start: Callable[[], object]) -> None:
    """Run a worker: ``start()`` builds its session, whose ``ready()`` is the first reply; then
    each request ``{"do": NAME, ...arguments}`` read from stdin is answered with
    ``session.NAME(**arguments)`` until stdin closes. Anything printed goes to stderr, so
    stdout carries the replies alone; an exception is sent back as ``{"error": traceback}``
    and ends the worker."""
    replies = sys.stdout
    sys.stdout = sys.stderr

    def answer(reply: dict) -> None:
        replies.write(json.dumps(reply) + "\n")
        replies.flush()

    try:
        session = start()
        answer(session.ready())
        for line in sys.stdin:
            request = json.loads(line)
            answer(getattr(session, request.pop("do"))(**request))
    except Exception:   # sent back whole: the parent reports it beside the contender
        answer({"error": traceback.format_exc()})


def worker_spec(argv: list[str]) -> dict | None:
    """The worker's spec when the script was started as a worker (``--worker SPEC``)."""
    if "--worker" not in argv:
        return None
    spec = json.loads(argv[argv.index("--worker") + 1])
    spec["contender"] = Contender(**spec["contender"])
    return spec


class Worker:
    """A contender running ``script --worker SPEC`` in a child process of its own.

    The child's environment is the parent's without ``GLIBC_TUNABLES``, so its allocator is
    glibc's default unless the contender tunes it; its stderr goes to a file, shown when it
    fails. ``ready`` is its first reply (sent once it has set up).
    """

    def __init__(self, script: Path, contender: Contender, **options) -> None:
        self.contender = contender
        self.log = tempfile.TemporaryFile(mode="w+")
        spec = json.dumps({"contender": asdict(contender), **options})
        env = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
        self.process = subprocess.Popen([contender.python, str(script), "--worker", spec],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env, cwd=ROOT)
        self.ready = self._reply()

    def ask(self, request: str, **arguments) -> dict:
        try:
            self.process.stdin.write(json.dumps({"do": request, **arguments}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._failed() from None
        return self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise self._failed()
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerFailed(f"{self.contender.name}: {reply['error'].strip().splitlines()[-1]}"
                               f"\n{reply['error']}")
        return reply

    def _failed(self) -> WorkerFailed:
        code = self.process.wait()
        self.log.seek(0)
        tail = "\n".join(self.log.read().strip().splitlines()[-15:])
        return WorkerFailed(f"{self.contender.name}: the worker exited with status {code}\n{tail}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()
        self.log.close()


def start_workers(script: Path, contenders: list[Contender], skipped: dict[str, str],
                  **options) -> dict[str, Worker]:
    """A `Worker` per available contender, started one after another (a start-up measures
    the precision, which must not share the CPU); the reason any could not start goes into
    ``skipped``."""
    workers = {}
    for contender in contenders:
        reason = contender.unavailable()
        if reason is None:
            try:
                workers[contender.name] = Worker(script, contender, **options)
            except WorkerFailed as error:
                reason = str(error)
        if reason is not None:
            skipped[contender.name] = reason
            print(f"skipping {contender.name}: {reason}", file=sys.stderr, flush=True)
    return workers


def lever(contender: Contender, name: str, **changes) -> Contender:
    """A copy of ``contender`` with some switches changed and a new name."""
    return replace(contender, name=name, **changes)
