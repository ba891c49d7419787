"""What a dataset's masks mean: the dataset file and `DatasetSpec`.

The dataset file (``dataset.yaml``, ``dataset.yml`` or ``dataset.json`` beside the folders, or
given explicitly) says what the mask values mean::

    classes: [background, road, building]     # distinct names; their number is num_classes
    colours: [[0, 0, 0], [128, 64, 128], [128, 0, 0]]   # RGB per class: for RGB masks and overlays
    ignore_index: 255                          # mask value that counts nowhere
    ignore_colour: [0, 0, 0]                   # optional: RGB masks' void colour -> ignore_index
    remap: {0: 1, 255: 0}                      # optional: stored value -> class index

(``colors`` and ``ignore_color`` are accepted too.) Every key is checked when the file is read,
and an error names the file and the key; a file that does not parse names its line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import parse_yaml
from .io import read_mask

__all__ = ["DATASET_FILES", "DatasetSpec", "default_colours", "find_spec_file",
           "read_spec_file"]

DATASET_FILES = ("dataset.yaml", "dataset.yml", "dataset.json")
Colour = tuple[int, int, int]


def default_colours(num_classes: int) -> list[Colour]:
    """Distinct colours for classes without given ones (a fixed, well-spread hue sequence)."""
    import colorsys

    colours = [(0, 0, 0)]
    for c in range(1, num_classes):
        hue = (c * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours[:num_classes]


# ---------------------------------------------------------------- what the mask values mean

def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_colour(colour: Any, key: str) -> None:
    if not (isinstance(colour, (tuple, list)) and len(colour) == 3
            and all(_is_int(v) and 0 <= v <= 255 for v in colour)):
        raise ValueError(f"{key} is {_plain(colour)}; expected [r, g, b], three whole numbers "
                         f"0..255")


def _plain(value: Any) -> str:
    """A value as the user wrote it in YAML/JSON: lists, not tuples."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


