"""One peer network trained on a train/ + test/ folder for a time budget, then scored on test/:
the smp and MONAI rows of the planning study (`plan_study.py`).

    OMP_NUM_THREADS=1 .venv-exp/bin/python experiments/peer_run.py FOLDER smp --budget 15 \\
        --seed 0 --out RUN

Each peer trains as its own documentation trains it, in what sets a network apart: its loss,
learning rate and mixed precision.

- ``smp``: ``smp.Unet("resnet34", encoder_weights=None)`` with soft Dice and lr 2e-4, as
  segmentation_models_pytorch's example notebooks (Dice loss, Adam at 2e-4).
- ``monai``: ``monai.networks.nets.BasicUNet`` (its default features) with Dice + cross-entropy
  (MONAI's DiceCELoss) and lr 1e-3, as MONAI's 2-D segmentation tutorial (Adam at 1e-3); AMP,
  as MONAI's training tutorials use it.

Both get AMP: on a CPU that is bf16 autocast, given here through unetseg's fast path
(`unetseg.fastpath.optimize_for_training`: channels_last as well), which is at least as fast
for them as plain autocast. That holds on a CPU that computes bf16 natively (AVX-512 BF16 or
AMX); on one that does not, bf16 is emulated and many times slower than fp32 (`run.json`'s
``step_wall_s`` shows it), so there the peers train in fp32, as a user of theirs would.

What is the same for every contender of the study, ours included: the data (the folder's
train/ split with unetseg's crops and augmentation, 256-pixel crops, batch 8), AdamW with a
warm-up and a cosine decay over the budget, gradient clipping, one thread, and the scoring
(``unetseg evaluate``'s whole images on test/). A peer spends its whole budget training
(process CPU seconds; no validation during the run, where ours validates inside its budget)
and its final weights are scored: no checkpoint is chosen, so test/ chose nothing.

Writes ``RUN/test/evaluation.json`` in the shape ``unetseg evaluate`` writes (``images``,
``split``, ``miou``, ``classes``: name and IoU), and ``RUN/run.json`` with the training run.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import Contender, Recipe, evaluate, load_data, train_contender  # noqa: E402

from unetseg.config import DataConfig  # noqa: E402
from unetseg.data.build import build_eval_dataset  # noqa: E402
from unetseg.precision import cpu_has_bf16  # noqa: E402

# What each peer's own documentation uses (see the module docstring).
PEERS = {
    "smp": (Contender("smp.Unet r34", model="smp", loss="dice"), 2e-4),
    "monai": (Contender("MONAI BasicUNet", model="monai", loss="ce_dice"), 1e-3),
}
CROP, BATCH = 256, 8


def run_peer(folder: Path, peer: str, seed: int, budget_min: float, out: Path) -> dict:
    contender, lr = PEERS[peer]
    config = DataConfig(source=str(folder), size=CROP, batch_size=BATCH, seed=seed)
    data, info = load_data(config)
    recipe = Recipe(batch_size=BATCH, eval_every=10**9, seconds=60.0 * budget_min, lr=lr,
                    precision="bf16" if cpu_has_bf16() else "fp32", val_images=1)
    model, run = train_contender(contender, data, recipe, seed)
    test, _ = build_eval_dataset(config, data.mean, data.std, split="test",
                                 recorded=data.spec)
    spec = data.spec
    scores = evaluate(model.eval(), test, spec.num_classes, spec.ignore_index,
                      list(spec.class_names), binary=False)
    evaluation = {"images": len(test), "split": "test", "miou": scores["miou"],
                  "classes": [{"class": name, "iou": iou} for name, iou in scores["iou"].items()]}
    (out / "test").mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({**run, "data": info,
                                              "config": asdict(config)}, indent=1,
                                             default=str))
    (out / "test" / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    return evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--budget", type=float, default=15.0, help="minutes (default: 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    evaluation = run_peer(args.folder, args.peer, args.seed, args.budget, args.out)
    print(f"{args.peer} on {args.folder.name}: test mIoU {evaluation['miou']:.4f}")


if __name__ == "__main__":
    main()
