"""The optimiser and its schedule (`unetseg.optim`): the warm-up and decay of `lr_factor`, the
weight-decay groups, and a schedule that follows a re-planned run length."""

from __future__ import annotations

import pytest
import torch

from unetseg.config import TrainConfig
from unetseg.model import UNet
from unetseg.optim import follow_schedule, lr_factor, make_optimizer, parameter_groups
from unetseg.run_length import RunLength


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    total, warmup = 100, 10
    factors = [lr_factor(step, total, warmup, "cosine") for step in range(total + 1)]
    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)                  # half-way through the decay
    assert factors[100] == pytest.approx(0.0, abs=1e-12)
    decay = factors[10:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_onecycle_warms_up_from_a_25th_and_ends_where_torch_onecycle_ends():
    """By hand: the warm-up is a line from peak/25 (one step before step 0) to the peak, the
    decay a cosine to peak/25/1e4. torch's OneCycleLR (defaults, max_lr 1) is the oracle for the
    two end points."""
    total, warmup = 100, 30
    start, end = 1 / 25, 1 / 25 / 1e4
    factors = [lr_factor(step, total, warmup, "onecycle") for step in range(total + 1)]
    assert factors[0] == pytest.approx(start + (1 - start) / warmup)
    assert factors[14] == pytest.approx(start + (1 - start) * 15 / warmup)
    assert factors[29] == pytest.approx(1.0) and factors[30] == pytest.approx(1.0)
    assert factors[65] == pytest.approx(end + (1 - end) * 0.5)      # half-way through the decay
    decay = factors[30:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total,
                                                         pct_start=0.3)
    torch_first = optimizer.param_groups[0]["lr"]
    for _ in range(total - 1):
        optimizer.step()
        torch_schedule.step()
    torch_last = optimizer.param_groups[0]["lr"]
    assert factors[0] - (factors[1] - factors[0]) == pytest.approx(torch_first)
    assert factors[total] == pytest.approx(torch_last)


def test_weight_decay_spares_biases_and_norm_parameters():
    model = UNet(3, 2, base=4)
    decayed, spared = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and decayed["params"]
    assert all(p.ndim == 1 for p in spared["params"]) and spared["params"]
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norm_weights <= {id(p) for p in spared["params"]}
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))


def test_a_changed_plan_takes_effect_before_the_next_step():
    """The scheduler sets the learning rate once per step, from the plan of that moment; after
    a re-plan, `follow_schedule` makes the next step use the new plan's rate."""
    model = torch.nn.Conv2d(1, 1, 3)
    plan = RunLength.from_config(TrainConfig(epochs=10, lr=1.0, warmup_epochs=1.0), 10)
    optimizer, scheduler = make_optimizer(model, TrainConfig(lr=1.0), plan)
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_factor(50, 100, 10, "cosine"))
    plan.total_steps = 50                     # the budget is spent: the plan ends here
    follow_schedule(scheduler)
    assert [group["lr"] for group in optimizer.param_groups] == [0.0, 0.0]
