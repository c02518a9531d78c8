"""Adapting fine-tunes on Drishti-GS1: the grey binary ultrasound default -> a colour disc/cup model.

    python scripts/drishti_adapt_experiment.py run --task disc-cup --corrections 8 --recipe cosine-1e-3
    python scripts/drishti_adapt_experiment.py choose          # the recipe, on Training images only
    python scripts/drishti_adapt_experiment.py test --task disc-cup --corrections 8 --recipe CHOSEN
    python scripts/drishti_adapt_experiment.py samplers --recipe CHOSEN   # DDIM 10, DPM++ 5, DDPM 100
    python scripts/drishti_adapt_experiment.py run --task disc --corrections 2 --recipe cosine-1e-3 --score test
    python scripts/drishti_adapt_experiment.py run --recipe CHOSEN --score both --repeat 1  # again
    python scripts/drishti_adapt_experiment.py report          # benchmarks/results/finetune_drishti_adapt.json

One ``run`` writes the first ``--corrections`` images of Drishti-GS1's *Training* split with
their expert label maps into a fresh corrections store through the writer the plugin uses
(task ``disc-cup``: labels 0 background, 1 disc rim, 2 cup, so the child becomes a 3-class RGB
model by weight surgery; task ``disc``: disc vs background, a binary RGB child), fine-tunes the
default for ``--minutes`` of this process's CPU time (1 thread: the budget holds on a machine
shared with other work, so runs can train side by side) and scores the child, DDIM 3 steps x
ensemble 5, on the *selection* images (Training images 16-31, never among any run's
corrections) and/or the 51 Test images. ``choose`` picks the recipe with the best disc + cup
Dice on the selection images of the 8-correction disc-cup runs: Test never chooses anything.
``report`` gathers every run beside the trivial baselines (the majority label map of the same
corrections, and of all 50 Training images).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _common import environment, write_result  # noqa: E402
from bench_quality_drishti import majority_map, structure_scores  # noqa: E402

from medsegdiff_training.adaptation import plan_finetune  # noqa: E402
from medsegdiff_training.corrections import CorrectionsStore  # noqa: E402
from medsegdiff_training.data import find_pairs, read_array, read_mask  # noqa: E402
from medsegdiff_training.finetune import finetune  # noqa: E402
from medsegdiff_training.finetune_options import FinetuneOptions  # noqa: E402
from medsegdiff_training.inference import SamplingSettings, Segmenter  # noqa: E402
from medsegdiff_training.metrics import summarise_scores  # noqa: E402
from medsegdiff_training.preprocess import resize  # noqa: E402
from medsegdiff_training.registry import ModelRegistry  # noqa: E402
from medsegdiff_training.samplers import run_to_end  # noqa: E402
from medsegdiff_training.train_config import AugmentConfig, TrainConfig  # noqa: E402

SETTINGS = SamplingSettings(sampler="ddim", steps=3, ensemble=5, seed=0)
SELECTION = slice(16, 32)  # Training images that no run corrects: the recipe is chosen on them
STRONG_AUGMENT = AugmentConfig(
    horizontal_flip=0.5, rotate_degrees=20.0, scale=0.2, shift=0.1, gamma=0.3, contrast=0.25, brightness=0.15
)
RECIPES = {
    # the fine-tune defaults before this experiment: the paper's constant 1e-4, EMA 0.995
    "constant-1e-4": dict(learning_rate=1e-4, lr_schedule="constant", warmup_steps=0, ema_decay=0.995),
    # the shipped models' learning rate, warmed up and decayed to the budget
    "cosine-1e-3": dict(learning_rate=1e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995),
    # the same with a faster EMA (a short run's weights improve to the end) or none
    "cosine-1e-3-ema0.99": dict(learning_rate=1e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.99),
    "cosine-1e-3-noema": dict(learning_rate=1e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.0),
    # the same with stronger augmentation for few images
    "cosine-1e-3-strong": dict(
        learning_rate=1e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995, augment=STRONG_AUGMENT
    ),
    # added in a later session, to learn more in the same CPU budget: a higher peak learning
    # rate, and twice the steps of half the batch (the same images seen, twice the updates)
    "cosine-2e-3": dict(learning_rate=2e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995),
    "cosine-1e-3-batch2": dict(
        learning_rate=1e-3, lr_schedule="cosine", warmup_steps=60, ema_decay=0.995, batch_size=2
    ),
    # every step at the noise levels DDIM 3 visits (t = 999 and 500; t = 0 returns its input)
    "cosine-1e-3-floor0.5": dict(
        learning_rate=1e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995, timestep_floor=0.5
    ),
    # the two that helped most on the selection images (the three above: first round), together
    "cosine-2e-3-floor0.5": dict(
        learning_rate=2e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995, timestep_floor=0.5
    ),
    "cosine-3e-3-floor0.5": dict(
        learning_rate=3e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995, timestep_floor=0.5
    ),
    # third round: does the floor still add at 3e-3, and does a higher rate still help?
    "cosine-3e-3": dict(learning_rate=3e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995),
    "cosine-5e-3-floor0.5": dict(
        learning_rate=5e-3, lr_schedule="cosine", warmup_steps=30, ema_decay=0.995, timestep_floor=0.5
    ),
}
TASKS = ("disc-cup", "disc")


def task_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """The expert label map as the task's annotator would paint it."""
    return (labels >= 1).astype(np.uint8) if task == "disc" else labels.astype(np.uint8)