@dataclass(frozen=True)
class DatasetSpec:
    """What the masks of a dataset mean: class names and colours, ignore label, value remap.

    ``remap`` maps stored mask values to class indices or ``ignore_index``; values it does not
    name are classes as stored. ``ignore_colour`` (RGB masks only) is a colour whose pixels
    become ``ignore_index``. Raises ValueError naming the key for any inconsistent value.
    """

    class_names: tuple[str, ...]
    colours: tuple[Colour, ...] = ()
    ignore_index: int = 255
    remap: dict[int, int] = field(default_factory=dict)
    ignore_colour: Colour | None = None

    def __post_init__(self) -> None:
        self._check_classes()
        if not self.colours:
            object.__setattr__(self, "colours", tuple(default_colours(len(self.class_names))))
        if len(self.colours) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.colours)} colours")
        for c, colour in enumerate(self.colours):
            _check_colour(colour, f"colours[{c}] ({self.class_names[c]})")
        object.__setattr__(self, "colours", tuple(tuple(int(v) for v in c) for c in self.colours))
        if not _is_int(self.ignore_index):
            raise ValueError(f"ignore_index is {self.ignore_index!r}; expected a whole number "
                             f"(255 is usual)")
        if 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(f"ignore_index {self.ignore_index} is the label of class "
                             f"{self.class_names[self.ignore_index]!r}; expected a value outside "
                             f"0..{len(self.class_names) - 1} (255 is usual)")
        self._check_remap()
        if self.ignore_colour is not None:
            self._check_ignore_colour()

    def _check_classes(self) -> None:
        if not self.class_names:
            raise ValueError("a dataset needs at least one class name")
        for c, name in enumerate(self.class_names):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"classes[{c}] is {name!r}; expected a non-empty name (quote "
                                 f"names YAML would read as numbers or yes/no: '1', 'no')")
        repeated = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
        if repeated:
            raise ValueError(f"classes name {', '.join(map(repr, repeated))} more than once; "
                             f"expected distinct names, one per class index")

    def _check_remap(self) -> None:
        labels = f"a class 0..{self.num_classes - 1} or ignore_index {self.ignore_index}"
        for stored, label in self.remap.items():
            if not (_is_int(stored) and _is_int(label)):
                raise ValueError(f"remap {stored!r}: {label!r} must map a whole number (a "
                                 f"stored mask value) to a whole number ({labels})")
            if label != self.ignore_index and not 0 <= label < self.num_classes:
                raise ValueError(f"remap {{{stored}: {label}}}: {label} is not {labels}")

    def _check_ignore_colour(self) -> None:
        _check_colour(self.ignore_colour, "ignore_colour")
        colour = tuple(self.ignore_colour)
        if colour in self.colours:
            name = self.class_names[self.colours.index(colour)]
            raise ValueError(f"ignore_colour {list(colour)} is the colour of class {name!r}; "
                             f"expected a colour no class uses (give each class its colour in "
                             f"'colours')")
        object.__setattr__(self, "ignore_colour", tuple(int(v) for v in colour))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "dataset file") -> DatasetSpec:
        """A spec from a dataset file's mapping; ValueError naming ``source`` and the key."""
        known = {"classes", "colours", "colors", "ignore_index", "ignore_colour",
                 "ignore_color", "remap"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected {sorted(known)}")
        if "classes" not in values:
            raise ValueError(f"{source}: needs 'classes', a list of class names")
        for british, american in (("colours", "colors"), ("ignore_colour", "ignore_color")):
            if british in values and american in values:
                raise ValueError(f"{source}: gives both {british!r} and {american!r}; keep one")
        try:
            colours = values.get("colours", values.get("colors")) or ()
            ignore_colour = values.get("ignore_colour", values.get("ignore_color"))
            return cls(class_names=_class_names(values["classes"]),
                       colours=tuple(_as_colour(c, f"colours[{i}]") for i, c in enumerate(
                           _as_list(colours, "colours", "[[0, 0, 0], [255, 255, 255]]"))),
                       ignore_index=values.get("ignore_index", 255),
                       remap=_remap(values.get("remap") or {}),
                       ignore_colour=None if ignore_colour is None
                       else _as_colour(ignore_colour, "ignore_colour"))
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSpec:
        return cls.from_dict(read_spec_file(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        values = {"classes": list(self.class_names), "colours": [list(c) for c in self.colours],
                  "ignore_index": self.ignore_index, "remap": dict(self.remap)}
        if self.ignore_colour is not None:
            values["ignore_colour"] = list(self.ignore_colour)
        return values

    def decode_mask(self, path: str | Path) -> np.ndarray:
        """Mask ``path`` as int64 (H, W) stored values, before ``remap``: grey and palette
        masks as stored, RGB masks through ``colours`` (``ignore_colour`` -> ``ignore_index``)."""
        return read_mask(path, np.asarray(self.colours), self.ignore_colour, self.ignore_index)

    def apply_remap(self, mask: np.ndarray) -> np.ndarray:
        """Stored values -> labels, for a mask or for an array of distinct values alike."""
        if not self.remap:
            return mask
        out = mask.copy()
        for stored, label in self.remap.items():
            out[mask == stored] = label              # compare with the input: no chaining
        return out


def _as_list(value: Any, key: str, example: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} is {value!r}; expected a list, e.g. {example}")
    return list(value)


def _class_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        # YAML reads `classes: cell, membrane` as one string, which would iterate as letters.
        names = ", ".join(name.strip() for name in value.split(","))
        raise ValueError(f"classes is the text {value!r}, not a list; write a list, e.g. "
                         f"classes: [{names}]")
    return tuple(_as_list(value, "classes", "[background, road, building]"))


def _as_colour(value: Any, key: str) -> Colour:
    _check_colour(value, key)
    return tuple(int(v) for v in value)


def _remap(value: Any) -> dict[int, int]:
    if not isinstance(value, dict):
        raise ValueError(f"remap is {value!r}; expected a mapping of stored value to class "
                         f"index, e.g. {{255: 1}}")
    remap = {}
    for stored, label in value.items():
        # JSON keys are always strings: "255" is the stored value 255.
        if isinstance(stored, str) and stored.strip().lstrip("-").isdigit():
            stored = int(stored)
        if not (_is_int(stored) and _is_int(label)):
            raise ValueError(f"remap {stored!r}: {label!r} must map a whole number (a stored "
                             f"mask value) to a whole number (a class index or ignore_index)")
        remap[int(stored)] = int(label)
    return remap


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping a dataset file (YAML or JSON) holds; ValueError naming the file, and the
    line where it does not parse."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the dataset file ({error})") from None
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON at line {error.lineno}, column "
                             f"{error.colno}: {error.msg}") from None
    else:
        values = parse_yaml(text, path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping with 'classes', found {type(values)}")
    return values


def find_spec_file(root: Path) -> Path | None:
    """The folder's dataset file, or None; two (dataset.yaml and dataset.json) are refused
    rather than one silently ignored."""
    found = [root / name for name in DATASET_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"{root} holds {' and '.join(p.name for p in found)}; expected one "
                         f"dataset file: remove the other")
    return found[0] if found else None


# ---------------------------------------------------------------- files and pairs
