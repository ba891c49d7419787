"""The job behind ``unetseg plan DATA`` and behind ``unetseg train --data FOLDER`` (``--plan
auto``): build the datasets as training would, fingerprint the training split, time the
candidate networks on this machine, and decide (`unetseg.planner`).

``--out FILE`` writes the plan as a ``--config`` file for ``unetseg train``: the data section
names the data as it was planned, the decisions fill the rest, and the plan's record (every
decision's reason and the fingerprint) follows as a record that reading the file skips. Its
output policy (`unetseg.outputs`): refuse an existing file unless ``--overwrite``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.build import build_datasets
from ..data.fingerprint import fingerprint
from ..files import atomic_write_text, json_ready, yaml_text
from ..memory import available_bytes
from ..outputs import claim_file
from ..planner import Plan, measured_step_seconds, plan_run
from ..progress import say

__all__ = ["plan_data", "plannable", "write_plan", "SOURCE_FIELDS"]

# What says where the planned data is and how it splits: copied into a plan file, so that
# `train --config PLAN` trains on the data that was planned.
SOURCE_FIELDS = ("source", "root", "val", "spec", "classes", "train_list", "val_list",
                 "val_ratio", "seed")


def plannable(config: RunConfig) -> str | None:
    """Why ``config`` cannot be planned (built-in data, another architecture), or None."""
    if config.data.synthetic:
        return (f"--data {config.data.source} is drawn, not read: there are no masks to plan "
                f"from (a plan reads a folder, or camvid or isbi)")
    if config.model.arch != "unet":
        return f"--arch {config.model.arch}: a plan sizes this toolkit's U-Net only"
    return None


def plan_data(config: RunConfig, budget: float | None = None,
              device: torch.device | None = None, progress: bool = False,
              announce: bool = False) -> Plan:
    """The plan for the data ``config`` describes (its data section: source, classes, split),
    trained for ``budget`` minutes on ``device`` (the CPU by default). With ``announce``, how
    the data was read (its notices, as training logs them) is said first. Raises ValueError
    when the data cannot be planned (`plannable`) or cannot be read (as training would)."""
    why_not = plannable(config)
    if why_not:
        raise ValueError(why_not)
    device = device or torch.device("cpu")
    data = build_datasets(replace(config.data, augment=False))
    for notice in data.notices if announce else ():
        say(notice)
    fp = fingerprint(data.train.pairs, data.spec, data.mean, data.std, data.in_channels,
                     progress)
    model = replace(config.model, in_channels=data.in_channels,
                    num_classes=data.spec.num_classes)

    def timer(network, crop: int, batch: int) -> float:
        return measured_step_seconds(network, crop, batch, device)

    return plan_run(fp, len(data.val), budget, timer, model, available_bytes(device))


def write_plan(plan: Plan, config: RunConfig, path: str | Path, overwrite: bool = False) -> Path:
    """``path`` as a ``--config`` file: where ``config``'s data is, the decisions, and the
    plan's record. Only what the plan decided is written, not every default."""
    path = claim_file(path, overwrite, "--out")
    values = plan.settings()
    data = config.to_dict()["data"]
    where = {name: data[name] for name in SOURCE_FIELDS if data[name] is not None}
    values["data"] = {**where, **values.get("data", {})}
    RunConfig.from_dict(values, "the plan")              # checked as `train --config` will
    atomic_write_text(path, yaml_text({**json_ready(values), "plan": plan.record()}))
    return path
