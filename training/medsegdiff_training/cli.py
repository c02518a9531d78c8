"""The ``medsegdiff`` command line: train, finetune, predict, evaluate, models, info,
simulate-annotation.

Also runs as ``python -m medsegdiff_training`` and under ``torchrun`` (``train`` and
``finetune`` then use every process). A mistake the user can make ends in one line on
stderr and exit code 1; a cancelled run (SIGINT, SIGTERM) exits with 130.

Examples
--------
::

    medsegdiff train --images ../shared/data/ddti/images --masks ../shared/data/ddti/masks \\
        --split-csv ../shared/data/ddti/split.csv --split train --config cpu --minutes 30 \\
        --out runs/ddti --register ddti-30min
    medsegdiff evaluate --images ../shared/data/ddti/images --masks ../shared/data/ddti/masks \\
        --split-csv ../shared/data/ddti/split.csv --split test --model ddti-30min --json
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Only torch-free modules here: --help and argument errors must not wait for torch.
from .cli_annotation import add_simulate_annotation
from .cli_corrections import add_corrections_parser
from .cli_output import command_output
from .cli_progress import emit_json
from .config import NAMED_CONFIGS
from .errors import EXIT_CANCELLED, EXIT_USER_ERROR, MedSegDiffError
from .finetune_events import FinetuneFailed
from .prompts import DEFAULT_JITTER
from .sampling_defaults import (
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    DEVICE_CHOICES,
    RECOMMENDED_ENSEMBLE,
    SAMPLERS,
)
from .threads import apply_threads, choose_threads, parse_threads
from .train_config import COMPILE_MODES, DEFAULT_FINETUNE_CONFIG, LR_SCHEDULES, PRECISIONS, TrainConfig
from .validation import NORMALISATIONS

PROG = "medsegdiff"
TRAIN = TrainConfig()  # the defaults the train options show


def _common(parser: argparse.ArgumentParser, device: bool = True, nested: bool = False) -> None:
    # nested (models ACTION) options must not reset what was given before ACTION
    parser.add_argument(
        "--registry",
        type=Path,
        default=argparse.SUPPRESS if nested else None,
        metavar="DIR",
        help="model registry folder (default: $MEDSEGDIFF_HOME/models or the user data folder)",
    )
    if device:
        parser.add_argument(
            "--device", default="auto", choices=DEVICE_CHOICES, help="compute device (default: auto)"
        )


def _long_run(parser: argparse.ArgumentParser, command: str, progress_help: str) -> None:
    """What train and finetune end with: machine-readable progress, registry, device."""
    parser.add_argument("--progress-json", action="store_true", help=progress_help)
    _common(parser)
    parser.set_defaults(command_name=command)


def _sampling(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument(
        "--model",
        default=None,
        metavar="VERSION",
        help="registry version or checkpoint folder (default: the selected version)",
    )
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS)
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the sampler's recommended)"
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=RECOMMENDED_ENSEMBLE,
        help=f"samples per image, averaged, in one batch (default: {RECOMMENDED_ENSEMBLE})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="foreground threshold of binary models"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per sampler run")
    parser.add_argument(
        "--no-amp",
        action="store_true",
        help="float32 throughout, as --precision fp32 (bf16 autocast is used only on CUDA and on "
        "CPUs with AMX/AVX512-BF16)",
    )


def _recipe(parser: argparse.ArgumentParser, base: TrainConfig) -> None:
    """--lr-schedule, --warmup-steps and --timestep-floor, defaulting to ``base``'s (train's or
    finetune's)."""
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=base.lr_schedule,
        help=f"constant (the paper's) or cosine: warm up, then decay to 0 at the end of the budget "
        f"(default: {base.lr_schedule})",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=base.warmup_steps,
        metavar="STEPS",
        help=f"with --lr-schedule cosine: steps of linear warm-up (default: {base.warmup_steps})",
    )
    parser.add_argument(
        "--timestep-floor",
        type=float,
        default=base.timestep_floor,
        metavar="FRACTION",
        help="train on timesteps from this fraction of T up, the noise levels few-step samplers "
        f"visit (0: all of them, the paper's; default: {base.timestep_floor:g})",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default=base.clock,
        help="what --minutes counts: wall time, or this process's CPU time (a budget that holds on a "
        f"machine shared with other work; default: {base.clock})",
    )


