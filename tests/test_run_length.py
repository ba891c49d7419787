"""How long a run trains (`unetseg.run_length.RunLength`): epochs, --max-steps and a time budget
re-planned from the pace measured."""

from __future__ import annotations

from unetseg.config import TrainConfig
from unetseg.run_length import RunLength


def test_a_timed_plan_fits_the_steps_its_pace_allows():
    plan = RunLength.from_config(TrainConfig(time_budget=1.0, warmup_epochs=1.0), 12)
    assert plan.timed and plan.warmup_steps == 12
    plan.estimate(10, 5.0)                   # 0.5 s a step: 120 steps fit in 60 s
    assert plan.total_steps == 120 and plan.epochs == 10
    plan.estimate(100, 70.0)                 # the budget is spent: stop where it stands
    assert plan.total_steps == 100 and plan.finished(100)
    capped = RunLength.from_config(TrainConfig(time_budget=1.0, max_steps=30), 12)
    capped.estimate(10, 1.0)                 # 600 steps would fit; --max-steps says 30
    assert capped.total_steps == 30
    tiny = RunLength.from_config(TrainConfig(time_budget=0.01, warmup_epochs=2.0), 12)
    tiny.estimate(2, 0.3)                    # 4 steps fit: the warm-up shrinks below them
    assert tiny.total_steps == 4 and tiny.warmup_steps == 3
    one_step_epochs = RunLength.from_config(TrainConfig(time_budget=30.0), 1)
    one_step_epochs.estimate(10, 1.0)        # the 1000-epoch guess is no limit: 18,000 fit
    assert one_step_epochs.total_steps == 18_000
    untimed = RunLength.from_config(TrainConfig(epochs=3), 12)
    untimed.estimate(10, 1e6)                # epochs are exact: the clock changes nothing
    assert untimed.total_steps == 36 and not untimed.timed
