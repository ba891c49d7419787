"""Prediction on images of any size: whole, or in overlapping tiles with blended seams.

A U-Net's activations grow with H x W x channels, so a large image goes through in tiles.
Tiles overlap; each tile's class probabilities are weighted by an importance map (a Gaussian
centred on the tile, as nnU-Net and MONAI do, or a constant) and added into an accumulator,
which is divided by the summed weights. Pixels near a tile's border, where the network sees
the least context, thus count least, and no seam appears.

Memory stays bounded: tiles are taken one row of tiles (a band) at a time, the accumulator
covers one band, and rows that no later tile touches are finished (argmax) and emitted at once.
Peak memory is about the input image, the uint8 mask and one band, never a float32
(C, H, W) array of the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from .architectures import size_multiple
from .calibration import probabilities as class_probabilities
from .checkpoint import load_model
from .data.io import scale_to_unit
from .fastpath import fold_batchnorm
from .memory import check_fits, prediction_estimate
from .metrics import labels_from_logits
from .precision import decide_precision, measure_forward
from .progress import counter
from .runtime import autocast, pick_device

__all__ = ["Segmenter", "load_segmenter", "fold_batchnorm", "tile_starts", "importance_map",
           "predict", "check_options", "prediction_precision", "Prediction", "BLENDS",
           "DEFAULT_TILE", "tile_for"]

BLENDS = ("gaussian", "constant")
DEFAULT_TILE = 256
# nnU-Net's and MONAI's choice: sigma = tile side / 8.
GAUSSIAN_SIGMA_SCALE = 1 / 8
# The weight of a tile's corner pixels, relative to its centre. Keeps the weights of pixels
# that only tile corners reach (image corners) well away from float underflow.
MIN_WEIGHT = 1e-3


# --- the model as prediction sees it ------------------------------------------------------

class Segmenter(nn.Module):
    """A trained network plus what it needs around it: normalisation, class names, colours.

    ``forward`` takes images in [0, 1], float32 (N, C, H, W), normalises them with the training
    statistics and returns the network's logits. Exported to ONNX, the normalisation goes with
    it, so every runtime feeds the same [0, 1] images.
    """

    def __init__(self, network: nn.Module, mean, std, class_names, colours,
                 training_crop: int | None = None, temperature: float = 1.0) -> None:
        super().__init__()
        self.network = network
        self.training_crop = training_crop      # the side of the crops it was trained on
        # Fitted on the validation split after training (`unetseg.calibration`); 1: none.
        self.temperature = temperature
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[None, :, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[None, :, None, None])
        self.class_names = list(class_names)
        self.colours = [tuple(c) for c in colours]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self.mean.shape[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def load_segmenter(path, device: torch.device | str = "cpu", fold: bool = True) -> Segmenter:
    """The `Segmenter` of a checkpoint, in eval mode, BatchNorm folded (``fold``)."""
    network, meta = load_model(path, "cpu")
    if fold:
        network = fold_batchnorm(network)
    norm = meta["normalisation"]
    crop = meta.get("run_config", {}).get("data", {}).get("size")
    temperature = (meta.get("calibration") or {}).get("temperature", 1.0)
    segmenter = Segmenter(network, norm["mean"], norm["std"], meta["class_names"],
                          meta["colours"], training_crop=crop, temperature=temperature)
    # channels_last: the layout the CPU's and the GPU's convolution kernels run fastest in.
    return segmenter.to(device, memory_format=torch.channels_last).eval()


# --- the tile grid and the weights --------------------------------------------------------

def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of ``tile``-long windows covering ``[0, max(length, tile))``.

    Consecutive windows overlap by about ``overlap`` of a tile (the stride is
    ``round(tile * (1 - overlap))``, at least 1); the last window is moved back to end at the
    edge instead of running past it, so no window needs padding unless the image is smaller
    than one tile.
    """
    if tile < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"expected tile >= 1 and 0 <= overlap < 1, found {tile} and {overlap}")
    if length <= tile:
        return [0]
    stride = max(1, round(tile * (1.0 - overlap)))
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def importance_map(tile: int, blend: str = "gaussian") -> np.ndarray:
    """(tile, tile) float32 weights: a Gaussian with sigma = tile / 8 centred on the tile and
    scaled to 1 at the centre, clipped below at `MIN_WEIGHT`; or all ones for ``"constant"``."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, found {blend!r}")
    if blend == "constant":
        return np.ones((tile, tile), dtype=np.float32)
    centre = (tile - 1) / 2
    sigma = tile * GAUSSIAN_SIGMA_SCALE
    profile = np.exp(-((np.arange(tile) - centre) ** 2) / (2 * sigma**2))
    return np.maximum(np.outer(profile, profile), MIN_WEIGHT).astype(np.float32)


# --- from logits to probabilities ---------------------------------------------------------

FLIPS = ((), (-1,), (-2,), (-2, -1))       # none, horizontal, vertical, both


def _run(model: Callable, batch: torch.Tensor, tta: bool, device: torch.device,
         precision: str, temperature: float) -> torch.Tensor:
    """Probabilities of a batch, of the logits divided by ``temperature``; with ``tta``,
    averaged over the four flips."""
    flips = FLIPS if tta else FLIPS[:1]
    total = None
    for dims in flips:
        x = batch.flip(dims) if dims else batch
        with autocast(device, precision):
            probs = class_probabilities(model(x), temperature)
        probs = probs.flip(dims) if dims else probs
        total = probs if total is None else total + probs
    return total / len(flips)


def _as_batch(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(n, H, W, C) raw pixels -> float32 (n, C, H, W) in [0, 1] on ``device``, in the
    channels_last layout (which (n, H, W, C) memory already is: the permute copies nothing)."""
    tensor = torch.from_numpy(np.ascontiguousarray(scale_to_unit(pixels))).permute(0, 3, 1, 2)
    return tensor.to(device).contiguous(memory_format=torch.channels_last)