def _speed(parser: argparse.ArgumentParser, training: bool) -> None:
    """The speed options (precision, memory format, CUDA graphs, compile; loader workers when
    training). Each defaults to None: the device's choice (precision.py, fast_paths.py); the
    eager float32 network is the reference every fast path is tested against."""
    group = parser.add_argument_group(
        "speed",
        "how the network computes: the fast paths give the eager float32 result within rounding",
    )
    group.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="auto (default): per device from measurement: bf16 on CPUs with AMX or AVX512-BF16, "
        "on CUDA the faster of bf16 and float32 as last measured (README, On a GPU), float32 "
        "elsewhere; bf16: bfloat16 autocast (float32 on devices without native bfloat16); "
        "fp32: float32 throughout, TF32 matrix units on CUDA (what --no-amp means)",
    )
    group.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout, which CUDA tensor-core convolutions read without transposing "
        "(matters on CUDA; default: the device's)",
    )
    if not training:
        group.add_argument(
            "--cuda-graphs",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="replay each sampling step as a CUDA graph captured once per input shape (CUDA "
            "only: cuts kernel-launch time at small batches; default: the device's; off with "
            "--compile reduce-overhead, which captures its own)",
        )
    group.add_argument(
        "--compile",
        default=None,
        choices=COMPILE_MODES,
        metavar="MODE",
        help=f"torch.compile the network with MODE, one of {', '.join(COMPILE_MODES)} (without "
        "it: eager): fuses GroupNorm + SiLU and elementwise kernels, but compiles for about a minute "
        "per input shape on a GPU, so it pays only over long runs; slow to compile on a CPU",
    )
    if training:
        group.add_argument(
            "--num-workers",
            type=int,
            default=None,
            metavar="N",
            help="DataLoader worker processes (default: 4 with pinned memory on CUDA, 0 elsewhere: "
            "batches made in the training process)",
        )