def score(
    segmenter: Segmenter, pairs: list, task: str, batch: int = 3, settings: SamplingSettings = SETTINGS
) -> dict[str, float]:
    scores = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        prepared = torch.cat([segmenter.prepare(read_array(p.image)) for p in chunk])
        final = run_to_end(segmenter.denoise(prepared, settings))
        for index, pair in enumerate(chunk):
            truth = task_labels(read_mask(pair.mask), task)
            members = final[index * settings.ensemble : (index + 1) * settings.ensemble]
            labels = segmenter.summarise(members, settings, truth.shape)[0].labels
            scores.append(structure_scores(labels, truth))
    summary = summarise_scores(scores)
    if task == "disc":  # a binary task has no cup
        summary = {k: v for k, v in summary.items() if not k.startswith("cup") and k != "cdr_area_error"}
    return summary


def splits(data: Path) -> tuple[list, list]:
    training = find_pairs(data / "images", data / "masks", data / "split.csv", "Training")
    test = find_pairs(data / "images", data / "masks", data / "split.csv", "Test")
    return training, test


def run_name(task: str, corrections: int, recipe: str, holdout: float, repeat: int = 0) -> str:
    return (
        f"{task}-{corrections}-{recipe}"
        + (f"-holdout{holdout:g}" if holdout else "")
        + (f"-repeat{repeat}" if repeat else "")
    )


def run(args: argparse.Namespace) -> None:
    """Correct, fine-tune for the CPU budget, score; one record per run."""
    training, test = splits(args.data)
    name = run_name(args.task, args.corrections, args.recipe, args.holdout, args.repeat)
    work = args.work / name
    shutil.rmtree(work, ignore_errors=True)
    registry = ModelRegistry(work / "registry")
    parent = Segmenter(registry.load("default"), device="cpu")
    store = CorrectionsStore(work / "corrections")
    corrections = training[: args.corrections]
    for pair in corrections:
        image = read_array(pair.image)
        store.add(
            image,
            task_labels(read_mask(pair.mask), args.task),
            parent.segment(image, SETTINGS).labels,
            source_path=str(pair.image),
            image_layer=pair.name,
            labels_layer=f"{pair.name} segmentation",
            model_version="default",
            sampler_settings=SETTINGS.to_dict(),
        )
    plan = plan_finetune("default", store, registry=registry)
    print(f"{name}: {len(store)} corrections; the child will be: {plan.describe()}", flush=True)
    started, cpu_started = time.monotonic(), time.process_time()
    result = finetune(
        FinetuneOptions(
            parent="default",
            store=store.root,
            name="child",
            validation_fraction=args.holdout,
            config=TrainConfig(
                steps=None,
                minutes=args.minutes,
                clock="cpu",
                validate_every=10**9,
                checkpoint_every=10**9,
                device="cpu",
                **{"batch_size": 4, **RECIPES[args.recipe]},
            ),
            run_dir=work / "run",
        ),
        registry=registry,
    )
    trained = registry.load("child", device="cpu")
    record = {
        "task": args.task,
        "corrections": [p.name for p in corrections],
        "recipe": args.recipe,
        "holdout": args.holdout,
        "repeat": args.repeat,
        "steps": result.steps,
        "cpu_minutes_budget": args.minutes,
        # the trainer's own clock (this process's CPU time, the budget's clock) ...
        "cpu_minutes_training": round(trained.metadata["training"]["wall_time_s"] / 60, 2),
        # ... and the whole finetune call: reading the store, weight surgery, training, registering
        "cpu_minutes_whole_call": round((time.process_time() - cpu_started) / 60, 2),
        "wall_minutes_whole_call": round((time.monotonic() - started) / 60, 1),
        "adaptation": result.adaptation.to_dict() if result.adaptation else None,
        "validation_dice_before": result.validation_dice_before,
        "validation_dice_after": result.validation_dice_after,
    }
    child = Segmenter(trained, device="cpu")
    if args.score in ("selection", "both"):
        record["selection_images"] = [p.name for p in training[SELECTION]]
        record["selection"] = score(child, training[SELECTION], args.task)
    if args.score in ("test", "both"):
        record["test"] = score(child, test, args.task)
    (work / "record.json").write_text(json.dumps(record, indent=2))
    shown = {
        f"{part} {k}": round(v, 4)
        for part in ("selection", "test")
        for k, v in record.get(part, {}).items()
        if "dice" in k
    }
    print(f"{name}: {result.steps} steps; {shown}", flush=True)


