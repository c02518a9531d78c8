"""Options several subcommands share: the registry, the device, the architecture, --limit.

Each ``add_*`` puts its options on a subcommand's parser; the functions beside them read
the parsed values (a model named by ``--model``: :func:`~..model_lookup.load_model`). No torch
at import: ``medsegdiff --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..registry import ModelRegistry
from ..sampling_defaults import DEVICE_CHOICES


def add_registry(parser: argparse.ArgumentParser, device: bool = True, nested: bool = False) -> None:
    """``--registry`` and (with ``device``) ``--device``.

    ``nested``: the options of an action (``models list``), which must not reset what was
    given before the action's name.
    """
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


def registry_of(args: argparse.Namespace) -> ModelRegistry:
    """The registry ``--registry`` names (default: the user's)."""
    return ModelRegistry(args.registry)


def add_architecture(parser: argparse.ArgumentParser, auto: bool) -> None:
    """``--image-size``, ``--num-classes`` and ``--channels`` (``auto``: read from the data)."""
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


def check_limit(limit: int | None) -> None:
    """``--limit N`` takes the first N images: N must be at least 1 (``-1`` is not "all but one")."""
    if limit is not None and limit < 1:
        raise ConfigError(
            f"--limit takes the first N images, N at least 1; got {limit} (leave it out for all)."
        )
