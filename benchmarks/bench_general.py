"""Box prompts on every shared test split, beside the ellipse inscribed in the same box.

    nice -n 5 python benchmarks/bench_general.py --model general --threads 1

For each dataset's *test* split (``../shared/data``; binary: every non-zero label is the
object, so Drishti-GS1 gives the optic disc):

- **box prompts** from the expert mask: one box per 8-connected component (components under
  ``--min-object-pixels`` are not objects; an image with more than ``--max-objects``
  components keeps its largest ones, and is then scored against those components only, for
  the model and the ellipse alike); ``exact`` boxes, and boxes ``loose10`` / ``loose20``
  whose every edge moved outward by a random share, uniform between 0 and 10 % / 20 %, of
  the box's side (fixed seed) — each beside the **ellipse inscribed in the same box**;
- **whole image**: the image segmented with no prompt, by ``--whole-model`` (the shipped
  whole-image model) and by ``--model``, beside the **fixed blob** (the thresholded mean of
  the training split's masks);
- **scale** (DDTI): the test crops at 0.5x, 1x and 2x their native frame size (DDTI's crop
  rule undone, as ``bench_prompts.py --native`` does), boxes from their masks.

Dice is per image (the union of its objects against the union of its scored components),
then the mean over images. CPU seconds per object are those of the box-prompted runs, with
the threads given (1 by default). Results go to ``benchmarks/results/general_box_prompts.json``
(``--out``), which ``make_table.py`` renders.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, fixed_blob_baseline, write_result
from bench_prompts import native_size

from medsegdiff_training.checkpoint import Checkpoint, load_checkpoint
from medsegdiff_training.data.io import read_array, read_mask
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import dice
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import Box, inscribed_ellipse, loosen_box, resize_bilinear

DATASETS = ("busi", "ph2", "lgg_mri", "ddti", "dsb2018", "drishti_roi")
TRAIN_SPLIT = {"drishti_roi": "Training"}
TEST_SPLIT = {"drishti_roi": "Test"}
LOOSENESS = {"exact": 0.0, "loose10": 0.1, "loose20": 0.2}
SCALES = (0.5, 1.0, 2.0)


def load_model(spec: str) -> Checkpoint:
    """A checkpoint folder, or a registry version by name."""
    path = Path(spec)
    if path.is_dir():
        return load_checkpoint(path)
    from medsegdiff_training.registry import ModelRegistry

    return ModelRegistry().load(spec)


def read_split(
    data: Path, split: str, limit: int | None = None, names: list[str] | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, binary mask) of a split (only ``names`` of it when given)."""
    pairs = find_pairs(data / "images", data / "masks", data / "split.csv", split)
    if names is not None:
        pairs = [pair for pair in pairs if pair.name in set(names)]
    pairs = pairs[:limit]
    found = []
    for pair in pairs:
        mask = read_mask(pair.mask)
        mask = mask[..., 0] if mask.ndim == 3 else mask
        found.append((pair.name, read_array(pair.image), mask > (127 if mask.max() > 127 else 0)))
    return found


