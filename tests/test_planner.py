"""The plan's decisions (`unetseg.planner`), each forced by a fingerprint built for it, with a
step timer standing in for the machine; every plan is a configuration `train` accepts."""

from __future__ import annotations

import pytest

from unetseg.config import ModelConfig, RunConfig
from unetseg.data.fingerprint import ClassPrint, Fingerprint
from unetseg.distributed import epoch_parts
from unetseg.planner import BASES, MIN_STEPS, TRAIN_SHARE, VAL_SHARE, VALIDATIONS, Plan, plan_run


def cls(name: str, share: float, extent: float = 0.0, edge: float = 0.2, images: int = 10,
        small: float | None = None) -> ClassPrint:
    """A class holding ``share`` of 10^7 pixels, in components of p95 extent ``extent`` (p5
    ``small``, a tenth of it by default)."""
    low = extent / 10 if small is None else small
    return ClassPrint(name, int(share * 1e7), share, images, 100 if extent else 0,
                      (1.0, 10.0, 100.0), (low, extent / 2, extent), edge)


def fingerprint(*classes: ClassPrint, side: int = 512, images: int = 100,
                empty: float = 0.0) -> Fingerprint:
    return Fingerprint(images, (side, side, side), (side, side, side), 3, "8-bit",
                       (0.5,) * 3, (0.2,) * 3, tuple(classes), 0.0, empty)


def timer(seconds_at_base_16: float):
    """Step seconds growing with the base's square, as the convolutions' work does."""
    return lambda model, crop, batch: seconds_at_base_16 * (model.base / 16) ** 2


def plan(fp: Fingerprint, budget: float = 15.0, step: float = 0.1, val_images: int = 20) -> Plan:
    made = plan_run(fp, val_images=val_images, budget=budget, timer=timer(step))
    settings = made.settings()                            # checked as train --config will
    RunConfig.from_dict({**settings, "data": {"source": "a_folder", **settings["data"]}})
    return made


def chosen(made: Plan) -> dict:
    return {d.setting: d.value for d in made.decisions}


BLOBS = fingerprint(cls("background", 0.7), cls("car", 0.2, extent=180),
                    cls("road", 0.1, extent=300))


def test_the_crop_frames_the_large_objects_with_context():
    decided = chosen(plan(BLOBS))
    assert decided["data.size"] == 480                    # 1.5 x 300, up to a multiple of 32
    assert decided["model.depth"] == 4
    assert decided["data.batch_size"] == 2                # about 256k pixels, at least 2


def test_thin_structures_get_local_context_and_a_narrow_scale_range():
    fp = fingerprint(cls("cell", 0.8), cls("membrane", 0.2, extent=512, edge=0.9))
    decided = chosen(plan(fp))
    assert decided["data.size"] == 128
    assert (decided["data.scale_min"], decided["data.scale_max"]) == (0.8, 1.25)
    assert decided["train.loss"] == "bce_dice"


