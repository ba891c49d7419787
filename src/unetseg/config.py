"""Run configuration: one frozen dataclass per concern (data, model, training).

Each field's ``metadata`` holds its command-line help (and its flag, where the flag is not
``--field-name``), so ``unetseg train --help`` is generated from these classes and cannot drift
from them. Every section checks its values on construction, before any data is read, and an
error names the flag to fix. Values are typed by the field: ``lr: 3e-3`` in a YAML file, which
PyYAML reads as a string, becomes the number 0.003; ``lr: fast`` is refused naming the key.
The model section (`ModelConfig`) names the network: this toolkit's U-Net, whose own
`unetseg.model.UNetConfig` it holds, or an smp model (`unetseg.architectures`).

The rules of a run's settings live here, so that ``fit`` from Python enforces what the command
line enforces: how the layers combine (`layered_settings`: plan < ``--config`` file < flags)
and what a resumed run may change (`check_resume_changes`).

A run's resolved configuration is written beside it (``config.yaml``) and inside every
checkpoint, so a run can be read, repeated and resumed from its folder alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .losses import LOSS_NAMES, MEDIAN_WEIGHTINGS
from .model import UNetConfig
from .precision import PRECISIONS

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "UNetConfig", "SECTIONS",
           "cli_fields", "one_class_message", "flag_of", "parse_yaml", "read_config_file",
           "layered_settings", "check_resume_changes", "same_path", "with_absolute_paths",
           "RESUMABLE_CHANGES", "LENGTH_FIELDS", "SCHEDULES", "SYNTHETIC_SOURCES", "PRESET_SOURCES"]

SCHEDULES = ("cosine", "onecycle")
SYNTHETIC_SOURCES = ("synthetic", "binary")
PRESET_SOURCES = ("camvid", "isbi")


def option(default: Any, help: str, flag: str | None = None) -> Any:
    """A dataclass field with a default and its command-line help (and flag, when it is not
    ``--field-name``)."""
    metadata = {"help": help} if flag is None else {"help": help, "flag": flag}
    return field(default=default, metadata=metadata)


def flag_of(config_class: type, name: str) -> str:
    """The command-line flag of field ``name``: ``--batch-size`` for ``batch_size``."""
    for item in fields(config_class):
        if item.name == name:
            return item.metadata.get("flag", "--" + name.replace("_", "-"))
    raise KeyError(name)


def typed(annotation: str, value: Any) -> Any:
    """``value`` as the field's annotated type: a whole number for ``int``, a number for
    ``float`` (from a string too: YAML 1.1 reads ``3e-3``, without a dot, as a string), true
    or false for ``bool``; None where the annotation allows it. Anything else (names, paths,
    tuples) is returned as it is, for the section's own checks. Raises ValueError saying what
    was expected."""
    kind = str(annotation).split("|")[0].strip()
    if value is None and "None" in str(annotation):
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, found {value!r}")
        return value
    if kind not in ("int", "float"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be {'a whole number' if kind == 'int' else 'a number'}, found "
                         f"{value!r}")
    try:
        number = float(value) if kind == "float" else int(value) if isinstance(value, str) \
            else value
    except ValueError:
        raise ValueError(f"must be {'a whole number' if kind == 'int' else 'a number'}, found "
                         f"{value!r}") from None
    return number


def _typed_fields(config: Any) -> None:
    """Give each field of a frozen section its annotated type (`typed`), naming the flag."""
    for item in fields(config):
        try:
            value = typed(item.type, getattr(config, item.name))
        except ValueError as error:
            raise ValueError(f"{flag_of(type(config), item.name)} {error}") from None
        object.__setattr__(config, item.name, value)


def _require(config: Any, name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{flag_of(type(config), name)} must be {expected}, found "
                         f"{getattr(config, name)!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is batched and augmented."""

    source: str = option("synthetic", "synthetic (circles and squares), binary (objects on a "
                         "background), camvid, isbi, or a folder with images/ and masks/ (or "
                         "train/ and val/ folders holding them)", flag="--data")
    root: str | None = option(None, "dataset folder for --data camvid or isbi")
    val: str | None = option(None, "a separate validation folder (images/ + masks/)")
    spec: str | None = option(None, "dataset file (YAML/JSON: classes, colours, ignore_index, "
                              "remap); default: the one inside the folder")
    classes: tuple[str, ...] | None = option(None, "comma-separated class names, for a folder "
                                             "without a dataset file")
    size: int = option(64, "training crop side in pixels (the image side for synthetic data)")
    batch_size: int = option(16, "images per optimiser step (the global batch under DDP)")
    workers: int = option(0, "DataLoader worker processes")
    val_ratio: float = option(0.2, "share held out for validation when there is no val split")
    train_list: str | None = option(None, "split file naming the training images (one per "
                                    "line), relative to the data folder")
    val_list: str | None = option(None, "split file naming the validation images")
    train_samples: int = option(2000, "synthetic training images")
    val_samples: int = option(200, "synthetic validation images")
    foreground: float = option(0.05, "share of object pixels per image for --data binary")
    augment: bool = option(True, "train without augmentation (default: random scale, crop, "
                           "flips, rotations, brightness/contrast)", flag="--no-augment")
    focus_classes: tuple[str, ...] | None = option(None, "comma-separated classes that a "
                                                   "share of the crops is centred on (rare "
                                                   "or small ones; see --focus-share)")
    focus_share: float = option(0.0, "share of the training crops centred on a pixel of a "
                                "--focus-classes class (0 = every crop placed uniformly)")
    scale_min: float = option(0.5, "smallest random rescale before cropping")
    scale_max: float = option(2.0, "largest random rescale before cropping")
    seed: int = option(0, "seed of the data: synthetic draws, the train/val split and the "
                       "augmentation", flag="--data-seed")
    skip_bad: bool = option(False, "leave out unreadable or inconsistent image/mask pairs and "
                            "list them (default: stop at the first, naming it)")
    # Set from the training set unless given (a YAML file may fix them); no flags.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _typed_fields(self)
        for name in ("classes", "focus_classes"):    # "a, b" from a flag or a YAML string
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, tuple(part.strip()
                                                     for part in getattr(self, name).split(",")))
        for name in ("classes", "focus_classes", "mean", "std"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _require(self, "source", isinstance(self.source, str) and self.source.strip() != "",
                 "a source name or a folder")
        if self.classes is not None and len(self.classes) < 2:
            raise ValueError(one_class_message(f"--classes {','.join(self.classes)}",
                                               self.classes))
        for name in ("size", "batch_size", "train_samples", "val_samples"):
            _require(self, name, _is_int(getattr(self, name)) and getattr(self, name) >= 1,
                     "a whole number >= 1")
        _require(self, "workers", _is_int(self.workers) and self.workers >= 0,
                 "a whole number >= 0")
        _require(self, "val_ratio", 0.0 < self.val_ratio < 1.0, "between 0 and 1")
        _require(self, "foreground", 0.0 < self.foreground < 1.0, "between 0 and 1")
        _require(self, "focus_share", 0.0 <= self.focus_share <= 1.0, "between 0 and 1")
        if self.focus_share and not self.focus_classes:
            raise ValueError(f"--focus-share {self.focus_share} needs --focus-classes, the "
                             f"classes to centre crops on")
        _require(self, "scale_min", 0.0 < self.scale_min <= self.scale_max,
                 f"> 0 and <= --scale-max ({self.scale_max})")
        if (self.mean is None) != (self.std is None) or (
                self.mean is not None and (len(self.mean) != len(self.std)
                                           or min(self.std) <= 0)):
            raise ValueError(f"data.mean and data.std go together, one value per channel, std "
                             f"> 0; found mean {self.mean} and std {self.std}")
        if bool(self.train_list) != bool(self.val_list):
            raise ValueError("give both --train-list and --val-list, or neither")
        self._check_options_fit_the_source()

    def _check_options_fit_the_source(self) -> None:
        """Options another kind of source would use are refused rather than ignored."""
        drawn = ("train_samples", "val_samples", "foreground")    # what synthetic data draws
        if self.source in SYNTHETIC_SOURCES:
            unused = ("root", "val", "spec", "classes", "train_list", "val_list",
                      "focus_classes", "focus_share")
            if self.source != "binary":
                unused += ("foreground",)
        elif self.source in PRESET_SOURCES:
            if self.root is None:
                raise ValueError(f"--data {self.source} needs --root DIR, the folder of the "
                                 f"downloaded dataset")
            unused = ("spec", "classes", "train_list", "val_list", *drawn)
        else:
            unused = ("root", *drawn)
        defaults = {f.name: f.default for f in fields(DataConfig)}
        given = [flag_of(DataConfig, name) for name in unused
                 if getattr(self, name) != defaults[name]]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be used with --data {self.source}; "
                             f"remove {'it' if len(given) == 1 else 'them'}")

    @property
    def synthetic(self) -> bool:
        return self.source in SYNTHETIC_SOURCES


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    out: str = option("runs/unet", "run folder (config, checkpoints, metrics, curves)")
    epochs: int = option(20, "passes over the training set (ignored when --max-steps or "
                         "--time-budget sets the length)")
    max_steps: int = option(0, "train for this many optimiser steps, the last epoch part-way "
                            "(0 = off: --epochs); the schedule spans them")
    time_budget: float = option(0.0, "train for about this many minutes of wall time from "
                                "the first step, validation and checkpoints included (0 = "
                                "off); the schedule follows the pace measured, and the run "
                                "ends with a validation and a checkpoint")
    val_every: int = option(1, "validate, and write the checkpoints, every N epochs and after "
                            "the last one (--patience counts validations)")
    epoch_steps: int = option(0, "split each pass over the training images into epochs of "
                              "at most N batches, so that a large training set validates "
                              "every N steps rather than once a pass (0 = an epoch is a pass)")
    lr: float = option(3e-3, "peak AdamW learning rate")
    weight_decay: float = option(1e-4, "AdamW weight decay (on weights of 2 or more "
                                 "dimensions; never on biases and norm parameters)")
    schedule: str = option("cosine", "cosine (with linear warm-up) or onecycle")
    warmup_epochs: float = option(1.0, "length of the linear warm-up")
    loss: str = option("ce_dice", "ce_dice, ce, dice, or bce_dice (binary, one logit)")
    dice_weight: float = option(1.0, "weight of the Dice term")
    class_weights: str | None = option(None, "cross-entropy class weights: 'median' "
                                       "(median frequency), 'sqrt-median' (its square "
                                       "root: softer) or 'w0,w1,...'")
    grad_clip: float = option(1.0, "max gradient norm (0 = no clipping)")
    precision: str = option("auto", "auto, fp32, bf16 or fp16 (CUDA); auto = bf16 on GPUs, "
                            "and on a CPU with native bf16 the faster of bf16 and fp32, "
                            "measured once and cached")
    channels_last: bool = option(True, "keep the NCHW memory layout (default: channels_last, "
                                 "faster on CPU and GPU)", flag="--no-channels-last")
    compile: bool = option(False, "run the model through torch.compile (off by default: on "
                           "the 2-core CPUs measured it was slower; try it on a GPU)")
    seed: int = option(0, "seed of the initial weights, the shuffling and dropout")
    patience: int = option(0, "stop after this many validations without a better val mIoU, "
                           "or with a class collapsed (see the health lines) (0 = off)")
    max_nonfinite: int = option(5, "stop after this many non-finite losses in a row (each is "
                                "skipped)")
    checkpoint_every: int = option(0, "also write the resume checkpoint every N batches (0 = "
                                   "once per epoch)")
    sync_batchnorm: bool = option(False, "with several processes, BatchNorm statistics over "
                                  "the global batch (default: per process)")
    device: str | None = option(None, "cpu, cuda, cuda:1, ... (default: CUDA if available)")
    tensorboard: bool = option(False, "also log to TensorBoard in RUN_DIR/tensorboard, if "
                               "installed")
    progress: bool = option(True, "no progress bars (default: shown)", flag="--quiet")
    data_changed: str = option("refuse", "with --resume, when the data is not what the run "
                               "recorded (images added or removed, other masks): refuse, or "
                               "ok to continue on it (recorded in config.yaml)")

    def __post_init__(self) -> None:
        _typed_fields(self)
        _require(self, "data_changed", self.data_changed in ("refuse", "ok"), "refuse or ok")
        _require(self, "epochs", _is_int(self.epochs) and self.epochs >= 1,
                 "a whole number >= 1")
        for name in ("lr", "weight_decay", "warmup_epochs", "dice_weight", "grad_clip"):
            _require(self, name, getattr(self, name) >= 0, ">= 0")
        _require(self, "schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}")
        _require(self, "loss", self.loss in LOSS_NAMES, f"one of {', '.join(LOSS_NAMES)}")
        _require(self, "precision", self.precision in PRECISIONS,
                 f"one of {', '.join(PRECISIONS)}")
        _require(self, "max_steps", _is_int(self.max_steps) and self.max_steps >= 0,
                 "a whole number >= 0")
        _require(self, "time_budget", isinstance(self.time_budget, (int, float))
                 and not isinstance(self.time_budget, bool) and self.time_budget >= 0,
                 "a number of minutes >= 0")
        _require(self, "val_every", _is_int(self.val_every) and self.val_every >= 1,
                 "a whole number >= 1")
        for name in ("patience", "checkpoint_every", "epoch_steps"):
            _require(self, name, _is_int(getattr(self, name)) and getattr(self, name) >= 0,
                     "a whole number >= 0")
        _require(self, "max_nonfinite", _is_int(self.max_nonfinite) and self.max_nonfinite >= 1,
                 "a whole number >= 1")
        if self.class_weights is not None:
            _require(self, "class_weights", _valid_weights(self.class_weights),
                     "'median', 'sqrt-median' or comma-separated numbers >= 0")
            if self.loss not in ("ce", "ce_dice"):
                raise ValueError(f"--class-weights weigh the cross-entropy; --loss {self.loss} "
                                 f"has none (use ce or ce_dice)")


