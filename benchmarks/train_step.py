"""Training-step and inference speed against the seed, MONAI and smp, on this machine.

Training: one step (forward, CE + Dice, backward, AdamW) on 8 random 256 x 256 RGB images, 3
classes: img/s, the achieved GFLOP/s (``torch.utils.flop_counter`` counts the convolutions and
matrix products of a step) and the worker's peak resident memory. Contenders (`contenders.py`):
our U-Net (base 32 by default; ``--bases 16,32,64`` adds others) stepped by
`unetseg.train.train_step` as ``unetseg train`` steps it; and each peer twice, (a) as its own
docs train it and (b) through unetseg's fast path (`unetseg.optimize_for_training`): the
seed's plain U-Net (a: its own fp32 loop), MONAI's ``BasicUNet`` and ``UNet`` and smp's
``Unet(resnet34)`` (a: bf16 AMP, as MONAI's tutorials; smp runs in ``.venv-exp``, or is
skipped with the reason). Every row names its precision and layout. ``--contenders`` times a
few of them (``make bench`` times ours and the seed's own loop, to stay within its quarter of an
hour; ``make bench-all`` times them all). ``--levers`` also times each speed lever of our
base 32 on its own, from fp32 NCHW with glibc's default allocator and torch's default AdamW up
to the full fast path.

The machine's 3x3-convolution throughput is measured in the same rounds: one convolution, C to
C channels, forward and backward, channels_last, at each level's shape of the base-32 U-Net
(the five levels do equal work), in fp32 and bf16; the best of these is the reference for our
step's achieved GFLOP/s.

Inference: forward passes at batch 1 and 8, same contenders (ours and the (b) rows through
`unetseg.fastpath.optimize_for_inference`; the (a) rows ``eval()`` under ``torch.no_grad()``,
MONAI and smp under bf16 autocast where the CPU computes bf16 natively). The masks of our fast
path (as timed at batch 8: its precision, layout and folded weights) and of the seed's plain
fp32 model are compared with the same weights: ours, trained briefly on the synthetic 64 x 64
shapes and loaded into the seed's identical architecture, on that data's validation images.

Each contender runs in a child process of its own (the allocator setting is process-wide),
with all cores' threads; the processes take turns, round after round (A B C A B C ...), so a
slow minute on a shared machine slows every contender alike. A turn is one warm-up step (the
first also counts the flops) and ``--steps`` timed steps (10; ``--passes`` forward passes);
between turns a worker with the tuned allocator gives its heap back, so that a dozen idle
workers do not fill the memory and slow the one running. Figures are medians with the min-max
range over every timed step of the ``--rounds`` (3), and ratios are to the seed's own loop in
the same run. ``--profile`` adds torch.profiler's top ops of our base-32 step and forward pass.

Everything measured goes, with the machine, the commit and the command, to
benchmarks/results/train_step.json (``--out``); ``--report FILE`` prints its tables, and
docs/benchmarks.md renders them from it (docs/figures.py).

    .venv/bin/python benchmarks/train_step.py [--quick] [--profile] [--rounds 3 --steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from contenders import (
    Contender,
    FastTraining,
    Worker,
    WorkerFailed,
    epoch_batches,
    lever,
    network,
    our_trainer,
    own_step,
    release_memory,
    rss_mib,
    serve,
    set_up_process,
    standard,
    start_workers,
    timed_steps,
    validate,
    worker_spec,
)
from harness import Timing, machine, peak_rss_mib, table, write_results
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from unetseg.checkpoint import unwrap
from unetseg.config import DataConfig
from unetseg.fastpath import optimize_for_inference
from unetseg.metrics import labels_from_logits

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "train_step.json"
CLASSES = 3                     # the synthetic shapes' background, circle and square
TILE = 64                       # side of the synthetic images the compared weights train on
TARGET_SPEEDUP = 3.0
TARGET_AGREEMENT = 0.999
TARGET_CONV_SHARE = 0.70
PROBED = "ours b32"             # the contender whose worker also runs the 3x3 conv probes
SEED = "seed (plain) (a)"       # the reference of every ratio: the seed's own loop, fp32


def flops_of(function) -> int:
    """Floating-point operations of one call, as the flop counter counts them."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def load_into_seed(seed_model, our_state: dict) -> None:
    """Our U-Net's weights into the seed's: the same layers in the same order, so the state
    dicts pair up by position (each pair's shapes are checked)."""
    target = seed_model.state_dict()
    if len(target) != len(our_state):
        raise ValueError(f"the seed has {len(target)} tensors, ours {len(our_state)}")
    mapped = {}
    for (name, tensor), (ours, value) in zip(target.items(), our_state.items()):
        if tensor.shape != value.shape:
            raise ValueError(f"seed {name} {tuple(tensor.shape)} vs ours {ours} "
                             f"{tuple(value.shape)}")
        mapped[name] = value
    seed_model.load_state_dict(mapped)