def objects_of(mask: np.ndarray, min_pixels: int, max_objects: int) -> tuple[list[Box], np.ndarray]:
    """(boxes, the mask of the scored components): every component of at least ``min_pixels``,
    the largest ``max_objects`` of them."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    numbers = [n for n in range(1, count + 1) if sizes[n] >= min_pixels]
    numbers = sorted(numbers, key=lambda n: -sizes[n])[:max_objects]
    found = ndimage.find_objects(components)
    boxes = []
    for number in sorted(numbers):
        rows, columns = found[number - 1]
        boxes.append(Box(columns.start, rows.start, columns.stop, rows.stop))
    return boxes, np.isin(components, numbers)


def model_folder(spec: str) -> Path | None:
    """The folder of a checkpoint folder or of a registry version by name (None: it has none,
    e.g. ``untrained``)."""
    from medsegdiff_training.errors import RegistryError
    from medsegdiff_training.registry import ModelRegistry

    if Path(spec).is_dir():
        return Path(spec)
    try:
        return ModelRegistry().get(spec).path
    except RegistryError:
        return None


def budget_of(checkpoint: Checkpoint, folder: Path | None = None) -> str | None:
    """The training budget a checkpoint records, in words ("9,000 steps, 150 CPU-minutes");
    for a shipped model whose card lists several stages, all of them together."""
    card = folder / "model_card.json" if folder is not None else None
    if card is not None and card.is_file():
        record = json.loads(card.read_text()).get("training") or {}
        minutes = record.get("cpu_time_minutes")
        if record.get("stages") and record.get("steps") and minutes:
            return f"{record['steps']:,} steps, {minutes:g} CPU-minutes in {len(record['stages'])} stages"
    training = checkpoint.metadata.get("training") or {}
    config = training.get("config") or {}
    if not training.get("steps"):
        return None
    minutes = config.get("minutes")
    clock = "CPU-minutes" if config.get("clock") == "cpu" else "minutes"
    return f"{training['steps']:,} steps" + (f", {minutes:g} {clock}" if minutes else "")


def held_out_names(checkpoint: Checkpoint) -> dict[str, list[str]]:
    """Dataset -> the names of the training images a multi-dataset run held out for validation."""
    found: dict[str, list[str]] = {}
    for dataset in (checkpoint.metadata.get("training") or {}).get("datasets") or []:
        prefix = dataset["name"] + "/"
        found[dataset["name"]] = [name.removeprefix(prefix) for name in dataset["validation_images"]]
    return found


def box_scores(
    segmenter: Segmenter,
    image: np.ndarray,
    boxes: list[Box],
    truth: np.ndarray,
    settings: SamplingSettings,
) -> tuple[float, float, float]:
    """(model Dice, ellipse Dice, CPU seconds) of one image's boxes."""
    started = time.process_time()
    labels = segment_prompts(segmenter, image, boxes, settings).labels
    seconds = time.process_time() - started
    ellipse = inscribed_ellipse(boxes, truth.shape)
    return dice(labels > 0, truth), dice(ellipse > 0, truth), seconds


