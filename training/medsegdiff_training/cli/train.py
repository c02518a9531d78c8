"""``medsegdiff train``: one dataset or several, whole images or crops around the objects.

This module turns the command line into a :class:`~..training_run.TrainingRequest` (the
datasets it names, split by :func:`~..training_data.split_sources`; the network; the
recipe as a :class:`~..train_config.TrainConfig`) and runs it with
:func:`~..training_run.run_training`, as the scripts that train the shipped models do.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import NAMED_CONFIGS, image_size_of
from ..data.sources import DatasetSource, check_distinct, read_dataset_list, source_from_folder
from ..errors import EXIT_CANCELLED, EXIT_OK, ConfigError
from ..train_config import TrainConfig, train_config_from
from ..validation import NORMALISATIONS
from .common import add_architecture
from .output import note, out
from .progress import TrainingReporter, cancel_on_signals, emit_json
from .sampling_options import add_speed, precision_of
from .train_crops import add_crop_options, crop_recipe_of, crop_rule_of
from .training_options import add_long_run, add_recipe, report_cancelled

if TYPE_CHECKING:
    from ..training_run import TrainingOutcome, TrainingRequest

TRAIN = TrainConfig()  # the defaults the options show


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand's options."""
    parser = subparsers.add_parser(
        "train", help="train a model on folders of images and masks (one dataset or several)"
    )
    _add_data(parser)
    _add_network(parser)
    add_crop_options(parser)
    _add_budget(parser)
    add_speed(parser, training=True)
    _add_run(parser)
    add_long_run(parser, "JSON lines on stdout instead of text progress")


def _add_data(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (give --images and --masks, or --dataset / --datasets)")
    data.add_argument("--images", type=Path, default=None, help="folder of images")
    data.add_argument(
        "--masks", type=Path, default=None, help="folder of masks (matched to images by file stem)"
    )
    data.add_argument("--split-csv", type=Path, default=None, help="CSV of name,split (header optional)")
    data.add_argument(
        "--dataset",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="a dataset folder with images/, masks/ and (for --split) split.csv; give it once per "
        "dataset to train one model on several (each an equal share of the samples)",
    )
    data.add_argument(
        "--datasets",
        type=Path,
        default=None,
        metavar="FILE",
        help="a CSV naming the datasets: name,images,masks,split_csv,split,weight (paths relative to "
        "the file; weight = the dataset's share of the samples)",
    )
    data.add_argument("--split", default=None, help="train on this split (of --split-csv or each dataset's)")
    held_out = data.add_mutually_exclusive_group()
    held_out.add_argument("--val-split", default=None, help="validate on this split (of each dataset)")
    held_out.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="hold out this fraction of each dataset's training images for validation (default: 0.1)",
    )


def _add_network(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="cpu", choices=list(NAMED_CONFIGS), help="model variant (default: cpu)"
    )
    add_architecture(parser, auto=True)
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="VERSION",
        help="start from this registry version's (or checkpoint folder's) weights instead of a fresh "
        "network: its architecture and diffusion are kept, widened to RGB and/or the box channel "
        "where asked (starting exactly where it was)",
    )
    parser.add_argument(
        "--normalisation",
        default=None,
        choices=NORMALISATIONS,
        help="intensity normalisation (default: percentile; with --init-from: the model's, anchored on "
        "the luminance when it is widened to colour); luminance-percentile for a colour model "
        "that also meets grey images (a grey image is then exactly its grey normalisation in every channel)",
    )


def _add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=None, help="training steps")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="time budget (see --clock); with --steps, first reached wins",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per step (default: 8; on CUDA per configuration, e.g. 32 for S and B)",
    )
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=TRAIN.learning_rate,
        help=f"AdamW learning rate (default: {TRAIN.learning_rate:g}, the paper's)",
    )
    add_recipe(parser, TRAIN)
    parser.add_argument("--ema-decay", type=float, default=TRAIN.ema_decay)
    parser.add_argument("--grad-clip", type=float, default=TRAIN.grad_clip)
    parser.add_argument(
        "--mask-loss-weight",
        type=float,
        default=TRAIN.mask_loss_weight,
        help="weight of a soft-Dice loss on the predicted mask (default 0: the paper's MSE alone)",
    )
    parser.add_argument(
        "--prediction",
        default=None,
        choices=("epsilon", "v"),
        help="what the network predicts: the noise (default, the paper's) or v (better few-step samples); "
        "with --init-from: the model's",
    )
    parser.add_argument("--schedule", default="linear", choices=("linear", "cosine"), help="beta schedule")
    parser.add_argument(
        "--no-amp",
        action="store_true",
        help="float32 throughout, as --precision fp32 (bf16 mixed precision is used only on CUDA "
        "and on CPUs with AMX/AVX512-BF16)",
    )


def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-augment", action="store_true", help="no flips, affine or intensity jitter")
    parser.add_argument("--seed", type=int, default=TRAIN.seed)
    parser.add_argument("--validate-every", type=int, default=TRAIN.validate_every, metavar="STEPS")
    parser.add_argument(
        "--validation-images",
        type=int,
        default=TRAIN.validation_images,
        help="validation images scored each time",
    )
    parser.add_argument(
        "--keep-best",
        action="store_true",
        default=None,
        help="the final checkpoint holds the EMA weights of the best validation, not the last ones",
    )
    parser.add_argument("--checkpoint-every", type=int, default=TRAIN.checkpoint_every, metavar="STEPS")
    parser.add_argument(
        "--out", required=True, type=Path, metavar="RUN_DIR", help="run folder (resumed if it has a state)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="do not resume the state in RUN_DIR (it is overwritten)"
    )
    parser.add_argument(
        "--register",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="add the trained model to the registry (optionally under NAME)",
    )
    parser.add_argument("--select", action="store_true", help="with --register: select the new version")
    parser.add_argument("--description", default=None)