# --- in the workers ---------------------------------------------------------------------------

class Session:
    """What the timed sessions share: ``call`` is the unit timed (a training step or a
    forward pass). A turn is a warm-up call (the first one counts the flops) and the timed
    calls; after it the worker gives its heap back (`release_memory`)."""

    contender: Contender
    call: Callable[[], object]
    flops: int | None = None

    def run(self, steps: int, warmup: int) -> dict:
        if self.flops is None and warmup:
            self.flops = flops_of(self.call)        # counted on a warm-up call
            warmup -= 1
        times = timed_steps(self.call, steps, warmup)
        release_memory(self.contender)
        return {"seconds": times}

    def report(self) -> dict:
        return {"flops": self.flops, "peak_mib": peak_rss_mib()}

    def profile(self, steps: int, rows: int) -> dict:
        """The ops that take the most self CPU time over ``steps`` calls, after a warm-up."""
        self.call()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                self.call()
        release_memory(self.contender)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total,
                        reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        return {"total_s": total / 1e6 / steps,
                "rows": [[e.key, e.count // steps, e.self_cpu_time_total / 1e6 / steps,
                          e.self_cpu_time_total / total] for e in events[:rows]]}


class TrainingSession(Session):
    """One contender's training step on a fixed random batch (and, for ours at base 32, the
    3x3-convolution probes)."""

    def __init__(self, spec: dict) -> None:
        contender: Contender = spec["contender"]
        set_up_process(contender, spec["threads"])
        self.contender, self.size, self.batch = contender, spec["size"], spec["batch"]
        torch.manual_seed(0)
        images = torch.randn(self.batch, 3, self.size, self.size)
        masks = torch.randint(0, CLASSES, (self.batch, self.size, self.size))
        if contender.kind == "ours":
            data = DataConfig(size=self.size, batch_size=self.batch, train_samples=self.batch,
                              val_samples=1)
            trainer = our_trainer(contender, data)
            layout = "channels_last" if contender.channels_last else "NCHW"
            self.precision = f"{trainer.precision.precision}, {layout}"
            self.call = lambda: trainer.step(images, masks)
        elif contender.path == "fast":
            fast = FastTraining(network(contender, 3, CLASSES), self.batch, self.size)
            self.precision = f"{fast.precision}, channels_last"
            self.call = lambda: fast.step(images, masks)
        else:
            model = network(contender, 3, CLASSES).train()
            optimizer = torch.optim.AdamW(model.parameters())
            step = own_step(contender)
            self.precision = contender.practice
            self.call = lambda: step(model, optimizer, images, masks)
        self.setup_mib = rss_mib()
        self.probes = self._conv_probes() if spec.get("probes") else {}

    def ready(self) -> dict:
        return {"precision": self.precision, "torch": torch.__version__,
                "threads": torch.get_num_threads()}

    def report(self) -> dict:
        return {**super().report(), "setup_mib": self.setup_mib}

    def _conv_probes(self) -> dict[str, tuple]:
        """One 3x3 convolution (C to C channels, channels_last) at each level's shape, in fp32
        and bf16: ``{"LEVEL PRECISION": (run, flops, channels, side)}``."""
        probes = {}
        for level in range(5):
            channels, side = self.contender.base * 2**level, max(1, self.size // 2**level)
            for precision in ("fp32", "bf16"):
                run = _conv_probe(self.batch, channels, side, precision)
                probes[f"{level} {precision}"] = (run, flops_of(run), channels, side)
        return probes

    def conv(self) -> dict:
        """Seconds of each probe's forward + backward (after one warm-up call), and the
        probes' flops and shapes."""
        times = {key: timed_steps(probe[0], 1, 1)[0] for key, probe in self.probes.items()}
        release_memory(self.contender)
        return {"seconds": times, "probes": {key: probe[1:] for key, probe in self.probes.items()}}


def _conv_probe(batch: int, channels: int, side: int, precision: str):
    layer = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    layer = layer.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = layer(x)
        y.backward(torch.ones_like(y))

    return run


class InferenceSession(Session):
    """One contender's forward pass on random images, at the batch of the last ``prepare``."""

    def __init__(self, spec: dict) -> None:
        contender: Contender = spec["contender"]
        set_up_process(contender, spec["threads"])
        self.contender, self.size = contender, spec["size"]
        torch.manual_seed(0)
        self.model = network(contender, 3, CLASSES)
        if spec.get("weights"):
            state = torch.load(spec["weights"], weights_only=True)
            if contender.kind == "seed":      # the compared weights: ours in the seed's net
                load_into_seed(self.model, state)
            else:
                self.model.load_state_dict(state)
        self.model.eval()
        self.precision = contender.practice

    def ready(self) -> dict:
        return {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def prepare(self, batch: int) -> dict:
        """Set up the forward pass at ``batch``: ours, and the others' (b), through unetseg's
        fast path for this batch; the others' (a) as their docs predict (the seed in fp32,
        MONAI and smp under bf16 autocast where the CPU computes bf16 natively), in eval mode
        without gradients."""
        contender = self.contender
        if contender.kind == "ours" or contender.path == "fast":
            fast = optimize_for_inference(self.model, batch_size=batch, size=self.size)
            self.precision = f"{fast.runtime.precision}, channels_last"
            self.forward, self.mode = fast, torch.inference_mode
        else:
            self.precision = contender.practice
            autocast = contender.amp
            model = self.model

            def forward(images):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    return model(images).float()

            self.forward, self.mode = forward, torch.no_grad
        images = torch.randn(batch, 3, self.size, self.size)

        def call() -> None:
            with self.mode():
                self.forward(images)

        self.call, self.flops = call, None
        return {"precision": self.precision}

    def masks(self, images: str, out: str) -> dict:
        """Argmax masks of the saved images, through the forward pass last prepared (ours:
        the precision, layout and folded weights chosen for the timed batch), to ``out``."""
        batch = torch.load(images, weights_only=True)
        with self.mode():
            labels = labels_from_logits(self.forward(batch))
        np.save(out, labels.numpy().astype(np.uint8))
        return {}


class PretrainSession:
    """Our base-32 U-Net trained by `unetseg.train.train_step` on synthetic 64 x 64 shapes for
    a fixed number of epochs (the default schedule, shortened), so the masks compared have
    real margins; the validation images (not tiled to the timed size: the seams between
    tiles are edges the model never saw) are saved for the comparison."""

    def __init__(self, spec: dict) -> None:
        set_up_process(spec["contender"], spec["threads"])
        self.spec = spec

    def ready(self) -> dict:
        return {}

    def train(self, epochs: int, samples: int, weights: str, images: str) -> dict:
        data = DataConfig(size=TILE, train_samples=samples, val_samples=max(16, samples // 10))
        trainer = our_trainer(self.spec["contender"], data, epochs=epochs)
        steps = 0
        for epoch in range(epochs):
            for batch_images, batch_masks in epoch_batches(trainer.data.train, data.batch_size,
                                                           epoch):
                trainer.step(batch_images, batch_masks)
                steps += 1
        scores = validate(trainer.model, trainer.data.val, CLASSES, 255, 16)
        torch.save(unwrap(trainer.model).state_dict(), weights)
        val = trainer.data.val
        pairs = [val[i] for i in range(len(val))]
        torch.save(torch.stack([image for image, _ in pairs]), images)
        np.save(images + ".truth.npy", torch.stack([mask for _, mask in pairs]).numpy())
        return {"steps": steps, "miou": scores.miou}


SESSIONS = {"train": TrainingSession, "infer": InferenceSession, "pretrain": PretrainSession}


# --- in the parent ----------------------------------------------------------------------------

def take_turns(workers: dict[str, Worker], failed: dict[str, str], rounds: int, steps: int,
               extra: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Seconds of each call of each worker: ``rounds`` rounds in which each worker in turn
    makes a warm-up call and ``steps`` timed ones (A B C A B C ...); ``extra`` runs after
    each round. A worker that fails is dropped, its reason kept in ``failed``."""
    times: dict[str, list[float]] = {name: [] for name in workers}
    for _ in range(rounds):
        for name, worker in workers.items():
            if name not in failed:
                try:
                    times[name] += worker.ask("run", steps=steps, warmup=1)["seconds"]
                except WorkerFailed as error:
                    failed[name] = str(error)
        if extra is not None:
            extra()
    return {name: values for name, values in times.items() if values and name not in failed}


def training_phase(args, contenders: list[Contender], levers: list[Contender]) -> dict:
    skipped: dict[str, str] = {}
    options = {"size": args.size, "batch": args.batch, "threads": args.threads}
    workers = {}
    for contender in contenders + levers:      # the base-32 U-Net's worker also probes convs
        workers.update(start_workers(SCRIPT, [contender], skipped, role="train",
                                     probes=contender.name == PROBED, **options))
    probe = workers.get(PROBED)
    conv_rounds: list[dict] = []
    timings = take_turns(workers, skipped, args.rounds, args.steps,
                         (lambda: conv_rounds.append(probe.ask("conv"))) if probe else None)
    reports = {name: workers[name].ask("report") for name in timings}
    profile = probe.ask("profile", steps=2, rows=15) if probe and args.profile else None
    for worker in workers.values():
        worker.close()
    ready = {name: worker.ready for name, worker in workers.items()}
    return {"timings": timings, "reports": reports, "ready": ready, "skipped": skipped,
            "conv": conv_rounds, "profile": profile}


def pretrain(args, folder: Path) -> dict | None:
    """Weights for the agreement check, and the validation images it runs on."""
    contender = Contender(PROBED, "ours", 32)
    try:
        worker = Worker(SCRIPT, contender, role="pretrain", threads=args.threads)
        result = worker.ask("train", epochs=args.pretrain_epochs, samples=args.samples,
                            weights=str(folder / "weights.pt"), images=str(folder / "val.pt"))
        worker.close()
    except WorkerFailed as error:
        print(f"no agreement check: pretraining failed: {error}", file=sys.stderr)
        return None
    return {**result, "weights": str(folder / "weights.pt"), "images": str(folder / "val.pt")}


def inference_phase(args, contenders: list[Contender], trained: dict | None,
                    folder: Path) -> dict:
    skipped: dict[str, str] = {}
    workers = {}
    for contender in contenders:
        compared = trained and contender.name in (PROBED, SEED)
        weights = trained["weights"] if compared else None
        workers.update(start_workers(SCRIPT, [contender], skipped, role="infer",
                                     size=args.size, threads=args.threads, weights=weights))
    results, profile = {}, None
    for batch in args.infer_batches:
        prepared = {}
        for name, worker in workers.items():
            if name not in skipped:
                try:
                    prepared[name] = worker.ask("prepare", batch=batch)
                except WorkerFailed as error:
                    skipped[name] = str(error)
        timings = take_turns(workers, skipped, args.rounds, args.passes)
        reports = {name: workers[name].ask("report") for name in timings}
        if batch == 1 and args.profile and PROBED in timings:
            profile = workers[PROBED].ask("profile", steps=5, rows=12)
        results[str(batch)] = {"timings": timings, "prepared": prepared, "reports": reports}
    agreement = _agreement(workers, trained, folder) if trained else None
    for worker in workers.values():
        worker.close()
    return {"batches": results, "skipped": skipped, "agreement": agreement,
            "profile": profile}


def _agreement(workers: dict[str, Worker], trained: dict, folder: Path) -> dict | None:
    labels = {}
    for name in (PROBED, SEED):
        if name not in workers:
            return None
        out = folder / f"{name.split()[0]}.npy"
        try:
            workers[name].ask("masks", images=trained["images"], out=str(out))
        except WorkerFailed as error:
            print(f"no agreement check: {error}", file=sys.stderr)
            return None
        labels[name] = np.load(out)
    truth = np.load(trained["images"] + ".truth.npy")
    ours, seed = labels[PROBED], labels[SEED]
    return {"agree": float((ours == seed).mean()), "pixels": ours.size,
            "ours_acc": float((ours == truth).mean()), "seed_acc": float((seed == truth).mean())}


# --- the tables, from the results file --------------------------------------------------------

def _rate(values: list[float], batch: int) -> tuple[float, str]:
    """img/s: the median, and the min-max range."""
    rates = [batch / value for value in values]
    return batch / Timing(values).median, f"{min(rates):.3g}-{max(rates):.3g}"


def _missing_rows(names: list[str], skipped: dict[str, str], width: int) -> list[list]:
    return [[name, f"not run: {(skipped[name].splitlines() or ['no reason given'])[0][:90]}"]
            + [""] * (width - 2) for name in names if name in skipped]


def conv_peak(conv_rounds: list[dict]) -> tuple[float, list[list]]:
    """The best median GFLOP/s of the 3x3 probes, and a table row per level."""
    if not conv_rounds:
        return float("nan"), []
    probes = conv_rounds[0]["probes"]
    rate = {key: flops / 1e9 / Timing([r["seconds"][key] for r in conv_rounds]).median
            for key, (flops, _, _) in probes.items()}
    rows = []
    for level in range(5):
        _, channels, side = probes[f"{level} fp32"]
        rows.append([f"level {level}: {channels} -> {channels} ch, {side}x{side}",
                     f"{probes[f'{level} fp32'][0] / 1e9:.1f}", rate[f"{level} fp32"],
                     rate[f"{level} bf16"]])
    return max(rate.values()), rows


def training_table(document: dict) -> str:
    """Every contender's training step: img/s (median and range over all timed steps), the
    ratio to the seed's own way, achieved GFLOP/s and memory."""
    setup, result = document["setup"], document["training"]
    timings, ready, reports = result["timings"], result["ready"], result["reports"]
    batch, peak = setup["batch"], conv_peak(result["conv"])[0]
    seed = timings.get(SEED)
    rows = []
    for name in setup["contenders"]:
        if name not in timings:
            continue
        rate, spread = _rate(timings[name], batch)
        report = reports[name]
        gflops = report["flops"] / 1e9 / Timing(timings[name]).median
        rows.append([name, ready[name]["precision"], rate, spread,
                     rate / (batch / Timing(seed).median) if seed else "",
                     report["flops"] / 1e9, gflops, f"{gflops / peak:.0%}",
                     report["peak_mib"], report["peak_mib"] - report["setup_mib"]])
    rows += _missing_rows(setup["contenders"], result["skipped"], 10)
    return table(f"Training step, {batch} x 3 x {setup['size']}^2, {CLASSES} classes "
                 f"({setup['rounds']} rounds x {setup['steps']} steps, each turn after a "
                 f"warm-up; median and range over all steps)",
                 ["contender", "precision, layout", "img/s", "range", "x seed (a)",
                  "GFLOP/step", "GFLOP/s", "of 3x3 peak", "peak RSS MiB", "of which steps"],
                 rows)


def conv_table(document: dict) -> str:
    setup = document["setup"]
    peak, rows = conv_peak(document["training"]["conv"])
    return table(f"3x3 convolution, forward + backward, batch {setup['batch']}, "
                 f"channels_last: GFLOP/s (best: {peak:.0f}, the reference above)",
                 ["shape (the base-32 U-Net's levels)", "GFLOP", "fp32", "bf16"], rows)


def levers_table(document: dict) -> str:
    """What each speed lever gives: our base-32 step, one lever added per row (empty when
    the run timed no levers)."""
    setup, result = document["setup"], document["training"]
    if not setup["levers"]:
        return ""
    timings, ready = result["timings"], result["ready"]
    seed, batch = timings.get(SEED), setup["batch"]
    rows, previous = [], None
    for name in setup["levers"]:
        if name not in timings:
            continue
        rate, spread = _rate(timings[name], batch)
        label = f"+ fused AdamW (= {name})" if name == PROBED else name
        rows.append([label, ready[name]["precision"], rate, spread,
                     rate / (batch / Timing(seed).median) if seed else "",
                     rate / previous if previous else ""])
        previous = rate
    rows += _missing_rows(setup["levers"], result["skipped"], 6)
    return table("What each lever gives: our base-32 step, one lever added per row",
                 ["setting", "precision, layout", "img/s", "range", "x seed (a)",
                  "x row above"], rows)


def inference_tables(document: dict) -> str:
    setup, result = document["setup"], document["inference"]
    tables = []
    for batch, found in result["batches"].items():
        timings, prepared, reports = found["timings"], found["prepared"], found["reports"]
        seed, batch = timings.get(SEED), int(batch)
        rows = []
        for name in setup["contenders"]:
            if name not in timings:
                continue
            rate, spread = _rate(timings[name], batch)
            rows.append([name, prepared[name]["precision"], rate, spread,
                         rate / (batch / Timing(seed).median) if seed else "",
                         reports[name]["flops"] / 1e9 / Timing(timings[name]).median,
                         reports[name]["peak_mib"]])
        rows += _missing_rows(setup["contenders"], result["skipped"], 7)
        tables.append(table(
            f"Inference, batch {batch} x 3 x {setup['size']}^2 ({setup['rounds']} rounds x "
            f"{setup['passes']} passes, each turn after a warm-up; median and range)",
            ["contender", "precision, layout", "img/s", "range", "x seed (a)", "GFLOP/s",
             "peak RSS MiB"], rows))
    return "\n\n".join(tables)


def profiles(document: dict) -> str:
    shown = []
    for what, found in (("our base-32 training step", document["training"]["profile"]),
                        ("our base-32 forward pass at batch 1",
                         document["inference"]["profile"])):
        if found:
            shown.append(table(f"Where {what}'s time goes (torch.profiler, self CPU time; "
                               f"{found['total_s']:.3g} s of ops per call)",
                               ["op", "calls", "s", "share"],
                               [[op, calls, sec, f"{share:.1%}"]
                                for op, calls, sec, share in found["rows"]]))
    return "\n\n".join(shown)


def targets(document: dict) -> str:
    """Issue 24's targets, from the ratios measured in the run."""
    setup, training, inference = document["setup"], document["training"], document["inference"]

    def ratio(timings: dict) -> float | None:
        if SEED not in timings or PROBED not in timings:
            return None
        return Timing(timings[SEED]).median / Timing(timings[PROBED]).median

    def verdict(value, target) -> str:
        return "n/a" if value is None else ("met" if value >= target else "missed")

    speedup = ratio(training["timings"])
    rows = [[f"training img/s, {PROBED} / {SEED}", speedup if speedup else "n/a",
             f">= {TARGET_SPEEDUP}", verdict(speedup, TARGET_SPEEDUP)]]
    for batch, found in inference["batches"].items():
        value = ratio(found["timings"])
        rows.append([f"inference img/s at batch {batch}, {PROBED} / {SEED}",
                     value if value else "n/a", f">= {TARGET_SPEEDUP}",
                     verdict(value, TARGET_SPEEDUP)])
    peak = conv_peak(training["conv"])[0]
    share = None
    if PROBED in training["timings"]:
        share = (training["reports"][PROBED]["flops"] / 1e9
                 / Timing(training["timings"][PROBED]).median / peak)
    rows.append([f"{PROBED} training GFLOP/s / best 3x3 conv ({peak:.0f} GFLOP/s)",
                 "n/a" if share is None else f"{share:.0%}", f">= {TARGET_CONV_SHARE:.0%}",
                 verdict(share, TARGET_CONV_SHARE)])
    agreement, trained = inference["agreement"], document["trained"]
    if agreement:
        rows.append([f"masks agreeing, ours fast path (as timed at batch {setup['batch']}) "
                     f"vs the seed's fp32, same weights ({agreement['pixels']} px)",
                     f"{agreement['agree']:.4%}", f">= {TARGET_AGREEMENT:.1%}",
                     verdict(agreement["agree"], TARGET_AGREEMENT)])
    text = table("Targets (ratios measured in this run)",
                 ["what", "measured", "target", "verdict"], rows)
    if agreement:
        text += (f"\n\nCompared weights: ours b32 after {trained['steps']} steps on synthetic "
                 f"{TILE}^2 shapes (val mIoU {trained['miou']:.3f}); masks of the validation "
                 f"images; pixel accuracy against the truth: ours {agreement['ours_acc']:.4f},"
                 f" seed {agreement['seed_acc']:.4f}.")
    return text


def fast_path_gains(document: dict) -> str:
    """The first of the two claims, peer by peer: how much faster each network runs through
    unetseg's fast path (b) than its own way (a), in training and inference (img/s over
    img/s, the same run); and our step against the same architecture through the fast path
    (the seed's U-Net, b), which isolates what `unetseg train`'s step adds."""
    setup = document["setup"]
    results = [("training", document["training"]["timings"])] + [
        (f"inference, batch {batch}", found["timings"])
        for batch, found in document["inference"]["batches"].items()]

    def gain(timings: dict, slow: str, fast: str) -> float | None:
        """How many times faster ``fast`` ran than ``slow`` (medians), if both ran."""
        if slow not in timings or fast not in timings:
            return None
        return Timing(timings[slow]).median / Timing(timings[fast]).median

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}x"

    peers = [name.removesuffix(" (a)") for name in setup["contenders"]
             if name.endswith(" (a)")]
    rows = [[peer, *(shown(gain(timings, f"{peer} (a)", f"{peer} (b)"))
                     for _, timings in results)] for peer in peers]
    same = SEED.replace("(a)", "(b)")
    rows.append([f"{PROBED} (unetseg train's step) over {same}",
                 *(shown(gain(timings, same, PROBED)) for _, timings in results)])
    # A verdict on training speed per peer timed both ways; a tenth either way is too close
    # to call on a shared machine.
    verdicts = {"faster": [], "within a tenth": [], "slower": []}
    for peer in peers:
        trained = gain(results[0][1], f"{peer} (a)", f"{peer} (b)")
        if trained is not None:
            verdicts["faster" if trained >= 1.1 else "slower" if trained <= 1 / 1.1
                     else "within a tenth"].append(peer)
    said = "; ".join(f"{verdict}: {', '.join(names)}" for verdict, names in verdicts.items()
                     if names)
    return table("What unetseg's fast path gives each network: its img/s through "
                 "optimize_for_training (b) over its img/s its own way (a), same run",
                 ["network", *(what for what, _ in results)], rows) + (
        f"\n\nTraining through the fast path against the network's own way: {said}."
        if said else "")


def report(document: dict) -> str:
    """Every table of a results file, as the script prints them."""
    parts = [training_table(document), conv_table(document), levers_table(document),
             inference_tables(document), fast_path_gains(document), profiles(document),
             targets(document)]
    return "\n\n".join(part for part in parts if part)


def chosen(contenders: list[Contender], names: str | None) -> list[Contender]:
    """The contenders ``names`` (comma-separated) asks for, in their usual order; all when
    ``names`` is empty. An unknown name is an error that lists the known ones."""
    if not names:
        return contenders
    wanted = [name.strip() for name in names.split(",")]
    known = [c.name for c in contenders]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"--contenders: no contender named {', '.join(map(repr, unknown))}; "
                         f"the contenders are {', '.join(map(repr, known))}")
    return [c for c in contenders if c.name in wanted]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--bases", default="32", help="our U-Net's bases, comma-separated "
                        "(32 is needed for the levers, the conv probes and the targets)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per turn")
    parser.add_argument("--passes", type=int, default=10, help="timed inference passes per "
                        "turn")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1000, help="synthetic training images "
                        "for the weights the agreement check compares")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--contenders", help="comma-separated names to time (default: "
                        "every one); make bench times ours and the seed's own loop")
    parser.add_argument("--levers", action="store_true", help="also time each speed lever of "
                        "our base-32 step on its own (four more contenders)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where our base-32 step's time goes")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every path: "
                        "64^2, batch 2, bases 8 and 32, one round")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"the results file (default: {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="measure nothing: print the tables of a results file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.bases, args.rounds, args.steps = 64, 2, "8,32", 1, 1
        args.passes, args.levers = 1, True
        args.pretrain_epochs, args.samples = 1, 64
    args.infer_batches = sorted({1, args.batch})
    return args


