"""Train the shipped default model on DDTI (train split), as it was trained for the release.

    python scripts/train_default_model.py --data ../shared/data/ddti --out runs/default

The same recipe trained ``lgg-flair`` (brain MRI FLAIR slices; a case is a patient, the stem
less its trailing ``_<slice>``), on a CPU-time clock so that other work does not eat the budget:

    python scripts/train_default_model.py --data ../shared/data/lgg_mri --dataset "LGG MRI" \
        --case-of before-last-underscore --image-size 128 --clock cpu --out runs/lgg-flair

The defaults are the shipped recipe: a binary grey ``cpu`` network, v-prediction, MSE + soft
Dice (weight 1), lr 1e-3, batch 8, 93 minutes on 1 thread, bf16 autocast where the CPU has
it natively, validation every 250 steps on every held-out image (DDIM 10).

Thirty train-split images from a few whole cases are held out for validation, so no case
is on both sides (``--case-of`` says how a name gives its case). The test split is never
touched here. The run can be interrupted and started again with the same command: it resumes.
The run itself is ``medsegdiff train``'s (:func:`medsegdiff_training.training_run.run_training`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medsegdiff_training.data import find_pairs
from medsegdiff_training.data.sources import DatasetSource
from medsegdiff_training.threads import apply_threads, choose_threads
from medsegdiff_training.train_config import LR_SCHEDULES, TrainConfig, train_config_from
from medsegdiff_training.training_data import CASE_RULES, SplitSource, hold_out_cases
from medsegdiff_training.training_run import TrainingRequest, run_training

__all__ = ["CASE_RULES", "hold_out_cases"]  # the U-Net baseline holds out the same cases

# the shipped recipe's validation and checkpoint cadence (the rest of TrainConfig's defaults)
RECIPE = TrainConfig(validate_every=250, checkpoint_every=250, device="cpu")


def parse_arguments() -> argparse.Namespace:
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
        choices=LR_SCHEDULES,
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
    return parser.parse_args()


def training_request(args: argparse.Namespace) -> TrainingRequest:
    """The shipped recipe on ``--data``'s train split, whole cases held out for validation."""
    source = DatasetSource(
        args.dataset, args.data / "images", args.data / "masks", args.data / "split.csv", "train"
    )
    pairs = find_pairs(source.images, source.masks, source.split_csv, "train")  # names as in split.csv
    train_pairs, validation_pairs = hold_out_cases(pairs, CASE_RULES[args.case_of])
    # options named after TrainConfig's fields, as in `medsegdiff train`; every held-out image scored
    config = train_config_from(
        args, RECIPE, steps=args.steps, amp=not args.no_amp, validation_images=len(validation_pairs)
    )
    return TrainingRequest(
        data=[SplitSource(source, train_pairs, validation_pairs)],
        run_dir=args.out,
        config=config,
        model="cpu",
        image_size=(args.image_size, args.image_size) if args.image_size else None,
        num_classes=2,
        channels=1,
        model_options={component: False for component in args.ablate},
        prediction=args.prediction,
        metadata={
            "training_data": {
                "dataset": args.dataset,
                "split": "train",
                "held_out_validation": sorted(pair.name for pair in validation_pairs),
                "threads": args.threads,
                "hardware": "2-core CPU",
            }
        },
    )


def report(progress) -> None:
    if progress.step % 50 == 0:
        line = {
            "step": progress.step,
            "loss": round(progress.loss, 5),
            "validation_dice": progress.validation_dice,
            "elapsed_min": round(progress.elapsed_s / 60, 1),
            "images_per_s": round(progress.images_per_s, 2),
        }
        print(json.dumps(line), flush=True)


def main() -> None:
    args = parse_arguments()
    apply_threads(choose_threads(args.threads))
    result = run_training(training_request(args), progress=report, say=print).result
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