@dataclass(frozen=True)
class ModelConfig:
    """The network: this toolkit's U-Net (``arch="unet"``, shaped by the U-Net fields, whose
    `unetseg.model.UNetConfig` is `unet`) or an smp model (``arch="smp:NAME"`` on
    ``encoder``). ``in_channels`` and ``num_classes`` come from the data when training
    starts. Saved inside every checkpoint, which rebuilds the network from it."""

    in_channels: int = 3
    num_classes: int = 2
    base: int = option(32, "channels of the first U-Net level (the paper uses 64)")
    depth: int = option(4, "number of down/up steps")
    upsample: str = option("bilinear", "bilinear or transpose")
    norm: str = option("batch", "batch, group, instance or none")
    dropout: float = option(0.0, "channel dropout on the bottleneck")
    # Another architecture in the U-Net's place (`unetseg.architectures`); the fields above
    # then describe nothing but the channels and classes.
    arch: str = option("unet", "unet (this toolkit's U-Net) or smp:NAME, a "
                       "segmentation_models_pytorch model: smp:Unet, smp:FPN, "
                       "smp:DeepLabV3Plus, smp:Segformer, ... (needs the smp extra)")
    encoder: str = option("resnet34", "the encoder of an --arch smp:* model (any smp encoder "
                          "name)")
    encoder_weights: str = option("none", "imagenet or none: the encoder's starting weights "
                                  "for --arch smp:* (imagenet: downloaded once by smp, into "
                                  "~/.cache/huggingface/hub)")

    def __post_init__(self) -> None:
        _typed_fields(self)
        if not isinstance(self.arch, str) or not (
                self.arch == "unet" or (self.arch.startswith("smp:") and len(self.arch) > 4)):
            raise ValueError(f"--arch must be unet or smp:NAME (smp:Unet, smp:FPN, ...), "
                             f"found {self.arch!r}")
        defaults = {item.name: item.default for item in fields(ModelConfig)}
        if self.arch == "unet":
            changed = [name for name in ("encoder", "encoder_weights")
                       if getattr(self, name) != defaults[name]]
        else:
            changed = [name for name in ("base", "depth", "upsample", "norm", "dropout")
                       if getattr(self, name) != defaults[name]]
        if changed:
            flags = ", ".join(flag_of(ModelConfig, name) for name in changed)
            raise ValueError(f"{flags} cannot be used with --arch {self.arch} ("
                             + ("only an smp model has an encoder" if self.arch == "unet"
                                else "only this toolkit's U-Net has those settings") + ")")
        _require(self, "encoder_weights", self.encoder_weights in ("none", "imagenet"),
                 "imagenet or none")
        self.unet()                                # the U-Net fields checked as the U-Net does

    def unet(self) -> UNetConfig:
        """The U-Net's own config: its fields, and the channels and classes."""
        return UNetConfig(**{item.name: getattr(self, item.name) for item in fields(UNetConfig)})


