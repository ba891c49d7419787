"""Scoring a model over a dataset (`unetseg.evaluation.evaluate`): one confusion matrix over
every batch, and the run's own loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from unetseg.checkpoint import load_model
from unetseg.data.build import build_datasets
from unetseg.evaluation import evaluate
from unetseg.losses import make_loss
from unetseg.runtime import Runtime
from unetseg.train import fit


class Scaled(torch.nn.Module):
    """A stand-in model: logits that are a fixed 1 x 1 mix of the image's channels."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = torch.nn.Parameter(torch.tensor([[2.0, -1.0], [0.5, 1.5], [-1.0, 0.2]]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kc,nchw->nkhw", self.mix, images)


def test_the_scores_are_one_matrix_over_every_batch_not_a_mean_of_batches():
    """The matrix is counted by hand with numpy over the whole set (ignored pixels nowhere), and
    the batch size changes no count."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(5, 2, 6, 7, generator=generator)
    masks = torch.randint(0, 3, (5, 6, 7), generator=generator)
    masks[0, :2] = 255
    model = Scaled()
    with torch.no_grad():
        labels = model(images).argmax(1).numpy()
    keep = masks.numpy() != 255
    expected = np.bincount(3 * masks.numpy()[keep] + labels[keep], minlength=9).reshape(3, 3)
    for batch_size in (1, 2, 5):
        loader = DataLoader(TensorDataset(images, masks), batch_size=batch_size)
        scores = evaluate(model, loader, 3).scores
        np.testing.assert_array_equal(scores.matrix.numpy(), expected)
        iou = np.diag(expected) / (expected.sum(0) + expected.sum(1) - np.diag(expected))
        assert scores.miou == pytest.approx(iou.mean())


def test_validation_loss_is_the_training_objective(make_smallest_config, tmp_path):
    """val_loss uses the run's own loss: with --dice-weight 0, CE + Dice is plain CE, so the
    logged validation loss equals the cross-entropy of the saved model on the validation set."""
    config = make_smallest_config(tmp_path / "ce_only", dice_weight=0.0, class_weights="1,2,3")
    result = fit(config)
    model, meta = load_model(result.run_dir / "last.safetensors")
    loader = DataLoader(build_datasets(config.data).val, batch_size=config.data.batch_size)
    weights = torch.tensor([1.0, 2.0, 3.0])
    ce = evaluate(model, loader, 3, make_loss("ce", class_weights=weights),
                  Runtime(torch.device("cpu"), meta["precision"], True))   # as the run did
    assert result.history[0]["val_loss"] == pytest.approx(ce.loss, rel=1e-6)