def _architecture(parser: argparse.ArgumentParser, auto: bool) -> None:
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="network input size: N or H W (default: the configuration's)",
    )
    if auto:
        parser.add_argument(
            "--num-classes", default="auto", help="classes incl. background; auto: from the masks"
        )
        parser.add_argument(
            "--channels", default="auto", help="image channels 1-4; auto: 3 for RGB images, else 1"
        )
    else:
        parser.add_argument("--num-classes", type=int, default=None)
        parser.add_argument("--channels", type=int, default=None)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on folders of images and masks (one dataset or several)"
    )
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
    parser.add_argument(
        "--config", default="cpu", choices=list(NAMED_CONFIGS), help="model variant (default: cpu)"
    )
    _architecture(parser, auto=True)
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
    crops = parser.add_argument_group("crops around the objects: training for box prompts")
    crops.add_argument(
        "--roi-crops",
        action="store_true",
        help="train on crops around each mask's bounding box (edges jittered), cut by the crop rule "
        "that box prompts will use; the rule is recorded in the checkpoint",
    )
    crops.add_argument(
        "--crop-margin",
        default=None,
        metavar="MARGIN",
        help="with --roi-crops: the box grows by this on each side, in per cent of the box's size "
        "('10%%', the default; the same object at any size in pixels gives the same crop) or in "
        "pixels ('30px')",
    )
    crops.add_argument(
        "--per-object",
        action="store_true",
        help="with --roi-crops: one box per connected component of the mask (the target is that object "
        "alone), as box prompts are drawn; default: one box around all foreground",
    )
    crops.add_argument(
        "--jitter",
        type=float,
        default=None,
        metavar="FRACTION",
        help="with --roi-crops: each box edge moves by up to this fraction of the box's side, outward and "
        f"inward (default: {DEFAULT_JITTER:g})",
    )
    crops.add_argument(
        "--box-channel",
        action="store_true",
        help="with --roi-crops: tell the network where the box is (one more input channel)",
    )
    crops.add_argument(
        "--crop-context",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="with --box-channel: the margin is drawn per sample between these fractions of the box "
        "(the crop rule's margin is used for prompts)",
    )
    crops.add_argument(
        "--scale-augment",
        type=float,
        default=None,
        metavar="SHARE",
        help="with --roi-crops: each crop is first resized to between SHARE and 1 of its size in pixels, "
        "as if the image had fewer pixels (objects at many sizes)",
    )
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
    _recipe(parser, TRAIN)
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
    _speed(parser, training=True)
    parser.add_argument("--no-augment", action="store_true", help="no flips, affine or intensity jitter")
    parser.add_argument("--seed", type=int, default=TRAIN.seed)
    parser.add_argument("--validate-every", type=int, default=TRAIN.validate_every, metavar="STEPS")
    parser.add_argument(
        "--validation-images",
        type=int,
        default=TRAIN.validation_images,
        help="validation images scored each time",
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
    _long_run(parser, "train", "JSON lines on stdout instead of text progress")
    parser.set_defaults(command_module=".cli_train")


def _add_finetune(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a model version on a corrections store")
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="corrections store (default: $MEDSEGDIFF_HOME/corrections or the user data folder)",
    )
    parser.add_argument(
        "--parent", default=None, metavar="VERSION", help="version to start from (default: the selected one)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help=f"training steps (default: {DEFAULT_FINETUNE_CONFIG.steps})"
    )
    parser.add_argument("--minutes", type=float, default=None, help="time budget (see --clock)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_FINETUNE_CONFIG.batch_size)
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=DEFAULT_FINETUNE_CONFIG.learning_rate,
        help=f"AdamW learning rate (default: {DEFAULT_FINETUNE_CONFIG.learning_rate:g}; the paper's: 1e-4 "
        "with --lr-schedule constant --timestep-floor 0)",
    )
    _recipe(parser, DEFAULT_FINETUNE_CONFIG)
    parser.add_argument("--seed", type=int, default=DEFAULT_FINETUNE_CONFIG.seed)
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="share of the corrections held out to score before/after, with 3 or more (default: "
        "one below 10 corrections, 0.2 from 10 on; 0: none)",
    )
    parser.add_argument(
        "--mix-original", action="store_true", help="also train on the parent's original data"
    )
    parser.add_argument(
        "--mask-loss-weight",
        type=float,
        default=None,
        help="weight of the soft-Dice loss on the predicted x0 (default: the parent's; 1 for shipped models)",
    )
    parser.add_argument(
        "--original-images", type=Path, default=None, help="with --mix-original: the original images"
    )
    parser.add_argument(
        "--original-masks", type=Path, default=None, help="with --mix-original: the original masks"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classes of the new version incl. background (default: the parent's, more when the "
        "corrections hold labels it lacks)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=None,
        help="image channels of the new version (default: the parent's; 3 when a grey parent "
        "gets RGB corrections)",
    )
    parser.add_argument("--name", default=None, help="name of the new version (default: vN-DATE-TIME)")
    parser.add_argument(
        "--description", default=None, help="the new version's description (default: what it was made from)"
    )
    parser.add_argument("--select", action="store_true", help="select the new version")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="run folder (default: under the data folder)"
    )
    _speed(parser, training=True)
    _long_run(parser, "finetune", "JSON lines on stdout (for the napari plugin)")


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
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
    _sampling(parser, batch_size=8)
    _speed(parser, training=False)
    _common(parser)
    parser.set_defaults(command_name="predict")


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
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
    _sampling(parser, batch_size=8)
    _speed(parser, training=False)
    _common(parser)
    parser.set_defaults(command_name="evaluate")


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list, show, select, roll back, rename or delete model versions"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    for action, text in (
        ("list", "list the versions (* = selected for whole images, b = for box prompts)"),
        ("show", "everything about one version"),
        ("select", "select a version"),
        ("rollback", "select the selected version's parent, or NAME"),
        ("rename", "rename a version"),
        ("delete", "delete a version"),
    ):
        sub = actions.add_parser(action, help=text)
        if action in ("show", "rollback"):
            sub.add_argument("name", nargs="?", default=None)
        elif action in ("select", "delete", "rename"):
            sub.add_argument("name")
        if action == "rename":
            sub.add_argument("new_name")
        if action == "select":
            sub.add_argument(
                "--for-boxes",
                action="store_true",
                help="the version box prompts use (predict/evaluate --boxes, the widget's boxes); "
                "without it: the version for whole images",
            )
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        _common(sub, device=False, nested=True)
    parser.add_argument("--json", action="store_true")
    _common(parser, device=False)
    parser.set_defaults(command_name="models", name=None)