def _reflect_pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (H, W, C) at the bottom and right to (height, width) by mirroring the edge
    (``edge`` repetition for a 1-pixel side, which has nothing to mirror)."""
    pad_h, pad_w = height - array.shape[0], width - array.shape[1]
    if pad_h <= 0 and pad_w <= 0:
        return array
    widths = ((0, max(pad_h, 0)), (0, max(pad_w, 0)), (0, 0))
    if min(array.shape[:2]) < 2:
        return np.pad(array, widths, mode="edge")
    # numpy's reflect mode repeats the reflection when the padding exceeds the side.
    return np.pad(array, widths, mode="reflect")


# --- prediction ---------------------------------------------------------------------------

@dataclass
class Prediction:
    """A predicted mask (uint8 (H, W) class indices) and, if asked for, the class
    probabilities (float16 (C, H, W)) and the confidence (float32 (H, W): the top class's
    probability)."""

    mask: np.ndarray
    probs: np.ndarray | None = None
    confidence: np.ndarray | None = None


def _check_image(image: np.ndarray, in_channels: int | None) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"predict expects an (H, W, C) or (H, W) image, found shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16) and image.dtype.kind != "f":
        raise ValueError(f"predict expects uint8, uint16 or float pixels in [0, 1], found "
                         f"{image.dtype}")
    if in_channels is not None and image.shape[-1] != in_channels:
        raise ValueError(f"the model expects {in_channels} channels, found {image.shape[-1]} "
                         f"in an image of shape {image.shape}")
    return image


@torch.inference_mode()
def predict(
    model: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, *,
    tile: int | None = None, overlap: float = 0.25, blend: str = "gaussian",
    batch_size: int = 4, tta: bool = False, device: torch.device | str | None = None,
    precision: str = "auto", probs: bool | np.ndarray = False, progress: bool = False,
    temperature: float = 1.0, confidence: bool = False,
) -> Prediction:
    """Segment one image of any size.

    Args:
        model: maps float32 (N, C, H, W) images in [0, 1] to logits (N, classes, H, W), one
            logit for a binary model; a `Segmenter` (from `load_segmenter`) or an ONNX runner.
        image: (H, W, C) or (H, W) array, uint8 / uint16 (scaled to [0, 1] a band at a time)
            or float in [0, 1].
        tile: tile side in pixels; None sends the whole image through at once (padded to a
            multiple of 16 and cropped back), which needs memory in proportion to H x W. An
            image that fits in one tile is predicted whole: padded out to the tile it would
            see more padding than image, and differ from what evaluate scores.
        overlap: share of a tile shared with its neighbour (0.25 by default; 0.5 is smoother
            and four times the work of 0).
        blend: ``"gaussian"`` (centre-weighted) or ``"constant"`` tile weights.
        batch_size: tiles per forward pass.
        tta: average the probabilities over horizontal, vertical and both flips (4x the work).
        device: where the model runs (default: the model's own device, else CPU).
        precision: ``"auto"`` (bf16 autocast on GPUs; on a CPU with native bf16, the faster
            of fp32 and bf16, measured once and cached; else fp32), ``"fp32"`` or ``"bf16"``.
            bf16 changes a few near-tied pixels (see README).
        probs: also return the float16 (C, H, W) probabilities; or a float16 (C, H, W) array
            to write them into as rows finish (an ``np.memmap`` keeps them on disk).
        progress: show a progress bar over bands of tiles.
        temperature: the probabilities are those of the logits divided by it, before tiles
            and flips are blended (a checkpoint's fitted temperature calibrates them; the
            argmax of one tile does not change, a pixel tied between tiles may).
        confidence: also return the top class's probability per pixel, blended as above.

    Returns:
        `Prediction` with the uint8 (H, W) mask and, as asked, the probabilities and the
        confidence.
    """
    check_options(tile, overlap, blend, batch_size)
    device = _model_device(model) if device is None else torch.device(device)
    image = _check_image(image, getattr(model, "in_channels", None))
    if tile is not None and max(image.shape[:2]) <= tile:
        tile = None                            # one tile holds it: the whole image, as is
    if tile is not None:                       # before timing precisions at the tile size
        classes = getattr(model, "num_classes", 2)
        check_fits(prediction_estimate(tile, image.shape[1], classes, batch_size,
                                       image.shape[2]), device, "--tile or --batch-size")
    precision = prediction_precision(model, precision, tile, batch_size, device)
    wanted = Wanted(probs, confidence)
    if tile is None:
        return _predict_whole(model, image, tta, device, precision, temperature, wanted)
    return _predict_tiled(model, image, tile, overlap, blend, batch_size, tta, device,
                          precision, temperature, wanted, progress)


def tile_for(training_crop: int | None) -> int:
    """The default prediction tile of a network trained on ``training_crop``-pixel crops: at
    least that crop (a multiple of 32), so that a tile shows the network as much context as
    training did; and at least `DEFAULT_TILE`, because fewer, larger tiles spend less of the
    work on their overlaps."""
    return max(DEFAULT_TILE, 32 * math.ceil((training_crop or 0) / 32))


def check_options(tile: int | None, overlap: float, blend: str, batch_size: int) -> None:
    """Refuse prediction options that cannot work, naming the flag: checked once, before the
    first image, rather than failing on every image of a folder."""
    if tile is not None and (not isinstance(tile, int) or tile < 1):
        raise ValueError(f"--tile must be a whole number >= 1 (0 for whole images), found "
                         f"{tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be >= 0 and < 1, found {overlap}")
    if blend not in BLENDS:
        raise ValueError(f"--blend must be one of {', '.join(BLENDS)}, found {blend!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a whole number >= 1, found {batch_size}")


def prediction_precision(model, requested: str, tile: int | None, batch_size: int,
                         device: torch.device) -> str:
    """`unetseg.precision.decide_precision` for prediction: forward passes of the model timed
    on ``batch_size`` tiles (a whole image at 256 x 256) where ``"auto"`` needs measuring."""
    network = model if isinstance(model, nn.Module) else None
    return decide_precision(requested, device, network, batch_size if tile else 1, tile or 256,
                            measure_forward).precision


def _model_device(model) -> torch.device:
    parameter = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else pick_device("cpu")


class Wanted(NamedTuple):
    """What a prediction returns beside the mask: ``probs`` (False, True or the caller's
    array to fill) and ``confidence``."""

    probs: bool | np.ndarray
    confidence: bool


def _predict_whole(model, image, tta, device, precision, temperature,
                   wanted: Wanted) -> Prediction:
    height, width = image.shape[:2]
    # Pooling `depth` times halves the size each time: a multiple of 2^depth keeps every level
    # exact (16 for the default depth of 4, or for a model whose depth is not known).
    network = getattr(model, "network", None)
    multiple = size_multiple(network) if network is not None else 16
    padded = _reflect_pad(image, math.ceil(height / multiple) * multiple,
                          math.ceil(width / multiple) * multiple)
    batch = _as_batch(padded[None], device)
    probabilities = _run(model, batch, tta, device, precision,
                         temperature)[0, :, :height, :width]
    mask = labels_from_logits(probabilities, class_dim=0).to(torch.uint8).cpu().numpy()
    out_probs = _probs_target(wanted.probs, probabilities.shape[0], height, width)
    if out_probs is not None:
        out_probs[:] = probabilities.half().cpu().numpy()
    confidence = (probabilities.max(0).values.cpu().numpy() if wanted.confidence else None)
    return Prediction(mask, out_probs, confidence)


def _probs_target(want, classes: int, height: int, width: int) -> np.ndarray | None:
    """Where probabilities go: None, a new float16 array, or the caller's array (checked)."""
    if want is False or want is None:
        return None
    if want is True:
        return np.empty((classes, height, width), dtype=np.float16)
    if tuple(want.shape) != (classes, height, width):
        raise ValueError(f"the probabilities array must have shape {(classes, height, width)}, "
                         f"found {tuple(want.shape)}")
    return want


def _predict_tiled(model, image, tile, overlap, blend, batch_size, tta, device, precision,
                   temperature, wanted: Wanted, progress) -> Prediction:
    height, width = image.shape[:2]
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    band_width = max(width, tile)
    weights = torch.from_numpy(importance_map(tile, blend)).to(device)
    mask = np.empty((height, width), dtype=np.uint8)
    confidence = np.empty((height, width), dtype=np.float32) if wanted.confidence else None
    out_probs = None
    # The accumulators cover one band of `tile` rows starting at the current tile row.
    acc = weight_sum = None
    # A bar per image in a terminal; never lines in a log (predict logs per image).
    bar = counter(len(rows) * len(cols), "tiles", progress, unit="tile", lines=False,
                  leave=False)
    for r, top in enumerate(rows):
        if acc is not None:                       # move the band down to start at `top`
            shift = top - rows[r - 1]
            acc = torch.roll(acc, -shift, dims=1)
            acc[:, -shift:] = 0
            weight_sum = torch.roll(weight_sum, -shift, dims=0)
            weight_sum[-shift:] = 0
        band = _reflect_pad(image[top:top + tile], tile, band_width)
        for start in range(0, len(cols), batch_size):
            lefts = cols[start:start + batch_size]
            batch = _as_batch(np.stack([band[:, x:x + tile] for x in lefts]), device)
            tile_probs = _run(model, batch, tta, device, precision, temperature)
            if acc is None:
                acc = torch.zeros(tile_probs.shape[1], tile, band_width, device=device)
                weight_sum = torch.zeros(tile, band_width, device=device)
            for probs_one, x in zip(tile_probs, lefts):
                acc[:, :, x:x + tile] += probs_one * weights
                weight_sum[:, x:x + tile] += weights
            bar.update(len(lefts))
        # Rows above the next tile row are final: no later tile reaches them.
        done = (rows[r + 1] if r + 1 < len(rows) else top + tile) - top
        done = min(done, height - top)
        finished = acc[:, :done, :width] / weight_sum[:done, :width]
        labels = labels_from_logits(finished, class_dim=0)
        mask[top:top + done] = labels.to(torch.uint8).cpu().numpy()
        if confidence is not None:
            confidence[top:top + done] = finished.max(0).values.cpu().numpy()
        if wanted.probs is not False and out_probs is None:
            out_probs = _probs_target(wanted.probs, finished.shape[0], height, width)
        if out_probs is not None:
            out_probs[:, top:top + done] = finished.half().cpu().numpy()
    bar.close()
    return Prediction(mask, out_probs, confidence)