def main() -> None:
    spec = worker_spec(sys.argv)
    if spec is not None:
        serve(lambda: SESSIONS[spec["role"]](spec))
        return
    args = parse_args()
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    contenders = chosen(standard(tuple(int(b) for b in args.bases.split(","))),
                        args.contenders)
    ours = Contender(PROBED, "ours", 32)
    levers = [lever(ours, "fp32, NCHW, default malloc, torch AdamW", malloc=False,
                    channels_last=False, precision="fp32", fused=False),
              lever(ours, "+ tuned malloc", channels_last=False, precision="fp32", fused=False),
              lever(ours, "+ channels_last", precision="fp32", fused=False),
              lever(ours, "+ measured precision", fused=False)] if args.levers else []
    start = time.perf_counter()
    training = training_phase(args, contenders, levers)
    print(f"(training phase: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        trained = pretrain(args, Path(folder))
        print(f"(weights trained: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
        inference = inference_phase(args, contenders, trained, Path(folder))
        print(f"(inference phase: {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    setup = {"size": args.size, "batch": args.batch, "rounds": args.rounds,
             "steps": args.steps, "passes": args.passes, "threads": args.threads,
             "contenders": [c.name for c in contenders],
             "levers": [c.name for c in levers] + [PROBED] if levers else [],
             "torch": {name: ready["torch"] for name, ready in training["ready"].items()}}
    trained = {k: v for k, v in trained.items() if k in ("steps", "miou")} if trained else None
    document = {"setup": setup, "training": training, "inference": inference,
                "trained": trained}
    print(report(document))
    if not args.quick:
        write_results(args.out, **document)


if __name__ == "__main__":
    main()
