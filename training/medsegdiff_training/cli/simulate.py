"""``medsegdiff simulate-annotation``: replay an annotation queue with expert masks.

Every image of a dataset is pre-segmented by the queue's model, the expert mask is
accepted as the annotator's correction into a corrections store, and (with
``--finetune-every N``) the model is fine-tuned on the store every N accepted images, as
the napari queue widget does: both drive the one
:class:`~..annotation_session.AnnotationSession`. The JSON written to ``--out`` has a
record per image (pre-segmentation Dice, fraction of pixels changed, uncertainty score,
model version), per fine-tune, and per block of 10 images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..annotation_session import SESSION_FINETUNE
from ..errors import EXIT_CANCELLED, EXIT_OK, ConfigError
from ..finetune_options import FinetuneOptions
from .common import add_registry, check_limit, registry_of
from .output import note, out
from .progress import cancel_on_signals, json_safe
from .sampling_options import add_sampling, add_speed, sampling_settings, segmenter_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``simulate-annotation`` subcommand's options (the speed options apply to
    pre-segmenting and to the fine-tunes)."""
    parser = subparsers.add_parser(
        "simulate-annotation",
        help="replay an annotation queue, expert masks standing in for the annotator's corrections",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of images (the queue)")
    parser.add_argument("--masks", required=True, type=Path, help="folder of expert masks (same stems)")
    parser.add_argument("--split-csv", type=Path, default=None)
    parser.add_argument("--split", default=None, help="only this split of --split-csv")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument(
        "--order", default="file", choices=("file", "uncertain"), help="queue order (default: file)"
    )
    parser.add_argument(
        "--finetune-every", type=int, default=0, metavar="N", help="fine-tune every N accepted (0: never)"
    )
    parser.add_argument("--minutes-per-finetune", type=float, default=3.0, metavar="M")
    parser.add_argument(
        "--steps-per-finetune",
        type=int,
        default=None,
        metavar="S",
        help="step budget too (first reached wins)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="a new corrections store (default: OUT.store/)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.json")
    add_sampling(parser, batch_size=1)
    add_speed(parser, training=False)
    add_registry(parser)


def command_simulate_annotation(args: argparse.Namespace) -> int:
    """Run the simulated queue, write its JSON report and print the mean of each block."""
    from ..annotation_simulation import simulate_annotation
    from ..corrections import CorrectionsStore
    from ..data.pairs import find_pairs

    store_root = checked_store(args)
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)[: args.limit or None]
    registry = registry_of(args)
    model = args.model or registry.selected()
    settings = sampling_settings(args)
    speed = segmenter_options(args)  # a --no-amp / --precision contradiction stops here
    every = f"fine-tuning every {args.finetune_every} accepted" if args.finetune_every else "no fine-tuning"
    note(f"Simulating a {args.order}-order queue of {len(pairs)} images with {model}, {every}")
    with cancel_on_signals() as cancel:
        result = simulate_annotation(
            pairs,
            store=CorrectionsStore(store_root),
            registry=registry,
            model=model,
            settings=settings,
            finetune_every=args.finetune_every,
            finetune=finetune_options(args, speed),
            order=args.order,
            device=args.device,
            speed=speed,
            on_image=say_image,
            on_finetune=say_finetune,
            cancel=cancel,
        )
    document = {
        "model": model,
        "images_folder": str(args.images),
        "order": args.order,
        "finetune_every": args.finetune_every,
        "minutes_per_finetune": args.minutes_per_finetune,
        "settings": settings.to_dict(),
        "speed": speed,
        "store": str(store_root),
        **result.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(document), indent=2))
    for block in result.blocks():
        out(
            f"images {block['images']}: mean Dice {block['mean_dice']:.3f}, "
            f"mean pixels changed {100 * block['mean_fraction_changed']:.2f}%"
        )
    return EXIT_CANCELLED if result.cancelled else EXIT_OK


def checked_store(args: argparse.Namespace) -> Path:
    """The new corrections store's folder, once the options are known to be sound (before any work)."""
    if args.split and not args.split_csv:
        raise ConfigError("--split needs --split-csv (a name,split CSV).")
    if args.minutes_per_finetune <= 0:
        raise ConfigError("--minutes-per-finetune must be more than 0.")
    if args.out.is_dir():  # now, not after the whole simulation
        example = args.out / "simulation.json"
        raise ConfigError(f"--out {args.out} is a folder; give the JSON report's file name, e.g. {example}.")
    check_limit(args.limit)
    store_root: Path = args.store or args.out.with_name(args.out.name + ".store")
    if store_root.exists() and any(store_root.iterdir()):
        raise ConfigError(f"{store_root} is not empty: give a new --store folder for a fresh simulation.")
    return store_root


def finetune_options(args: argparse.Namespace, speed: dict[str, Any]) -> FinetuneOptions:
    """The session's fine-tunes with this budget, trained with the same speed choices
    (CUDA graphs are a sampling path only)."""
    return SESSION_FINETUNE.replace(
        steps=args.steps_per_finetune,
        minutes=args.minutes_per_finetune,
        device=args.device,
        precision=speed["precision"],
        channels_last=speed["channels_last"],
        compile=speed["compile"],
    )


def say_image(record: dict) -> None:
    note(
        f"  {record['position']:4d} {record['name']}: Dice {record['dice']:.3f}, "
        f"changed {100 * record['fraction_changed']:.2f}% ({record['model_version']})"
    )


def say_finetune(record: dict) -> None:
    if record["version"] is None:  # cancelled (SIGTERM, Ctrl-C): nothing was registered
        stopped = f"fine-tune stopped after {record['steps']} steps; nothing registered"
        note(f"  {stopped}, kept {record['parent']}")
        return
    before, after = record["validation_dice_before"], record["validation_dice_after"]
    scores = "" if before is None or after is None else f", held-out Dice {before:.3f} -> {after:.3f}"
    verdict = "switched" if record["switched"] else "kept " + record["parent"]
    note(f"  fine-tuned {record['version']} in {record['steps']} steps{scores}: {verdict}")
