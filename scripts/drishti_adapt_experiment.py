"""An adapting fine-tune: the grey binary ultrasound default -> a 3-class RGB disc/cup model.

    python scripts/drishti_adapt_experiment.py prepare --corrections 8
    python scripts/drishti_adapt_experiment.py train cosine-1e-3 --minutes 10   # one process per recipe
    python scripts/drishti_adapt_experiment.py choose

Writes ``--corrections`` images of Drishti-GS1's *Training* split with their expert label
maps (0 background, 1 disc rim, 2 cup) and the parent's own prediction into a fresh
corrections store, through the writer the plugin uses. Fine-tuning sees RGB images and
labels 0/1/2, so the child becomes a 3-class RGB model by weight surgery. Each candidate
recipe trains for ``--minutes`` of this process's CPU time (1 thread: the budget holds on a
machine shared with other work, and the recipes can train side by side) on all the
corrections, and is scored on ``--selection`` *other* Training images (never Test); the
best (disc + cup Dice) is then scored once on the 51 Test images, DDIM 3 steps x
ensemble 5. Results go to ``benchmarks/results/finetune_drishti_adapt.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _common import environment, write_result  # noqa: E402
from bench_quality_drishti import majority_map, structure_scores  # noqa: E402

from medsegdiff_training.adaptation import plan_finetune  # noqa: E402
from medsegdiff_training.corrections import CorrectionsStore  # noqa: E402
from medsegdiff_training.data import find_pairs, read_array, read_mask  # noqa: E402
from medsegdiff_training.finetune import finetune  # noqa: E402
from medsegdiff_training.inference import SamplingSettings, Segmenter  # noqa: E402
from medsegdiff_training.metrics import summarise_scores  # noqa: E402
from medsegdiff_training.preprocess import resize  # noqa: E402
from medsegdiff_training.registry import ModelRegistry  # noqa: E402
from medsegdiff_training.samplers import run_to_end  # noqa: E402
from medsegdiff_training.trainer import TrainConfig  # noqa: E402

SETTINGS = SamplingSettings(sampler="ddim", steps=3, ensemble=5, seed=0)
RECIPES = {
    # the earlier binary experiment's recipe: constant 2e-4, EMA 0.995
    "constant-2e-4": dict(learning_rate=2e-4, lr_schedule="constant", warmup_steps=0, ema_decay=0.995),
    # the shipped models' learning rate, warmed up and decayed to the budget
    "cosine-1e-3": dict(learning_rate=1e-3, lr_schedule="cosine", warmup_steps=50, ema_decay=0.995),
    # the same with a slower EMA
    "cosine-1e-3-ema0.999": dict(learning_rate=1e-3, lr_schedule="cosine", warmup_steps=50, ema_decay=0.999),
}


def score(segmenter: Segmenter, pairs: list, batch: int = 3) -> dict[str, float]:
    scores = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        prepared = torch.cat([segmenter.prepare(read_array(p.image)) for p in chunk])
        final = run_to_end(segmenter.denoise(prepared, SETTINGS))
        for index, pair in enumerate(chunk):
            truth = read_mask(pair.mask)
            members = final[index * SETTINGS.ensemble : (index + 1) * SETTINGS.ensemble]
            labels = segmenter.summarise(members, SETTINGS, truth.shape)[0].labels
            scores.append(structure_scores(labels, truth))
    return summarise_scores(scores)


def splits(args: argparse.Namespace) -> tuple[list, list, list, list]:
    data = args.data
    training = find_pairs(data / "images", data / "masks", data / "split.csv", "Training")
    corrections = training[: args.corrections]
    selection = training[args.corrections : args.corrections + args.selection]
    test = find_pairs(data / "images", data / "masks", data / "split.csv", "Test")[: args.test_limit]
    return training, corrections, selection, test


def prepare(args: argparse.Namespace) -> None:
    """A fresh registry and a corrections store holding the corrections."""
    shutil.rmtree(args.work, ignore_errors=True)
    registry = ModelRegistry(args.work / "registry")
    _, corrections, _, _ = splits(args)
    parent = Segmenter(registry.load("default"), device="cpu")
    store = CorrectionsStore(args.work / "corrections")
    for pair in corrections:
        image, labels = read_array(pair.image), read_mask(pair.mask)
        store.add(
            image,
            labels.astype("uint8"),
            parent.segment(image, SETTINGS).labels,
            source_path=str(pair.image),
            image_layer=pair.name,
            labels_layer=f"{pair.name} segmentation",
            model_version="default",
            sampler_settings=SETTINGS.to_dict(),
        )
    plan = plan_finetune("default", store, registry=registry)
    print(f"{len(store)} corrections; the child will be: {plan.describe()}", flush=True)


def train_recipe(args: argparse.Namespace) -> None:
    """Fine-tune one recipe on every correction, score it on the selection images."""
    registry = ModelRegistry(args.work / "registry")
    _, _, selection, _ = splits(args)
    started = time.monotonic()
    result = finetune(
        "default",
        CorrectionsStore(args.work / "corrections"),
        registry=registry,
        name=args.recipe,
        validation_fraction=0,  # few corrections: all of them train; choose on other Training images
        config=TrainConfig(
            steps=None,
            minutes=args.minutes,
            clock="cpu",
            batch_size=4,
            validate_every=10**9,
            checkpoint_every=10**9,
            device="cpu",
            **RECIPES[args.recipe],
        ),
        run_dir=args.work / f"run-{args.recipe}",
    )
    wall = (time.monotonic() - started) / 60
    chosen_on = score(Segmenter(registry.load(args.recipe), device="cpu"), selection)
    record = {
        "recipe": RECIPES[args.recipe],
        "steps": result.steps,
        "cpu_minutes_budget": args.minutes,
        "wall_minutes": round(wall, 1),
        "adaptation": result.adaptation.to_dict() if result.adaptation else None,
        "selection_scores": chosen_on,
    }
    (args.work / f"candidate-{args.recipe}.json").write_text(json.dumps(record, indent=2))
    print(
        f"{args.recipe}: {result.steps} steps ({wall:.1f} wall min); Training selection images: "
        f"disc {chosen_on['disc_dice']:.4f}, cup {chosen_on['cup_dice']:.4f}",
        flush=True,
    )


def choose(args: argparse.Namespace) -> None:
    """The best candidate on the selection images, scored once on Test, beside the baseline."""
    registry = ModelRegistry(args.work / "registry")
    training, corrections, selection, test = splits(args)
    candidates = {
        path.stem.removeprefix("candidate-"): json.loads(path.read_text())
        for path in sorted(args.work.glob("candidate-*.json"))
    }
    best = max(
        candidates,
        key=lambda r: (
            candidates[r]["selection_scores"]["disc_dice"] + candidates[r]["selection_scores"]["cup_dice"]
        ),
    )
    test_scores = score(Segmenter(registry.load(best), device="cpu"), test)
    truths = [read_mask(p.mask) for p in test]
    frequencies = majority_map([read_mask(p.mask) for p in training])
    blob = [resize(frequencies[None], t.shape)[0].argmax(0).numpy() for t in truths]
    baseline = summarise_scores([structure_scores(b, t) for b, t in zip(blob, truths, strict=True)])
    print(
        f"chosen {best}; Test: disc {test_scores['disc_dice']:.4f}, cup {test_scores['cup_dice']:.4f} "
        f"(majority map {baseline['disc_dice']:.4f} / {baseline['cup_dice']:.4f})",
        flush=True,
    )
    write_result(
        "finetune_drishti_adapt",
        {
            "environment": environment("cpu"),
            "task": "optic disc rim and cup (3 classes, RGB) from the grey binary ultrasound default",
            "corrections": [p.name for p in corrections],
            "selection_images": [p.name for p in selection],
            "sampling": SETTINGS.to_dict(),
            "candidates": candidates,
            "chosen": best,
            "test": test_scores,
            "test_majority_map": baseline,
            "test_images": len(test),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=["prepare", "train", "choose"])
    parser.add_argument("recipe", nargs="?", choices=list(RECIPES))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/drishti_roi"))
    parser.add_argument("--work", type=Path, default=Path("runs/drishti_adapt"))
    parser.add_argument("--corrections", type=int, default=8)
    parser.add_argument("--selection", type=int, default=16, help="other Training images to choose on")
    parser.add_argument("--minutes", type=float, default=10, help="CPU minutes per recipe")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test-limit", type=int, default=None, help="fewer Test images (smoke runs only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase == "train" and args.recipe is None:
        parser.error("train needs a recipe: " + ", ".join(RECIPES))
    {"prepare": prepare, "train": train_recipe, "choose": choose}[args.phase](args)


if __name__ == "__main__":
    main()