def test_tiny_rare_objects_get_the_smallest_crop_and_focused_crops():
    fp = fingerprint(cls("background", 0.99), cls("defect", 0.01, extent=12, small=3),
                     side=2000)
    decided = chosen(plan(fp))
    assert decided["data.size"] == 64
    assert decided["data.focus_classes"] == ("defect",)
    assert decided["data.focus_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert decided["model.depth"] == 3                    # 64 / 2^3 = 8 px at the bottom


def test_huge_objects_in_huge_images_stop_at_the_largest_crop():
    fp = fingerprint(cls("background", 0.5), cls("field", 0.5, extent=3000), side=8000)
    assert chosen(plan(fp))["data.size"] == 512


def test_images_smaller_than_the_crop_are_taken_whole():
    fp = fingerprint(cls("background", 0.6), cls("a", 0.2, extent=30), cls("b", 0.2, 20),
                     side=32)
    decided = chosen(plan(fp))
    assert decided["data.size"] == 32 and decided["model.depth"] == 2


def test_imbalanced_classes_get_square_root_median_weights_and_balanced_none():
    rare = fingerprint(cls("sky", 0.6), cls("road", 0.39, extent=200),
                       cls("sign", 0.01, extent=20))
    assert chosen(plan(rare))["train.class_weights"] == "sqrt-median"
    even = fingerprint(cls("a", 0.4), cls("b", 0.3, extent=50), cls("c", 0.3, extent=50))
    assert "train.class_weights" not in chosen(plan(even))


@pytest.mark.parametrize("step,base", [(0.01, 32), (0.1, 16), (1.0, 8)])
def test_the_base_is_the_widest_that_takes_enough_steps_at_the_measured_pace(step, base):
    made = plan(BLOBS, budget=15, step=step)
    assert chosen(made)["model.base"] == base
    if base != BASES[-1]:
        seconds = TRAIN_SHARE * 15 * 60 / (step * (base / 16) ** 2)
        assert seconds >= MIN_STEPS


def test_a_plan_fits_the_memory_available_lowering_the_batch_then_the_width():
    """A stand-in estimate: 1,000 bytes per pixel of the batch per base channel."""
    def need(model, crop, batch):
        return 1000 * batch * crop * crop * model.base

    # BLOBS plans crop 480 in batches of 2; base 8 at batch 2 needs 3.7 GB.
    roomy = plan_run(BLOBS, 20, 15, timer(0.01), available=10 ** 12, need=need)
    assert (chosen(roomy)["data.batch_size"], chosen(roomy)["model.base"]) == (2, 32)
    tight = plan_run(BLOBS, 20, 15, timer(0.01), available=2 * 10 ** 10, need=need)
    decided = chosen(tight)
    # Within half of 20 GB: batch 2 of base 8 fits (3.7 GB), base 32 (14.7 GB) does not.
    assert (decided["data.batch_size"], decided["model.base"]) == (2, 16)
    small = plan_run(BLOBS, 20, 15, timer(0.01), available=4 * 10 ** 9, need=need)
    decided = chosen(small)
    assert decided["data.batch_size"] == 1 and decided["model.base"] == 8
    assert "lowered to fit 50% of the 3.7 GiB available" in next(
        d.reason for d in small.decisions if d.setting == "data.batch_size")


@pytest.mark.parametrize("images,val_images,split", [
    (100, 20, False),       # a pass of 50 steps: validated every few passes
    (500, 20, False),       # a pass of 250 steps, under two intervals: validated every pass
    (1_000, 20, True),      # a pass of 500 steps: two epochs of 250
    (10_000, 20, True),     # a pass of 5,000 steps: split into epochs of the interval
    (100, 4_000, False),    # validation costs a step's time per 13 images: spaced by its cost
])
def test_validation_comes_about_forty_times_a_run_and_within_its_share_of_the_time(
        images, val_images, split):
    fp = fingerprint(cls("background", 0.7), cls("car", 0.2, extent=180),
                     cls("road", 0.1, extent=300), images=images)
    decided = chosen(plan(fp, val_images=val_images))
    step = timer(0.1)(ModelConfig(base=decided["model.base"]), 0, 0)
    steps = TRAIN_SHARE * 15 * 60 / step
    pass_steps = images // decided["data.batch_size"]
    assert ("train.epoch_steps" in decided) == split
    if split:              # the loop splits the pass into epochs of at most --epoch-steps
        assert decided["train.val_every"] == 1
        interval = pass_steps / epoch_parts(pass_steps, decided["train.epoch_steps"])
        assert interval < pass_steps
    else:
        interval = decided["train.val_every"] * pass_steps
    # A validation forward pass is a third of a training step's time per pixel.
    val_seconds = (step / 3 / (decided["data.batch_size"] * decided["data.size"] ** 2)
                   * val_images * 512 ** 2)
    assert val_seconds / (val_seconds + interval * step) <= VAL_SHARE + 1e-9
    validations = steps / interval
    assert validations <= VALIDATIONS + 1
    if val_seconds * VALIDATIONS < VAL_SHARE * steps * step / 2:    # cheap: not held back
        assert validations >= VALIDATIONS / 2


def test_no_budget_plans_the_documented_default_and_says_so():
    made = plan_run(BLOBS, 20, None, timer(0.1))
    assert made.budget == 15 and chosen(made)["train.time_budget"] == 15
    assert any("no --time-budget" in note for note in made.notes)


@pytest.mark.parametrize("fp", [
    fingerprint(cls("only", 1.0), images=1),                             # one class, one image
    fingerprint(*(cls(f"c{i}", 0.02, extent=40) for i in range(50))),    # 50 classes
    fingerprint(cls("background", 0.999), cls("once", 0.001, extent=5, images=1)),
    fingerprint(cls("background", 0.9), cls("a", 0.1, extent=8000), side=8000, images=1),
])
def test_edge_cases_get_a_valid_plan(fp):
    made = plan(fp)
    assert made.table()                                  # prints, one line per decision


def test_a_plan_survives_its_record():
    made = plan(BLOBS)
    again = Plan.from_record(made.record())
    assert again.decisions == made.decisions and again.fingerprint == made.fingerprint


def test_the_printout_marks_the_decisions_a_flag_replaced():
    made = plan(BLOBS)
    text = made.table(replaced={"data.size": 256})
    line = next(line for line in text.splitlines() if "--size" in line)
    assert line.strip().startswith("--size 480") and line.endswith("[replaced: 256]")
