"""Train the shipped default model on DDTI (train split), as it was trained for the release.

    python scripts/train_default_model.py --data ../shared/data/ddti --out runs/default

The same recipe trained ``lgg-flair`` (brain MRI FLAIR slices; a case is a patient, the stem
less its trailing ``_<slice>``), on a CPU-time clock so that other work does not eat the budget:

    python scripts/train_default_model.py --data ../shared/data/lgg_mri --dataset "LGG MRI" \
        --case-of before-last-underscore --image-size 128 --clock cpu --out runs/lgg-flair

The defaults are the shipped recipe: v-prediction, MSE + soft Dice (weight 1), lr 1e-3,
batch 8, 93 minutes on 1 thread, bf16 autocast where the CPU has it natively.

Thirty train-split images from a few whole cases are held out for validation, so no case
is on both sides (``--case-of`` says how a name gives its case). The test split is never
touched here. The run can be interrupted and started again with the same command: it resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.data import Pair, SegmentationDataset, find_pairs
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.train_config import TrainConfig, train_config_from
from medsegdiff_training.trainer import train

# how an image's name gives its case (patient), so that no case is on both sides of validation
CASE_RULES = {
    "before-first-underscore": lambda name: name.split("_")[0],  # DDTI: CASE_FRAME(NODULE)
    "before-last-underscore": lambda name: name.rsplit("_", 1)[0],  # LGG MRI: CASE_SLICE
}


def hold_out_cases(pairs: list[Pair], case_of: Callable[[str], str], images: int = 30) -> tuple[list, list]:
    """(training, validation) pairs: whole cases, in a seeded random order, go to validation
    until it holds at least ``images`` images."""
    cases = sorted({case_of(p.name) for p in pairs})
    random.Random(0).shuffle(cases)
    held_out: set[str] = set()
    for case in cases:
        if sum(case_of(p.name) in held_out for p in pairs) >= images:
            break
        held_out.add(case)
    return (
        [p for p in pairs if case_of(p.name) not in held_out],
        [p for p in pairs if case_of(p.name) in held_out],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--dataset", default="DDTI", help="the data's name, for the checkpoint's metadata")
    parser.add_argument("--case-of", choices=list(CASE_RULES), default="before-first-underscore")
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--minutes", type=float, default=93)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what --minutes counts")
    parser.add_argument(
        "--image-size", type=int, default=None, help="network input N x N (default: cpu's 96)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", dest="learning_rate", type=float, default=1e-3)
    parser.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="constant (the shipped default's), or cosine decay to 0 at the end of the budget",
    )
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
    train_pairs, validation_pairs = hold_out_cases(pairs, CASE_RULES[args.case_of])
    changes: dict[str, object] = {component: False for component in args.ablate}
    if args.image_size:
        changes["image_size"] = (args.image_size, args.image_size)
    model_config = named_config("cpu", **changes)
    preprocess = PreprocessConfig()
    started = time.time()
    train_data = SegmentationDataset.from_pairs(train_pairs, model_config, preprocess)
    validation_data = SegmentationDataset.from_pairs(validation_pairs, model_config, preprocess)
    print(
        f"{len(train_data)} training and {len(validation_data)} validation images, loaded in {time.time() - started:.0f} s"
    )
    recipe = TrainConfig(
        validate_every=250,
        validation_sampling=SamplingSettings(sampler="ddim", steps=10, seed=0),
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
                "dataset": args.dataset,
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
