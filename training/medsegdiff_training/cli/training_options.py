"""What ``train`` and ``finetune`` share: the recipe options, how a long run reports, a cancel said.

Their defaults come from :mod:`..train_config` (no torch at import).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..finetune_events import FinetuneCancelled
from ..train_config import LR_SCHEDULES, TrainConfig
from .common import add_registry
from .output import note
from .progress import emit_json


def add_recipe(parser: argparse.ArgumentParser, base: TrainConfig) -> None:
    """--lr-schedule, --warmup-steps, --timestep-floor and --clock, defaulting to ``base``'s
    (train's or finetune's)."""
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


def add_long_run(parser: argparse.ArgumentParser, progress_help: str) -> None:
    """What train and finetune end with: machine-readable progress, registry, device."""
    parser.add_argument("--progress-json", action="store_true", help=progress_help)
    add_registry(parser)


def report_cancelled(args: argparse.Namespace, step: int, run_dir: Path) -> None:
    """Say that a run stopped early and whether it can be resumed (a JSON event with
    ``--progress-json``)."""
    from ..training_state import STATE_DIR

    if getattr(args, "progress_json", False):
        emit_json(FinetuneCancelled(steps=step, run_dir=str(run_dir)).to_dict())
    resumable = (Path(run_dir) / STATE_DIR).is_dir()
    note(
        f"Cancelled at step {step}; nothing was registered."
        + (f" The resumable state is in {run_dir}." if resumable else " No training state was saved yet.")
    )