def _add_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="architecture summaries, installed models, devices")
    parser.add_argument(
        "--config", default=None, choices=list(NAMED_CONFIGS), help="describe this model variant"
    )
    _architecture(parser, auto=False)
    parser.add_argument(
        "--model", default=None, metavar="VERSION", help="describe this registry version or checkpoint"
    )
    parser.add_argument("--json", action="store_true")
    _common(parser, device=False)
    parser.set_defaults(command_name="info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="MedSegDiff: train, fine-tune and run diffusion segmentation models."
    )
    parser.add_argument(
        "--threads",
        type=_threads_option,
        default="auto",
        metavar="N|auto",
        help="PyTorch CPU threads; auto (default): the free cores this process may use, "
        "or $MEDSEGDIFF_THREADS when set (the count is logged and kept in the training record)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in (
        _add_train,
        _add_finetune,
        _add_predict,
        _add_evaluate,
        _add_models,
        _add_info,
        add_corrections_parser,
    ):
        add(subparsers)
    add_simulate_annotation(subparsers, _common, _sampling, _speed)
    return parser


def command_of(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function that runs the parsed command (its module is imported only now)."""
    module, name = getattr(args, "command_module", ".cli_commands"), args.command_name
    if getattr(args, "boxes", None) is not None or getattr(args, "boxes_from_masks", False):
        module, name = ".cli_prompts", f"{name}_boxes"  # predict / evaluate with box prompts
    return getattr(importlib.import_module(module, __package__), f"command_{name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 1 user error, 130 cancelled)."""
    args = build_parser().parse_args(argv)
    try:
        with command_output():
            _set_threads(args)
            # imported only now: parsing (and --help) never loads torch or the trainer
            return int(command_of(args)(args))
    except MedSegDiffError as error:
        return _fail(args, str(error))
    except FloatingPointError as error:  # the loss diverged: the user's learning rate
        return _fail(args, str(error))
    except OSError as error:  # a folder that cannot be written, a full disk
        return _fail(args, f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
    except MemoryError:
        return _fail(args, "Out of memory; try a smaller --batch-size or image, or another device.")
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return EXIT_CANCELLED


def _threads_option(text: str) -> str | int:
    try:
        return parse_threads(text)
    except MedSegDiffError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto or a whole number, 1 or more") from error


def _set_threads(args: argparse.Namespace) -> None:
    """Apply the thread policy for the commands that compute (those with a ``--device``).

    A count the CLI chose itself is logged in one stderr line; one given by the user or by a
    parent process (``$MEDSEGDIFF_THREADS``: the plugin's share for its fine-tune) is not.
    """
    if getattr(args, "device", None) is None:
        return  # models, info, corrections: no torch work worth a measurement
    choice = apply_threads(choose_threads(args.threads))
    if choice.source == "auto":
        sys.stderr.write(f"{PROG}: {choice.describe()}\n")
        sys.stderr.flush()


def _fail(args: argparse.Namespace, message: str) -> int:
    message = " ".join((message or "unknown error").split())  # always one line
    if getattr(args, "progress_json", False):
        emit_json(FinetuneFailed(message).to_dict())
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
