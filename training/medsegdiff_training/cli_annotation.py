"""``medsegdiff simulate-annotation``: replay an annotation queue with expert masks.

The parser part is torch-free (``medsegdiff --help`` stays fast); the command imports the
core when it runs (the CLI imports this module's ``command_simulate_annotation`` by name).

Every image of a dataset is pre-segmented by the queue's model, the expert mask is
accepted as the annotator's correction into a corrections store, and (with
``--finetune-every N``) the model is fine-tuned on the store every N accepted images, as
the napari queue widget does. The JSON written to ``--out`` has a record per image
(pre-segmentation Dice, fraction of pixels changed, uncertainty score, model version),
per fine-tune, and per block of 10 images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import ConfigError


def add_simulate_annotation(subparsers: argparse._SubParsersAction, common, sampling, speed) -> None:
    """The ``simulate-annotation`` sub-command's arguments (``common``/``sampling``/``speed``
    add the shared ones; the speed options apply to pre-segmenting and to the fine-tunes)."""
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
    sampling(parser, batch_size=1)
    speed(parser, training=False)
    common(parser)
    parser.set_defaults(command_name="simulate_annotation", command_module=".cli_annotation")


def command_simulate_annotation(args: argparse.Namespace) -> int:
    from . import cli_commands as commands
    from .annotation_session import SESSION_FINETUNE
    from .annotation_simulation import simulate_annotation
    from .cli_progress import cancel_on_signals, json_safe
    from .corrections import CorrectionsStore
    from .data.pairs import find_pairs

    if args.split and not args.split_csv:
        raise ConfigError("--split needs --split-csv (a name,split CSV).")
    if args.minutes_per_finetune <= 0:
        raise ConfigError("--minutes-per-finetune must be more than 0.")
    if args.out.is_dir():  # now, not after the whole simulation
        example = args.out / "simulation.json"
        raise ConfigError(f"--out {args.out} is a folder; give the JSON report's file name, e.g. {example}.")
    commands.check_limit(args.limit)
    store_root = args.store or args.out.with_name(args.out.name + ".store")
    if store_root.exists() and any(store_root.iterdir()):
        raise ConfigError(f"{store_root} is not empty: give a new --store folder for a fresh simulation.")
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)[: args.limit or None]
    registry = commands.registry_of(args)
    model = args.model or registry.selected()
    settings = commands.sampling_settings(args)
    speed = commands.segmenter_options(args)  # a --no-amp / --precision contradiction stops here
    # the same speed choices train the fine-tunes (CUDA graphs are a sampling path only)
    finetune = SESSION_FINETUNE.replace(
        steps=args.steps_per_finetune,
        minutes=args.minutes_per_finetune,
        device=args.device,
        precision=speed["precision"],
        channels_last=speed["channels_last"],
        compile=speed["compile"],
    )
    commands.note(
        f"Simulating a {args.order}-order queue of {len(pairs)} images with {model}"
        + (
            f", fine-tuning every {args.finetune_every} accepted"
            if args.finetune_every
            else ", no fine-tuning"
        )
    )

    def on_image(record: dict) -> None:
        commands.note(
            f"  {record['position']:4d} {record['name']}: Dice {record['dice']:.3f}, "
            f"changed {100 * record['fraction_changed']:.2f}% ({record['model_version']})"
        )

    def on_finetune(record: dict) -> None:
        before, after = record["validation_dice_before"], record["validation_dice_after"]
        scores = "" if before is None or after is None else f", held-out Dice {before:.3f} -> {after:.3f}"
        verdict = "switched" if record["switched"] else "kept " + record["parent"]
        if record["version"] is None:  # cancelled (SIGTERM, Ctrl-C): nothing was registered
            stopped = f"fine-tune stopped after {record['steps']} steps; nothing registered"
            commands.note(f"  {stopped}, kept {record['parent']}")
            return
        commands.note(f"  fine-tuned {record['version']} in {record['steps']} steps{scores}: {verdict}")

    with cancel_on_signals() as cancel:
        result = simulate_annotation(
            pairs,
            store=CorrectionsStore(store_root),
            registry=registry,
            model=model,
            settings=settings,
            finetune_every=args.finetune_every,
            finetune=finetune,
            order=args.order,
            device=args.device,
            speed=speed,
            on_image=on_image,
            on_finetune=on_finetune,
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
        commands.out(
            f"images {block['images']}: mean Dice {block['mean_dice']:.3f}, "
            f"mean pixels changed {100 * block['mean_fraction_changed']:.2f}%"
        )
    return commands.EXIT_CANCELLED if result.cancelled else commands.EXIT_OK
