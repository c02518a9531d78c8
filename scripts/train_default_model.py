"""Train the shipped default model on DDTI (train split), as it was trained for the release.

    python scripts/train_default_model.py --data ../shared/data/ddti --out runs/default

The defaults are the shipped recipe: v-prediction, MSE + soft Dice (weight 1), lr 1e-3,
batch 8, 93 minutes on 1 thread, bf16 autocast where the CPU has it natively.

Thirty train-split images from a few whole cases are held out for validation, so no case
is on both sides. The test split is never touched here. The run can be interrupted and
started again with the same command: it resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.data import SegmentationDataset, find_pairs
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.train_config import TrainConfig, train_config_from
from medsegdiff_training.trainer import train


def case_of(name: str) -> str:
    return name.split("_")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--minutes", type=float, default=93)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", dest="learning_rate", type=float, default=1e-3)
    parser.add_argument("--prediction", choices=["epsilon", "v"], default="v")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="step budget (first of steps/minutes wins)")
    parser.add_argument(
        "--mask-loss-weight", type=float, default=1.0, help="soft-Dice loss on the predicted mask (0 = paper)"
    )
    parser.add_argument(
        "--no-amp", action="store_true", help="float32 throughout (default: bf16 autocast where native)"
    )
    parser.add_argument(
        "--ablate",
        choices=["dynamic_conditioning", "ff_parser"],
        action="append",
        default=[],
        help="switch a component of the paper off (Table II's ablation); may be given twice",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pairs = find_pairs(args.data / "images", args.data / "masks", args.data / "split.csv", "train")
    cases = sorted({case_of(p.name) for p in pairs})
    random.Random(0).shuffle(cases)
    held_out, validation_pairs = set(), []
    for case in cases:
        if len(validation_pairs) >= 30:
            break
        held_out.add(case)
        validation_pairs = [p for p in pairs if case_of(p.name) in held_out]
    train_pairs = [p for p in pairs if case_of(p.name) not in held_out]
    model_config = named_config("cpu", **{component: False for component in args.ablate})
    preprocess = PreprocessConfig()
    started = time.time()
    train_data = SegmentationDataset.from_pairs(train_pairs, model_config, preprocess)
    validation_data = SegmentationDataset.from_pairs(validation_pairs, model_config, preprocess)
    print(
        f"{len(train_data)} training and {len(validation_data)} validation images, loaded in {time.time() - started:.0f} s"
    )
    recipe = TrainConfig(
        validate_every=250,
        validation_sampling=SamplingSettings(sampler="ddim", steps=10, seed=0, ensemble=1),
        checkpoint_every=250,
        device="cpu",
    )
    # the same generic mapping as `medsegdiff train`: options named after TrainConfig's fields
    config = train_config_from(
        args, recipe, steps=args.steps, amp=not args.no_amp, validation_images=len(validation_data)
    )

    def report(progress):
        if progress.step % 50 == 0:
            print(
                json.dumps(
                    {
                        "step": progress.step,
                        "loss": round(progress.loss, 5),
                        "validation_dice": progress.validation_dice,
                        "elapsed_min": round(progress.elapsed_s / 60, 1),
                        "images_per_s": round(progress.images_per_s, 2),
                    }
                ),
                flush=True,
            )

    result = train(
        model_config,
        train_data,
        args.out,
        config=config,
        validation_data=validation_data,
        diffusion=DiffusionConfig(prediction=args.prediction),
        preprocess=preprocess,
        progress=report,
        metadata={
            "training_data": {
                "dataset": "DDTI",
                "split": "train",
                "held_out_validation": sorted(validation_data.names),
                "threads": args.threads,
                "hardware": "2-core CPU",
            }
        },
    )
    print(
        json.dumps(
            {
                "steps": result.step,
                "best_validation_dice": result.best_validation_dice,
                "final": str(result.final_checkpoint),
            }
        )
    )


if __name__ == "__main__":
    main()