def one_class_message(what: str, names: tuple[str, ...] | list[str]) -> str:
    """Why one class cannot be trained, and the fix: every pixel would be that class, and the
    score a perfect 1.0 that says nothing."""
    name = names[0] if names else "object"
    return (f"{what} names {len(names)} class; segmentation needs at least 2 (every pixel "
            f"of one class scores a perfect, meaningless mIoU 1.0). Name the background too: "
            f"--classes background,{name} (and --loss bce_dice for a binary task)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_weights(spec: Any) -> bool:
    if not isinstance(spec, str):              # a YAML list, say: refused by the flag's name
        return False
    if spec in MEDIAN_WEIGHTINGS:
        return True
    try:
        return all(float(w) >= 0 for w in spec.split(","))
    except ValueError:
        return False


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# config.yaml also records what training found and chose: the data check (class shares,
# ignored share, notices) and the runtime (the precision measured fastest). Written by
# training, skipped when the file is read back as a configuration.
RECORD_SECTIONS = ("data_check", "runtime", "plan")


@dataclass(frozen=True)
class RunConfig:
    """The three sections. ``model.in_channels`` and ``model.num_classes`` are set from the data
    when training starts (`fit` records the resolved values)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, UNetConfig):     # a U-Net's own config is a model section
            object.__setattr__(self, "model", ModelConfig(**asdict(self.model)))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts and lists (tuples become lists), for JSON and YAML."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the configuration") -> RunConfig:
        """Build from nested dicts (a YAML file or a checkpoint); unknown keys are errors."""
        unknown = set(values) - set(SECTIONS) - set(RECORD_SECTIONS)
        if unknown:
            raise ValueError(f"{source}: unknown sections {sorted(unknown)}; expected data, "
                             f"model, train")
        parts = {}
        for name, kind in SECTIONS.items():
            section = values.get(name) or {}
            if not isinstance(section, dict):
                raise ValueError(f"{source}: section {name} must be a mapping of settings, "
                                 f"found {section!r}")
            known = {f.name: f for f in fields(kind)}
            if set(section) - set(known):
                raise ValueError(f"{source}: unknown {name} settings "
                                 f"{sorted(set(section) - set(known))}; known: {sorted(known)}")
            settings = {}
            for key, value in section.items():
                try:
                    settings[key] = typed(known[key].type, value)
                except ValueError as error:
                    raise ValueError(f"{source}: {name}.{key} {error}") from None
            parts[name] = kind(**settings)
        return cls(**parts)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_config_file(path), str(path))

    def to_yaml(self, records: dict[str, Any] | None = None) -> str:
        """The YAML of ``--config``; ``records`` (keys of `RECORD_SECTIONS`) are added after
        the settings, as records that reading the file back skips."""
        from .files import yaml_text

        values = self.to_dict()
        for name, record in (records or {}).items():
            assert name in RECORD_SECTIONS, name
            values[name] = record
        return yaml_text(values)


# --- the rules of a run's settings ---------------------------------------------------------

# What a resumed run may change: when, where and how long it runs, not what it trains.
RESUMABLE_CHANGES = {"train.epochs", "train.max_steps", "train.time_budget",
                     "train.val_every", "train.patience", "train.progress", "train.device",
                     "train.max_nonfinite", "train.checkpoint_every", "train.tensorboard",
                     "train.data_changed", "data.workers"}
# The run folder names the run; the model's channels and classes are set from the data.
NOT_COMPARED_ON_RESUME = {"train.out", "model.in_channels", "model.num_classes"}
# The fields that set how long a run trains (`unetseg.run_length`).
LENGTH_FIELDS = ("epochs", "max_steps", "time_budget")


def layered_settings(base: dict, from_file: dict, flags: dict) -> dict:
    """The settings of a new run: a base's (the plan's), then a ``--config`` file's, then the
    flags' (each a nested ``{section: {name: value}}``; later layers win, sections merge).

    A length the file or the flags give (epochs, max_steps or time_budget) replaces the base's
    whole: the base's length would otherwise silently override their epochs.
    """
    values = {section: dict(settings or {}) for section, settings in base.items()}
    given = {*(from_file.get("train") or {}), *(flags.get("train") or {})}
    if given & set(LENGTH_FIELDS):
        for name in LENGTH_FIELDS:
            values.get("train", {}).pop(name, None)
    for layer in (from_file, flags):
        for section, settings in layer.items():
            values.setdefault(section, {}).update(settings or {})
    return values


# The settings that hold a path: compared as the files they name, recorded absolute.
PATH_SETTINGS = {"data.source", "data.root", "data.val", "data.spec"}


def same_path(one: str | None, other: str | None) -> bool:
    """Whether two path settings name the same thing: equal, or the same file or folder
    however typed (relative or absolute, a trailing slash). A built-in data name
    (``synthetic``, ``isbi``, ...) is a name, not a path."""
    if one == other:
        return True
    named = (*SYNTHETIC_SOURCES, *PRESET_SOURCES)
    if one is None or other is None or one in named or other in named:
        return False
    return Path(one).resolve() == Path(other).resolve()


def with_absolute_paths(data: DataConfig) -> DataConfig:
    """``data`` with its paths made absolute (a data name stays as it is), as a run records
    them: its config.yaml then resumes, and scores, from any working directory."""
    named = (*SYNTHETIC_SOURCES, *PRESET_SOURCES)
    changes = {}
    for key in PATH_SETTINGS:
        name = key.split(".")[1]
        value = getattr(data, name)
        if value is not None and value not in named:
            changes[name] = str(Path(value).resolve())
    return replace(data, **changes)


def check_resume_changes(recorded: RunConfig, requested: RunConfig, where: str) -> None:
    """Refuse a resumed run's settings that differ from the ``recorded`` ones (read from
    ``where``) in anything but `RESUMABLE_CHANGES`, naming each flag with both values. The
    run folder (``train.out``) names the run, and the model's channels and classes are set
    from the data: none of them is compared. Paths are compared as the folders they name,
    however they are typed (`same_path`)."""
    changed = []
    for section, kind in SECTIONS.items():
        for item in fields(kind):
            key = f"{section}.{item.name}"
            before = getattr(getattr(recorded, section), item.name)
            after = getattr(getattr(requested, section), item.name)
            same = (same_path(before, after) if key in PATH_SETTINGS else after == before)
            if not same and key not in RESUMABLE_CHANGES | NOT_COMPARED_ON_RESUME:
                changed.append(f"{flag_of(kind, item.name)} (recorded {before!r}, given "
                               f"{after!r})")
    if changed:
        allowed = sorted(flag_of(SECTIONS[key.split(".")[0]], key.split(".")[1])
                         for key in RESUMABLE_CHANGES)
        raise ValueError(f"{', '.join(changed)} cannot change when resuming (the checkpoint "
                         f"was trained with {where}); only {', '.join(allowed)} may")


def cli_fields(config_class: type) -> list:
    """The fields of a section that have a command-line flag (those with help text)."""
    return [item for item in fields(config_class) if "help" in item.metadata]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A run configuration file's sections as written (no defaults filled in)."""
    values = parse_yaml(Path(path).read_text(), path) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected sections data, model, train")
    return values


def parse_yaml(text: str, path: str | Path) -> Any:
    """YAML ``text`` read from ``path``; a ValueError naming the file, line and column when it
    does not parse (run configs and dataset files alike)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
