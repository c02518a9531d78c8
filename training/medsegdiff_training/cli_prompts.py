"""``medsegdiff predict --boxes`` and ``medsegdiff evaluate --boxes / --boxes-from-masks``.

The CLI sends ``predict`` and ``evaluate`` here (``command_predict_boxes``,
``command_evaluate_boxes``) when boxes are given; this module uses the plain commands'
helpers, never the other way round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_commands import (
    EXIT_CANCELLED,
    EXIT_OK,
    evaluation_document,
    evaluation_pairs,
    load_model,
    note,
    out,
    print_evaluation,
    registry_of,
    sampling_settings,
    segmenter_of,
)
from .cli_progress import CountReporter, cancel_on_signals
from .errors import ConfigError
from .prompt_files import check_box_names, evaluate_pairs_with_boxes, predict_files_with_boxes, read_boxes_csv


def command_predict_boxes(args: argparse.Namespace) -> int:
    """Segment the boxed objects of each input; inputs without boxes are skipped (and said so)."""
    from .prediction import list_inputs

    boxes = read_boxes_csv(args.boxes)
    files = list_inputs(args.inputs)
    check_box_names(boxes, files)
    settings = sampling_settings(args)
    checkpoint, name = load_model(args.model, registry_of(args), "cpu", for_boxes=True)
    segmenter = segmenter_of(args, checkpoint)
    count = sum(len(found) for found in boxes.values())
    note(f"Segmenting {count} boxed object(s) in {len(boxes)} image(s) with {name}")
    with cancel_on_signals() as cancel:
        written, skipped = predict_files_with_boxes(
            segmenter,
            files,
            boxes,
            Path(args.out),
            settings,
            label_format=args.format,
            overwrite=args.overwrite,
            progress=CountReporter("segmented"),
            cancel=cancel.is_set,
            batch_size=args.batch_size,
        )
    if skipped:
        note(
            f"{len(skipped)} input(s) have no boxes in {args.boxes} and were skipped, e.g. {skipped[0].name}"
        )
    for path in written:
        out(str(path))
    return EXIT_CANCELLED if len(written) < len(files) - len(skipped) else EXIT_OK


def command_evaluate_boxes(args: argparse.Namespace) -> int:
    """Score box-prompted segmentation beside the inscribed-ellipse baseline."""
    if args.structures:  # said, not silently ignored
        raise ConfigError(
            "--structures does not apply with box prompts: each box's object is scored as foreground "
            "against the mask (evaluate without --boxes/--boxes-from-masks to score structures)."
        )
    pairs = evaluation_pairs(args)
    boxes = None if args.boxes_from_masks else read_boxes_csv(args.boxes)
    settings = sampling_settings(args)
    checkpoint, name = load_model(args.model, registry_of(args), "cpu", for_boxes=True)
    segmenter = segmenter_of(args, checkpoint)
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
    for warning in report.warnings:
        note(f"medsegdiff: warning: {warning}")
    document = evaluation_document(name, report, checkpoint.model_config.num_classes, args.per_image)
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
