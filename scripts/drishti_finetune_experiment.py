"""Does fine-tuning on a handful of corrections help on a new domain? Drishti-GS1 as the test.

    python scripts/drishti_finetune_experiment.py --corrections 8 --minutes 10

The parent is the shipped ``default`` model unless ``--parent`` names another checkpoint
folder. The shipped model was trained on thyroid ultrasound. An annotator moving to fundus
photographs would correct its optic-disc masks and export them. This script does exactly
that without the GUI: it writes ``--corrections`` images of Drishti's *Training* split,
with their expert masks (disc = rim + cup, since the default model is binary) and the
parent's own prediction, into a fresh corrections store through the same writer the
plugin uses; fine-tunes the parent on that store for ``--minutes`` of CPU; and scores
parent and child on Drishti's *Test* split (51 images). Results go to
``benchmarks/results/finetune_drishti.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _common import environment, write_result  # noqa: E402

from medsegdiff_training.checkpoint import load_checkpoint  # noqa: E402
from medsegdiff_training.corrections import CorrectionsStore  # noqa: E402
from medsegdiff_training.data import find_pairs, read_array  # noqa: E402
from medsegdiff_training.evaluation import evaluate_pairs  # noqa: E402
from medsegdiff_training.finetune import finetune  # noqa: E402
from medsegdiff_training.finetune_options import FinetuneOptions  # noqa: E402
from medsegdiff_training.inference import SamplingSettings, Segmenter  # noqa: E402
from medsegdiff_training.registry import DEFAULT_MODEL_DIR, ModelRegistry  # noqa: E402
from medsegdiff_training.trainer import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--parent",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="checkpoint folder to fine-tune (default: the shipped default model)",
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/drishti_roi"))
    parser.add_argument("--work", type=Path, default=Path("runs/drishti_experiment"))
    parser.add_argument("--corrections", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    registry = ModelRegistry(args.work / "registry")
    registry.add(args.parent, name="ultrasound")
    settings = SamplingSettings(sampler="ddim", steps=10, seed=0, ensemble=1)
    data = args.data
    train_pairs = find_pairs(data / "images", data / "masks", data / "split.csv", "Training")[
        : args.corrections
    ]
    test_pairs = find_pairs(data / "images", data / "masks", data / "split.csv", "Test")

    parent = Segmenter(load_checkpoint(args.parent), device="cpu")
    store = CorrectionsStore(args.work / "corrections")
    for pair in train_pairs:
        image, labels = read_array(pair.image), read_array(pair.mask)
        prediction = parent.segment(image, settings).labels
        store.add(
            image,
            (labels > 0).astype("uint8"),
            prediction,
            source_path=str(pair.image),
            image_layer=pair.name,
            labels_layer=f"{pair.name} segmentation",
            model_version="ultrasound",
            sampler_settings=settings.to_dict(),
        )
    print(f"{len(store)} corrections exported", flush=True)

    before = evaluate_pairs(parent, test_pairs, settings, batch_size=17).summary
    print(f"before: Dice {before['dice']:.4f}", flush=True)
    started = time.monotonic()
    result = finetune(
        FinetuneOptions(
            parent="ultrasound",
            store=store.root,
            name="fundus",
            config=TrainConfig(
                steps=None,
                minutes=args.minutes,
                batch_size=4,
                learning_rate=2e-4,
                ema_decay=0.995,
                validate_every=10**9,
                checkpoint_every=100,
                device="cpu",
            ),
            run_dir=args.work / "run",
        ),
        registry=registry,
    )
    minutes = (time.monotonic() - started) / 60
    child = Segmenter(registry.load(result.version.name), device="cpu")
    after = evaluate_pairs(child, test_pairs, settings, batch_size=17).summary
    print(f"after {result.steps} steps ({minutes:.1f} min): Dice {after['dice']:.4f}", flush=True)
    write_result(
        "finetune_drishti",
        {
            "environment": environment("cpu"),
            "task": "optic disc (rim + cup) on Drishti-GS1 ROI crops, binary",
            "corrections": [p.name for p in train_pairs],
            "finetune": {
                "steps": result.steps,
                "minutes": round(minutes, 1),
                "parent": (
                    "shipped default (DDTI ultrasound)"
                    if args.parent.resolve() == DEFAULT_MODEL_DIR
                    else str(args.parent)
                ),
                "held_out_corrections_dice_before": result.validation_dice_before,
                "held_out_corrections_dice_after": result.validation_dice_after,
            },
            "sampling": settings.to_dict(),
            "test_before": before,
            "test_after": after,
        },
    )


if __name__ == "__main__":
    main()