def update_record(work: Path, key: str, value: dict) -> dict:
    """Add one key to a run's record, read just before writing: phases that score the same
    run side by side (``test``, ``samplers``) must not overwrite each other's keys."""
    path = work / "record.json"
    record = json.loads(path.read_text())
    record[key] = value
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(path)
    return record


def earlier_child(args: argparse.Namespace) -> tuple[Path, Segmenter]:
    """The folder of the run the arguments name, and its registered child to score."""
    work = args.work / run_name(args.task, args.corrections, args.recipe, args.holdout, args.repeat)
    return work, Segmenter(ModelRegistry(work / "registry").load("child"), device="cpu")


def test_scores(args: argparse.Namespace) -> None:
    """Score an earlier run's child on Test (the chosen recipe's own 8-correction run)."""
    _, test = splits(args.data)
    work, child = earlier_child(args)
    record = update_record(work, "test", score(child, test, args.task))
    print(
        f"{work.name}: Test { ({k: round(v, 4) for k, v in record['test'].items() if 'dice' in k}) }",
        flush=True,
    )


OTHER_SAMPLERS = {  # a child trained at the noisy end only must still sample with the others
    "ddim-10x5": SamplingSettings(sampler="ddim", steps=10, ensemble=5, seed=0),
    "dpm++-5x5": SamplingSettings(sampler="dpm++", steps=5, ensemble=5, seed=0),
    "ddpm-100x1": SamplingSettings(sampler="ddpm", steps=100, ensemble=1, seed=0),
}


def other_samplers(args: argparse.Namespace) -> None:
    """Score an earlier run's child on the selection images with the other samplers."""
    training, _ = splits(args.data)
    work, child = earlier_child(args)
    scores = {
        name: score(child, training[SELECTION], args.task, settings=settings)
        for name, settings in OTHER_SAMPLERS.items()
    }
    record = update_record(work, "selection_other_samplers", scores)
    for name, summary in record["selection_other_samplers"].items():
        print(f"{work.name} {name}: { ({k: round(v, 4) for k, v in summary.items() if 'dice' in k}) }")


def records(work: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(work.glob("*/record.json"))}


TIE = 0.002  # disc + cup Dice closer than this on 16 images is noise, not a difference


