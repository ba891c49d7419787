"""How long a run trains: ``--epochs``, ``--max-steps`` or ``--time-budget``.

The learning-rate schedule (`unetseg.optim.lr_factor`) spans the planned optimiser steps, so
a run ends at the bottom of its cosine whichever limit it has:

- ``--epochs E``: E passes over the training set, ``E * steps_per_epoch`` steps;
- ``--max-steps N``: N steps (the last epoch stops part-way); ``--epochs`` is then ignored;
- ``--time-budget M``: about M minutes of wall time, validation and checkpoints included. The
  steps that fit are not known at the start: the plan is re-estimated from the pace measured
  so far (seconds per step, everything included), so the cosine ends as the budget does. With
  ``--max-steps`` too, whichever comes first ends the run.

Only the step limit is exact: a timed run takes its last validation and checkpoint after
its last step, so it may overrun the budget by about one validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RunLength"]

# Before a timed run has measured its pace it plans this many epochs; the first estimate
# (after a few steps, while the warm-up still runs) replaces the guess. The guess is no limit:
# a timed run without --max-steps may take as many steps as its budget holds.
UNMEASURED_EPOCHS = 1000
NO_LIMIT = 2**62


@dataclass
class RunLength:
    """The planned steps of a run and its warm-up; `estimate` re-plans a timed run.

    ``step_limit`` is the hard limit (the epochs' steps, or ``--max-steps``); ``total_steps``
    the current plan, equal to it unless a time budget cuts it shorter.
    """

    steps_per_epoch: int
    step_limit: int
    warmup_steps: int
    budget_seconds: float = 0.0
    total_steps: int = 0

    def __post_init__(self) -> None:
        if not self.total_steps:
            self.total_steps = self.step_limit

    @classmethod
    def from_config(cls, train, steps_per_epoch: int) -> RunLength:
        """The plan of a `TrainConfig` (``epochs``, ``max_steps``, ``time_budget``,
        ``warmup_epochs``) with ``steps_per_epoch`` batches per epoch."""
        budget = 60.0 * train.time_budget
        if train.max_steps:
            limit = train.max_steps
        elif budget:
            limit = NO_LIMIT
        else:
            limit = train.epochs * steps_per_epoch
        planned = min(limit, UNMEASURED_EPOCHS * steps_per_epoch) if budget else limit
        warmup = max(1, round(train.warmup_epochs * steps_per_epoch))
        return cls(steps_per_epoch, limit, min(warmup, max(1, planned - 1)), budget, planned)

    @property
    def timed(self) -> bool:
        return self.budget_seconds > 0

    @property
    def epochs(self) -> int:
        """Epochs the plan spans (the last may be partial): the "E" of "epoch e/E"."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def finished(self, steps: int) -> bool:
        return steps >= self.total_steps

    def estimate(self, steps: int, seconds: float) -> None:
        """Re-plan a timed run after ``steps`` steps in ``seconds`` of wall time: as many
        steps as the budget holds at that pace (at least those taken, at most the limit)."""
        if not self.timed or steps < 1:
            return
        fits = math.floor(self.budget_seconds * steps / max(seconds, 1e-9))
        self.total_steps = max(steps, min(self.step_limit, fits))
        # A budget shorter than the warm-up still ends on the cosine's last step.
        self.warmup_steps = min(self.warmup_steps, max(1, self.total_steps - 1))

    def seconds_left(self, steps: int, seconds: float) -> float:
        """Wall time to the planned end at the pace so far."""
        return (self.total_steps - steps) * seconds / steps if steps else 0.0
