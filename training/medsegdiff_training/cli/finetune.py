"""``medsegdiff finetune``: a new model version from a parent and a corrections store.

The options are :class:`~..finetune_options.FinetuneOptions`' (parsed into it by
:func:`~..finetune_options.options_from_args`, whose flag table names them); with
``--progress-json`` stdout carries the :mod:`~..finetune_events` lines the napari plugin
reads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import EXIT_CANCELLED, EXIT_OK
from ..finetune_events import FinetuneDone, FinetuneStarted, end_event
from ..finetune_options import options_from_args
from ..train_config import DEFAULT_FINETUNE_CONFIG
from .common import registry_of
from .output import note, out
from .progress import TrainingReporter, cancel_on_signals, emit_json
from .sampling_options import add_speed
from .training_options import add_long_run, add_recipe, report_cancelled

BASE = DEFAULT_FINETUNE_CONFIG  # the defaults the options show


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``finetune`` subcommand's options."""
    parser = subparsers.add_parser("finetune", help="fine-tune a model version on a corrections store")
    _add_source(parser)
    _add_budget(parser)
    _add_held_out(parser)
    _add_data(parser)
    _add_new_version(parser)
    add_speed(parser, training=True)
    add_long_run(parser, "JSON lines on stdout (for the napari plugin)")


def _add_source(parser: argparse.ArgumentParser) -> None:
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


def _add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=None, help=f"training steps (default: {BASE.steps})")
    parser.add_argument("--minutes", type=float, default=None, help="time budget (see --clock)")
    parser.add_argument("--batch-size", type=int, default=BASE.batch_size)
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=BASE.learning_rate,
        help=f"AdamW learning rate (default: {BASE.learning_rate:g}; the paper's: 1e-4 "
        "with --lr-schedule constant --timestep-floor 0)",
    )
    add_recipe(parser, BASE)
    parser.add_argument("--seed", type=int, default=BASE.seed)


def _add_held_out(parser: argparse.ArgumentParser) -> None:
    """Which corrections are held out, and how their curve picks and stops the run."""
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="share of the corrections held out to score before/after and during the run, with 3 or "
        "more (default: a fifth, at least one; 0: none)",
    )
    parser.add_argument(
        "--validate-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="score the held-out corrections every STEPS steps (default: 50, one DDIM 3-step sample, "
        "about 6 %% of the budget; a larger number scores less often)",
    )
    parser.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="register the EMA weights that scored best on the held-out corrections, not the last "
        "ones (default: on; --no-keep-best: the last ones, as the paper)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="STEPS",
        help="stop once the held-out Dice has not improved for STEPS steps (0: never; default: never)",
    )
    parser.add_argument(
        "--best-margin",
        type=float,
        default=None,
        metavar="DICE",
        help="a held-out score counts as better (for --keep-best and --patience) only when it beats "
        "the best so far by more than DICE (default: 0.005, half a point; 0: any gain)",
    )


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--object-crops",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train on each correction cut around each of its objects by the parent's crop "
        "rule, and score the held-out ones so (default: on; --no-object-crops: whole only)",
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


def _add_new_version(parser: argparse.ArgumentParser) -> None:
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


def command_finetune(args: argparse.Namespace) -> int:
    """Fine-tune, register the new version and say so (one line, or the JSON events)."""
    from ..adaptation import plan_finetune
    from ..corrections import CorrectionsStore
    from ..distributed import distributed_session
    from ..finetune import finetune

    options = options_from_args(args)
    if options.name is not None:
        registry_of(args).check_new_name(options.name)  # now, not after training
    with distributed_session(args.device) as context, cancel_on_signals() as cancel:
        registry = registry_of(args)
        parent = options.parent or registry.selected()
        options = options.replace(parent=parent, device=context.device)
        store = CorrectionsStore(options.store)
        plan = plan_finetune(
            parent, store, registry=registry, channels=options.channels, num_classes=options.num_classes
        )
        entries = len(store.entries()) if context.is_main else 0
        if entries:
            note(f"Fine-tuning {parent}; the new version will be: {plan.describe()}")
            if args.progress_json:
                emit_json(FinetuneStarted(parent, str(store.root), entries, plan.describe()).to_dict())
        reporter = TrainingReporter(json_lines=args.progress_json) if context.is_main else None
        clock, cpu_clock = time.perf_counter(), time.process_time()
        result = finetune(options, registry=registry, progress=reporter, cancel=cancel)
        end = end_event(result, time.perf_counter() - clock, time.process_time() - cpu_clock)
        if reporter is not None:
            reporter.close()
        if not context.is_main:
            return EXIT_CANCELLED if result.cancelled else EXIT_OK
        if not isinstance(end, FinetuneDone):
            report_cancelled(args, result.steps, result.run_dir)
            return EXIT_CANCELLED
        if args.progress_json:
            emit_json(end.to_dict())
        else:
            before, after = end.validation_dice_before, end.validation_dice_after
            scores = (
                "" if before is None or after is None else f"; validation Dice {before:.3f} -> {after:.3f}"
            )
            best = end.best_summary()
            out(
                f"Registered {end.version} (parent {end.parent}) after {end.steps} steps{scores}"
                + (f". {best}" if best else "")
            )
        return EXIT_OK