def command_train(args: argparse.Namespace) -> int:
    """Train as the options say (on every process under ``torchrun``), register when asked."""
    from ..training_run import run_training

    request = training_request(args)
    reporter = TrainingReporter(json_lines=args.progress_json)  # rank 0 alone reports
    with cancel_on_signals() as cancel:
        outcome = run_training(request, progress=reporter, cancel=cancel, say=note)
    reporter.close()
    result = outcome.result
    if not outcome.is_main:
        return EXIT_CANCELLED if result.cancelled else EXIT_OK
    if result.cancelled:
        report_cancelled(args, result.step, result.run_dir)
        return EXIT_CANCELLED
    report_trained(args, outcome)
    return EXIT_OK


def training_request(args: argparse.Namespace) -> TrainingRequest:
    """``medsegdiff train``'s options as a :class:`~..training_run.TrainingRequest`, every
    mistake in them refused before any image is read."""
    from ..training_data import split_sources
    from ..training_run import TrainingRequest

    if args.steps is None and args.minutes is None:
        raise ConfigError("Give a training budget: --steps N, --minutes M or both.")
    config = train_config_of(args, args.device)  # a --no-amp / --precision contradiction: now
    sources = sources_of(args)
    crop_rule = crop_rule_of(args)
    crops = crop_recipe_of(args) if crop_rule is not None else None
    val_fraction = 0.0 if args.val_split else args.val_fraction
    return TrainingRequest(
        data=split_sources(sources, args.val_split, val_fraction, args.seed),
        run_dir=args.out,
        config=config,
        batch_size_of_model=args.batch_size is None,  # per configuration on CUDA, else TrainConfig's
        model=args.config,
        image_size=image_size_of(args.image_size),
        num_classes=_count(args.num_classes, "--num-classes"),
        channels=_count(args.channels, "--channels"),
        init_from=args.init_from,
        normalisation=args.normalisation,
        prediction=args.prediction,
        schedule=args.schedule,
        crop_rule=crop_rule,
        crops=crops,
        box_channel=args.box_channel,
        description=args.description,
        resume=not args.fresh,
        register=args.register,
        select=args.select,
        registry=args.registry,
    )


def _count(text: str, option: str) -> int | None:
    """``--num-classes`` / ``--channels``: a whole number, or ``auto`` (None: read from the data)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{option} takes a whole number or auto, got {text!r}.") from None


def sources_of(args: argparse.Namespace) -> list[DatasetSource]:
    """The datasets the command line names: --images/--masks, --dataset folders or a --datasets file."""
    given = [args.images is not None or args.masks is not None, bool(args.dataset), args.datasets is not None]
    if sum(given) != 1:
        raise ConfigError(
            "Give the data one way: --images and --masks, --dataset DIR (repeatable) or --datasets FILE."
        )
    if given[0]:
        if args.images is None or args.masks is None:
            raise ConfigError("--images and --masks go together.")
        if (args.split or args.val_split) and not args.split_csv:
            raise ConfigError("--split and --val-split need --split-csv (a name,split CSV).")
        name = Path(args.images).resolve().parent.name or "data"
        split_csv = args.split_csv if args.split or args.val_split else None
        return [DatasetSource(name, Path(args.images), Path(args.masks), split_csv, args.split)]
    if args.split_csv:
        raise ConfigError(
            "--split-csv goes with --images/--masks; a dataset folder brings its own split.csv."
        )
    if given[1]:
        sources = [source_from_folder(folder, args.split) for folder in args.dataset]
        if args.val_split:  # the folder's split.csv also names the validation split
            sources = [replace(s, split_csv=Path(s.images).parent / "split.csv") for s in sources]
        check_distinct(sources)
        return sources
    sources = read_dataset_list(args.datasets)
    return [replace(s, split=s.split or args.split) for s in sources]


def train_config_of(args: argparse.Namespace, device: str) -> TrainConfig:
    """``medsegdiff train``'s options as a :class:`TrainConfig` (options carry the field names)."""
    overrides: dict[str, Any] = {"augment": None} if args.no_augment else {}
    precision = precision_of(args)
    if precision is not None:
        overrides["precision"] = precision
    return train_config_from(
        args,
        steps=args.steps,  # None with --minutes alone: no step budget
        amp=not args.no_amp,
        device=device,
        **overrides,
    )


def report_trained(args: argparse.Namespace, outcome: TrainingOutcome) -> None:
    """Say what was trained: one line, or a JSON ``done`` event."""
    result = outcome.result
    validation = result.history[-1]["validation_dice"] if result.history else None
    kept_step = None  # with --keep-best: the step whose weights final/ holds
    if args.keep_best and result.best_step is not None and result.final_validation_dice is not None:
        validation, kept_step = result.final_validation_dice, result.best_step
    if args.progress_json:
        emit_json(
            {
                "event": "done",
                "run_dir": str(result.run_dir),
                "final": str(result.final_checkpoint),
                "steps": result.step,
                "validation_dice": validation,
                "kept_step": kept_step,
                "version": outcome.version,
            }
        )
    else:
        out(
            f"Trained {result.step} steps; checkpoint in {result.final_checkpoint}"
            + ("" if validation is None else f"; validation Dice {validation:.3f}")
            + ("" if kept_step is None else f" (the best, at step {kept_step})")
            + ("" if outcome.version is None else f"; registered as {outcome.version}")
        )
