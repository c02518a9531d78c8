"""``medsegdiff evaluate``: score a model on images with expert masks, whole images or box
prompts (``--boxes FILE`` / ``--boxes-from-masks``, beside the inscribed-ellipse baseline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_CANCELLED, EXIT_OK, ConfigError
from .common import add_registry, check_limit
from .output import PROG, note, number, out
from .progress import CountReporter, cancel_on_signals, json_safe
from .sampling_options import add_sampling, add_speed, sampler_of

if TYPE_CHECKING:
    from ..data.pairs import Pair


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``evaluate`` subcommand's options."""
    parser = subparsers.add_parser("evaluate", help="score a model on images with ground-truth masks")
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--masks", required=True, type=Path)
    parser.add_argument("--split-csv", type=Path, default=None)
    parser.add_argument("--split", default=None, help="evaluate on this split of --split-csv only")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--per-image", action="store_true", help="with --json: every image's scores too")
    parser.add_argument(
        "--structures",
        metavar="NAME=CLASSES,...",
        default=None,
        help="also score unions of classes, e.g. 'disc=1+2,cup=2' for drishti-disc-cup "
        "(the optic disc is rim + cup)",
    )
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument(
        "--boxes", type=Path, default=None, metavar="FILE", help="box prompts: a CSV image,x0,y0,x1,y1"
    )
    prompts.add_argument(
        "--boxes-from-masks",
        action="store_true",
        help="box prompts: one box per connected component of each expert mask",
    )
    add_sampling(parser, batch_size=8)
    add_speed(parser, training=False)
    add_registry(parser)


def command_evaluate(args: argparse.Namespace) -> int:
    """Score the model (with box prompts when given) and print the scores (text or ``--json``)."""
    if args.boxes is not None or args.boxes_from_masks:
        return evaluate_boxes(args)
    from ..evaluation import evaluate_pairs

    pairs = evaluation_pairs(args)
    segmenter, settings, name = sampler_of(args)
    num_classes = segmenter.checkpoint.model_config.num_classes
    structures = evaluation_structures(args.structures, num_classes)
    note(
        f"Evaluating {name} on {len(pairs)} images ({settings.sampler}, {settings.resolved_steps()} steps, "
        f"ensemble {settings.ensemble})"
    )
    with cancel_on_signals() as cancel:
        report = evaluate_pairs(
            segmenter,
            pairs,
            settings,
            batch_size=args.batch_size,
            progress=CountReporter("evaluated"),
            cancel=cancel.is_set,
            structures=structures,
        )
    document = evaluation_document(name, report, num_classes, args.per_image, structures)
    say_warnings(report)
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        print_evaluation(document)
    return EXIT_CANCELLED if cancel.is_set() else EXIT_OK


def evaluate_boxes(args: argparse.Namespace) -> int:
    """Score box-prompted segmentation beside the inscribed-ellipse baseline."""
    from ..prompt_files import evaluate_pairs_with_boxes, read_boxes_csv

    if args.structures:  # said, not silently ignored
        raise ConfigError(
            "--structures does not apply with box prompts: each box's object is scored as foreground "
            "against the mask (evaluate without --boxes/--boxes-from-masks to score structures)."
        )
    pairs = evaluation_pairs(args)
    boxes = None if args.boxes_from_masks else read_boxes_csv(args.boxes)
    segmenter, settings, name = sampler_of(args, for_boxes=True)
    source = "one box per mask component" if boxes is None else str(args.boxes)
    note(f"Evaluating {name} on {len(pairs)} images with box prompts ({source})")
    with cancel_on_signals() as cancel:
        report = evaluate_pairs_with_boxes(
            segmenter,
            pairs,
            boxes,
            settings,
            progress=CountReporter("evaluated"),
            cancel=cancel.is_set,
            batch_size=args.batch_size,
            boxes_source=str(args.boxes),
        )
    say_warnings(report)
    num_classes = segmenter.checkpoint.model_config.num_classes
    document = evaluation_document(name, report, num_classes, args.per_image)
    document["prompts"] = source
    document["ellipse_baseline_dice"] = report.summary.get("ellipse_dice")
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        print_evaluation(document)
        out(
            f"  box prompts: {source}; the ellipse inscribed in each box (no model) scores Dice "
            f"{document['ellipse_baseline_dice']:.3f}"
        )
    return EXIT_CANCELLED if document["images"] < len(pairs) else EXIT_OK