def choose(args: argparse.Namespace) -> None:
    """The recipe with the best disc + cup Dice on the selection images (8 corrections, disc-cup).

    Recipes within :data:`TIE` of the best are ties; the first of them in :data:`RECIPES`
    order wins (the plainer recipe: the EMA variants were added after the first three ran).
    Repeats (``--repeat``) are left out: they measure how much one recipe's score moves
    between two runs, and the choice was made on the first ones.
    """
    candidates = {
        r["recipe"]: r["selection"]
        for r in records(args.work).values()
        if r["task"] == "disc-cup"
        and len(r["corrections"]) == 8
        and not r["holdout"]
        and not r.get("repeat")
        and "selection" in r
    }
    total = {recipe: s["disc_dice"] + s["cup_dice"] for recipe, s in candidates.items()}
    for recipe, s in candidates.items():
        print(
            f"{recipe}: selection disc {s['disc_dice']:.4f}, cup {s['cup_dice']:.4f}, sum {total[recipe]:.4f}"
        )
    best = max(total.values())
    chosen = next(recipe for recipe in RECIPES if recipe in total and total[recipe] >= best - TIE)
    print(f"chosen: {chosen}")
    (args.work / "chosen.txt").write_text(chosen + "\n")


def baseline(train_masks: list[np.ndarray], truths: list[np.ndarray], task: str) -> dict[str, float]:
    frequencies = majority_map([task_labels(m, "disc-cup") for m in train_masks])
    maps = [task_labels(resize(frequencies[None], t.shape)[0].argmax(0).numpy(), task) for t in truths]
    summary = summarise_scores(
        [structure_scores(m, task_labels(t, task)) for m, t in zip(maps, truths, strict=True)]
    )
    return {
        k: v for k, v in summary.items() if "dice" in k and (task == "disc-cup" or not k.startswith("cup"))
    }


def report(args: argparse.Namespace) -> None:
    """Every run beside the majority maps, into the results JSON."""
    training, test = splits(args.data)
    truths = [read_mask(p.mask) for p in test]
    masks = {p.name: read_mask(p.mask) for p in training}
    runs = records(args.work)
    for record in runs.values():
        if "test" in record:
            own = [masks[name] for name in record["corrections"]]
            record["test_majority_map_of_these_corrections"] = baseline(own, truths, record["task"])
    chosen = (args.work / "chosen.txt").read_text().strip()
    write_result(
        "finetune_drishti_adapt",
        {
            "environment": environment("cpu"),
            "parent": "default (grey, binary, thyroid ultrasound, 96x96)",
            "sampling": SETTINGS.to_dict(),
            "recipes": {
                k: {kk: (vv.__dict__ if isinstance(vv, AugmentConfig) else vv) for kk, vv in v.items()}
                for k, v in RECIPES.items()
            },
            "chosen_recipe": chosen,
            "chosen_on": "disc + cup Dice on Training images 16-31 of the 8-correction disc-cup runs",
            "test_images": len(test),
            "test_majority_map_of_all_50_training": {
                t: baseline(list(masks.values()), truths, t) for t in TASKS
            },
            "runs": runs,
        },
    )
    for name, record in runs.items():
        if "test" in record:
            t, b = record["test"], record["test_majority_map_of_these_corrections"]
            cup = f", cup {t['cup_dice']:.4f} (map {b['cup_dice']:.4f})" if "cup_dice" in t else ""
            print(
                f"{name}: {record['steps']} steps; Test disc {t['disc_dice']:.4f} (map {b['disc_dice']:.4f}){cup}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=["run", "test", "samplers", "choose", "report"])
    parser.add_argument("--task", choices=TASKS, default="disc-cup")
    parser.add_argument("--recipe", choices=list(RECIPES), default="cosine-1e-3")
    parser.add_argument("--corrections", type=int, default=8)
    parser.add_argument("--holdout", type=float, default=0.0, help="fraction held out for validation")
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="N > 0: the same run again, recorded beside the first (choose uses first runs only)",
    )
    parser.add_argument("--score", choices=["selection", "test", "both"], default="selection")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/drishti_roi"))
    parser.add_argument("--work", type=Path, default=Path("runs/drishti_adapt"))
    parser.add_argument("--minutes", type=float, default=10, help="CPU minutes of training per run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase == "run" and not 1 <= args.corrections <= SELECTION.start:
        parser.error(
            f"--corrections must be 1..{SELECTION.start} (Training images from {SELECTION.start} on choose)"
        )
    phases = {"run": run, "test": test_scores, "samplers": other_samplers, "choose": choose, "report": report}
    phases[args.phase](args)


if __name__ == "__main__":
    main()
