"""``medsegdiff info``: a model variant's architecture, a version's, or what is installed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import NAMED_CONFIGS, image_size_of, named_config
from ..errors import EXIT_OK
from ..model_lookup import load_model
from .common import add_architecture, add_registry, registry_of
from .output import out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``info`` subcommand's options."""
    parser = subparsers.add_parser("info", help="architecture summaries, installed models, devices")
    parser.add_argument(
        "--config", default=None, choices=list(NAMED_CONFIGS), help="describe this model variant"
    )
    add_architecture(parser, auto=False)
    parser.add_argument(
        "--model", default=None, metavar="VERSION", help="describe this registry version or checkpoint"
    )
    parser.add_argument("--json", action="store_true")
    add_registry(parser, device=False)


def command_info(args: argparse.Namespace) -> int:
    """Describe ``--config`` or ``--model``; without either, the installation."""
    from ..summary import describe

    if args.config:
        return _describe_variant(args)
    if args.model:
        checkpoint, name = load_model(args.model, registry_of(args), "cpu")
        out(f"model {name}: {checkpoint.metadata.get('description', '')}")
        out(describe(checkpoint.model_config))
        return EXIT_OK
    document = _installation(args)
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        for key, value in document.items():
            out(f"{key:<20} {value}")
    return EXIT_OK


def _describe_variant(args: argparse.Namespace) -> int:
    from ..model import MedSegDiffUNet, count_parameters
    from ..summary import describe

    changes: dict[str, Any] = {}
    if args.image_size:
        changes["image_size"] = image_size_of(args.image_size)
    if args.num_classes:
        changes["num_classes"] = args.num_classes
    if args.channels:
        changes["image_channels"] = args.channels
    config = named_config(args.config, **changes)
    if args.json:
        parameters = count_parameters(MedSegDiffUNet(config))
        out(json.dumps({"config": config.to_dict(), "parameters": parameters}, indent=2))
    else:
        out(describe(config))
    return EXIT_OK


def _installation(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .. import __version__
    from ..corrections import CorrectionsStore
    from ..device import device_availability
    from ..paths import data_home

    registry = registry_of(args)
    return {
        "medsegdiff_training": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "devices": {k: v or "available" for k, v in device_availability().items()},
        "data_home": str(data_home()),
        "registry": str(registry.root),
        "selected_model": registry.selected(),
        "versions": registry.names(),
        "corrections": len(CorrectionsStore()),
    }