def evaluation_pairs(args: argparse.Namespace) -> list[Pair]:
    """The image/mask pairs ``evaluate`` scores (its split and ``--limit``)."""
    from ..data.pairs import find_pairs

    if args.split and not args.split_csv:
        raise ConfigError("--split needs --split-csv (a name,split CSV).")
    check_limit(args.limit)
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)
    return pairs[: args.limit] if args.limit else pairs


def evaluation_structures(text: str | None, num_classes: int) -> dict[str, tuple[int, ...]] | None:
    """``--structures`` checked against the model's classes (ConfigError with what to write)."""
    from ..metrics import parse_structures

    if not text:
        return None
    try:
        structures = parse_structures(text)
    except ValueError as error:
        raise ConfigError(f"--structures: {error}") from None
    for name, classes in structures.items():
        if max(classes) >= num_classes:
            raise ConfigError(
                f"--structures: {name!r} names class {max(classes)}, but the model has classes "
                f"0..{num_classes - 1} (0 is the background)."
            )
    return structures


def say_warnings(report: Any) -> None:
    for warning in report.warnings:
        note(f"{PROG}: warning: {warning}")


def evaluation_document(
    name: str,
    report: Any,
    num_classes: int,
    per_image: bool,
    structures: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """What ``evaluate --json`` prints: the means, per class, per structure (and per image)."""
    summary = report.summary
    classes = [1] if num_classes == 2 else list(range(1, num_classes))
    document = {
        "model": name,
        "images": int(summary.get("count", 0)),
        "settings": report.settings,
        "mean": {
            key: summary.get(key) for key in ("dice", "iou", "hd95", "dice_5threshold") if key in summary
        },
        "per_class": {
            str(k): {m: summary.get(f"{m}_class{k}") for m in ("dice", "iou", "hd95")} for k in classes
        },
        "hd95_undefined": int(summary.get("hd95_undefined", 0)),
        "warnings": list(getattr(report, "warnings", [])),
    }
    if structures:
        document["structures"] = {
            name: {
                "classes": list(classes),
                **{m: summary.get(f"{name}_{m}") for m in ("dice", "iou", "hd95")},
            }
            for name, classes in structures.items()
        }
    if per_image:
        document["per_image"] = report.per_image
    return json_safe(document)


def print_evaluation(document: dict[str, Any]) -> None:
    """The evaluation document as a few text lines: the mean, then a line per class and structure."""
    mean = document["mean"]
    out(
        f"{document['model']} on {document['images']} images "
        f"({document['settings']['sampler']}, {document['settings']['steps']} steps, "
        f"ensemble {document['settings']['ensemble']})"
    )
    line = (
        f"  mean       Dice {number(mean.get('dice'))}  IoU {number(mean.get('iou'))}  "
        f"HD95 {number(mean.get('hd95'), 1)} px"
    )
    if "dice_5threshold" in mean:
        line += f"  5-threshold Dice {number(mean['dice_5threshold'])}"
    out(line)
    for k, values in document["per_class"].items():
        out(
            f"  class {k:<4} Dice {number(values['dice'])}  IoU {number(values['iou'])}  "
            f"HD95 {number(values['hd95'], 1)} px"
        )
    for name, values in document.get("structures", {}).items():
        classes = "+".join(map(str, values["classes"]))
        dice, iou, hd95 = (number(values["dice"]), number(values["iou"]), number(values["hd95"], 1))
        label = f"{name} ({classes})"
        out(f"  {label:<10} Dice {dice}  IoU {iou}  HD95 {hd95} px")  # in line with the class rows
    if document["hd95_undefined"]:
        out(f"  HD95 undefined (one mask empty) on {document['hd95_undefined']} images, left out of the mean")