def dataset_scores(
    name: str,
    data: Path,
    segmenter: Segmenter,
    whole: Segmenter | None,
    settings: SamplingSettings,
    args: argparse.Namespace,
) -> dict:
    """Every figure of one dataset's test split."""
    rng = np.random.default_rng(args.seed)
    held_out = args.held_out_names.get(name) if args.held_out_names is not None else None
    split = TRAIN_SPLIT.get(name, "train") if held_out is not None else TEST_SPLIT.get(name, "test")
    test = read_split(data, split, args.limit, held_out)
    rows, seconds, objects, without_object = [], 0.0, 0, []
    for image_name, image, mask in test:
        boxes, scored = objects_of(mask, args.min_object_pixels, args.max_objects)
        if not boxes:  # no expert object to draw a box around: not a box-prompt test image
            without_object.append(image_name)
            print(
                f"{name} {image_name}: no object of {args.min_object_pixels} pixels or more, left out",
                flush=True,
            )
            continue
        row: dict = {"name": image_name, "objects": len(boxes)}
        for variant, fraction in LOOSENESS.items():
            loose = [loosen_box(box, fraction, rng, mask.shape) for box in boxes]
            model, ellipse, spent = box_scores(segmenter, image, loose, scored, settings)
            row[variant], row[f"{variant}_ellipse"] = model, ellipse
            seconds, objects = seconds + spent, objects + len(boxes)
        if whole is not None:
            row["whole_image"] = dice(whole.segment(image, settings).labels > 0, mask)
        if args.whole_with_box_model:
            row["whole_image_box_model"] = dice(segmenter.segment(image, settings).labels > 0, mask)
        rows.append(row)
        print(
            f"{name} {image_name}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )
    train_masks = [
        mask for n, _, mask in read_split(data, TRAIN_SPLIT.get(name, "train")) if n not in (held_out or ())
    ]
    blob = fixed_blob_baseline(train_masks, [mask for _, _, mask in test])["dice"]
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    summary = {key: float(np.mean([row[key] for row in rows])) for key in keys}
    summary["fixed_blob"] = float(blob)
    return {
        "images": len(rows),
        "left_out_without_object": without_object,
        "objects": int(sum(row["objects"] for row in rows)),
        "summary": summary,
        "cpu_seconds_per_object": seconds / max(objects, 1),
        "per_image": rows,
    }


def scale_scores(
    data: Path, segmenter: Segmenter, settings: SamplingSettings, args: argparse.Namespace
) -> dict:
    """DDTI test crops at 0.5x, 1x and 2x their native frame size: box Dice and the ellipse."""
    test = [(n, i, m) for n, i, m in read_split(data, "test", args.limit) if m.any()]
    result = {}
    for factor in SCALES:
        model_scores, ellipse_scores = [], []
        for _, image, mask in test:
            native = native_size(mask)
            size = (max(8, round(native[0] * factor)), max(8, round(native[1] * factor)))
            grey = image[..., 0] if image.ndim == 3 else image
            scaled = resize_bilinear(grey.astype(np.float32), size)
            truth = resize_bilinear(mask.astype(np.float32), size) > 0.5
            boxes, scored = objects_of(truth, args.min_object_pixels, args.max_objects)
            if not boxes:  # the object shrank below the smallest one scored
                continue
            model, ellipse, _ = box_scores(segmenter, scaled, boxes, scored, settings)
            model_scores.append(model)
            ellipse_scores.append(ellipse)
        result[f"{factor:g}x"] = {
            "box": float(np.mean(model_scores)),
            "ellipse": float(np.mean(ellipse_scores)),
            "images": len(test),
        }
        print(f"ddti at {factor:g}x native: {result[f'{factor:g}x']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="general", help="the box-prompt model (registry name or folder)")
    parser.add_argument("--whole-model", default="default", help="the whole-image model ('' for none)")
    parser.add_argument(
        "--whole-with-box-model", action="store_true", help="also segment whole images with --model"
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--no-scale", action="store_true", help="skip the DDTI scale test")
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="score on the training images the model's checkpoint held out for validation, not on "
        "the test splits (to choose a recipe without touching them); no scale test",
    )
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-object-pixels", type=int, default=10)
    parser.add_argument("--max-objects", type=int, default=30)
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images of each split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="general_box_prompts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_model(args.model)
    args.held_out_names = held_out_names(checkpoint) if args.held_out else None
    if args.held_out:
        args.datasets = [name for name in args.datasets if name in args.held_out_names]
        args.no_scale = True
    segmenter = Segmenter(checkpoint, device="cpu")
    whole = Segmenter(load_model(args.whole_model), device="cpu") if args.whole_model else None
    settings = SamplingSettings(
        sampler=args.sampler, steps=args.steps, ensemble=args.ensemble, seed=args.seed
    )
    datasets = {
        name: dataset_scores(name, args.data / name, segmenter, whole, settings, args)
        for name in args.datasets
    }
    scale = (
        None
        if args.no_scale or "ddti" not in args.datasets
        else scale_scores(args.data / "ddti", segmenter, settings, args)
    )
    result = {
        "benchmark": "box prompts from the expert masks on every test split, beside the ellipse in the same box",
        "model": args.model,
        "model_description": checkpoint.metadata.get("description"),
        "budget": budget_of(checkpoint, model_folder(args.model)),
        "whole_model": args.whole_model or None,
        "crop_rule": checkpoint.preprocess.prompt_crop_rule().to_dict(),
        "prompt_encoding": checkpoint.preprocess.prompt_encoding,
        "settings": settings.to_dict(),
        "looseness": "each edge moved outward by uniform(0, f) of the box's side, f = 0, 0.1, 0.2",
        "objects": {"min_pixels": args.min_object_pixels, "max_per_image": args.max_objects},
        "limit": args.limit,
        "scored_on": "held-out training images" if args.held_out else "test splits",
        "datasets": datasets,
        "ddti_scale": scale,
        "environment": environment("cpu"),
    }
    for name, found in datasets.items():
        print(name, {k: round(v, 4) for k, v in found["summary"].items()})
    write_result(args.out, result)


if __name__ == "__main__":
    main()
