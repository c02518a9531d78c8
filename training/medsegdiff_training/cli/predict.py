"""``medsegdiff predict``: segment image files into label-map files, whole images or the
objects in boxes (``--boxes FILE``)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from ..errors import EXIT_CANCELLED, EXIT_OK
from .common import add_registry
from .output import note, out
from .progress import CountReporter, cancel_on_signals
from .sampling_options import add_sampling, add_speed, sampler_of


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand's options."""
    parser = subparsers.add_parser("predict", help="segment image files into label-map files")
    parser.add_argument(
        "inputs", nargs="+", help="image files or folders (PNG, JPEG, GIF, TIFF, NIfTI, DICOM)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (same file stems)"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "tiff", "nifti", "png", "dicom"),
        help="auto: NIfTI for NIfTI, TIFF for TIFF, DICOM SEG for DICOM, else PNG",
    )
    parser.add_argument(
        "--uncertainty", action="store_true", help="also write <stem>_uncertainty.tif (ensemble >= 2)"
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--boxes",
        type=Path,
        default=None,
        metavar="FILE",
        help="segment the objects in these boxes: a CSV image,x0,y0,x1,y1 (pixels, x = column, "
        "x1/y1 exclusive); label ids 1..n in file order",
    )
    add_sampling(parser, batch_size=8)
    add_speed(parser, training=False)
    add_registry(parser)


def command_predict(args: argparse.Namespace) -> int:
    """Segment every input (with ``--boxes``: the boxed objects) and print the files written."""
    if args.boxes is not None:
        return predict_boxes(args)
    from ..prediction import list_inputs, predict_files

    files = list_inputs(args.inputs)
    segmenter, settings, name = sampler_of(args)
    note(
        f"Segmenting {len(files)} file(s) with {name} ({settings.sampler}, {settings.resolved_steps()} steps)"
    )
    with cancel_on_signals() as cancel:
        written = predict_files(
            segmenter, files, Path(args.out), settings, uncertainty=args.uncertainty, **writing(args, cancel)
        )
    for path in written:
        out(str(path))
    return EXIT_CANCELLED if len(written) < len(files) else EXIT_OK


def predict_boxes(args: argparse.Namespace) -> int:
    """Segment the boxed objects of each input; inputs without boxes are skipped (and said so)."""
    from ..prediction import list_inputs
    from ..prompt_files import check_box_names, predict_files_with_boxes, read_boxes_csv

    boxes = read_boxes_csv(args.boxes)
    files = list_inputs(args.inputs)
    check_box_names(boxes, files)
    segmenter, settings, name = sampler_of(args, for_boxes=True)
    count = sum(len(found) for found in boxes.values())
    note(f"Segmenting {count} boxed object(s) in {len(boxes)} image(s) with {name}")
    with cancel_on_signals() as cancel:
        written, skipped = predict_files_with_boxes(
            segmenter, files, boxes, Path(args.out), settings, **writing(args, cancel)
        )
    if skipped:
        note(
            f"{len(skipped)} input(s) have no boxes in {args.boxes} and were skipped, e.g. {skipped[0].name}"
        )
    for path in written:
        out(str(path))
    return EXIT_CANCELLED if len(written) < len(files) - len(skipped) else EXIT_OK


def writing(args: argparse.Namespace, cancel: threading.Event) -> dict[str, Any]:
    """What both ways of predicting take alike: the label format, batches, overwriting,
    progress on stderr and the cancel token."""
    return {
        "label_format": args.format,
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "progress": CountReporter("segmented"),
        "cancel": cancel.is_set,
    }
