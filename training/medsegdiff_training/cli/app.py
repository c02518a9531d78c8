"""The ``medsegdiff`` command: its parser, the table of subcommands, and :func:`main`.

Each subcommand lives in its own module of this package, its parser builder
(``add_parser``) beside the function that runs it; :data:`SUBCOMMANDS` names both. Those
modules import no torch until their command runs, so ``--help`` and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import EXIT_CANCELLED, EXIT_USER_ERROR, MedSegDiffError
from ..finetune_events import FinetuneFailed
from ..threads import apply_threads, choose_threads, parse_threads
from . import corrections, evaluate, finetune, info, models, predict, simulate, train
from .output import PROG, command_output
from .progress import emit_json

Command = Callable[[argparse.Namespace], int]

# subcommand -> (the function adding its parser, the function running it), in --help's order
SUBCOMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None], Command]] = {
    "train": (train.add_parser, train.command_train),
    "finetune": (finetune.add_parser, finetune.command_finetune),
    "predict": (predict.add_parser, predict.command_predict),
    "evaluate": (evaluate.add_parser, evaluate.command_evaluate),
    "models": (models.add_parser, models.command_models),
    "info": (info.add_parser, info.command_info),
    "corrections": (corrections.add_parser, corrections.command_corrections),
    "simulate-annotation": (simulate.add_parser, simulate.command_simulate_annotation),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``medsegdiff`` parser: ``--threads`` and one subparser per entry of :data:`SUBCOMMANDS`."""
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
    for add_parser, _ in SUBCOMMANDS.values():
        add_parser(subparsers)
    return parser


def command_of(args: argparse.Namespace) -> Command:
    """The function that runs the parsed subcommand."""
    return SUBCOMMANDS[args.command][1]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 done, 1 user error, 130 cancelled)."""
    args = build_parser().parse_args(argv)
    try:
        with command_output():
            _set_threads(args)
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
