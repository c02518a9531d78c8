"""``medsegdiff models``: list, show, select, roll back, rename or delete model versions.

Nothing here loads a network: the registry answers from its files (no torch).
"""

from __future__ import annotations

import argparse
import json

from ..errors import EXIT_OK, ConfigError
from ..registry import ModelRegistry
from .common import add_registry, registry_of
from .output import number, out
from .progress import json_safe

ACTIONS_HELP = (
    ("list", "list the versions (* = selected for whole images, b = for box prompts)"),
    ("show", "everything about one version"),
    ("select", "select a version"),
    ("rollback", "select the selected version's parent, or NAME"),
    ("rename", "rename a version"),
    ("delete", "delete a version"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``models`` subcommand and its actions (``list`` when none is given)."""
    parser = subparsers.add_parser(
        "models", help="list, show, select, roll back, rename or delete model versions"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    for action, text in ACTIONS_HELP:
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
        add_registry(sub, device=False, nested=True)
    parser.add_argument("--json", action="store_true")
    add_registry(parser, device=False)
    parser.set_defaults(name=None)


def _models_list(args: argparse.Namespace, registry: ModelRegistry) -> None:
    selected, boxes = registry.selected(), registry.selected_for_boxes()
    versions = registry.versions()
    if args.json:
        document = {
            "registry": str(registry.root),
            "selected": selected,
            "selected_for_boxes": boxes,
            "versions": [
                v.to_dict() | {"selected": v.name == selected, "selected_for_boxes": v.name == boxes}
                for v in versions
            ],
        }
        out(json.dumps(json_safe(document), indent=2))
        return
    if not versions:
        out(f"No model versions in {registry.root} yet (and no shipped default).")
    for version in versions:
        dice = version.validation_dice
        marks = ("*" if version.name == selected else " ") + ("b" if version.name == boxes else " ")
        out(
            f"{marks} {version.name:<24} {version.created[:16]:<17} "
            f"parent {version.parent or '-':<20} Dice {number(dice)}  {version.config_summary}"
            + ("  (read-only)" if version.read_only else "")
        )
    if selected not in {v.name for v in versions}:
        out(f"selected: {selected} (not installed)")
    if versions:
        out("(* the model for whole images, b the model for box prompts)")


def _models_show(args: argparse.Namespace, registry: ModelRegistry) -> None:
    info = registry.describe(args.name or registry.selected())
    if args.json:
        out(json.dumps(json_safe(info), indent=2))
        return
    for key in (
        "name",
        "path",
        "parent",
        "created",
        "description",
        "config_summary",
        "data_digest",
        "read_only",
        "selected",
    ):
        out(f"{key:<15} {info[key]}")
    for key, value in info["metrics"].items():
        out(f"{'metric':<15} {key} = {value}")


def _models_select(args: argparse.Namespace, registry: ModelRegistry) -> None:
    """``select NAME [--for-boxes]``, ``rollback`` (to the parent) or ``rollback NAME``."""
    if getattr(args, "for_boxes", False):
        before = registry.selected_for_boxes()
        registry.select(args.name, role="boxes")
        after = registry.selected_for_boxes()
        out(
            json.dumps({"selected_for_boxes": after, "previous": before})
            if args.json
            else f"Box prompts use {after} (was {before})."
        )
        return
    before = registry.selected()
    if args.name:
        registry.select(args.name)
    elif args.action == "rollback":
        registry.rollback()
    else:
        raise ConfigError("Name the version to select: medsegdiff models select NAME.")
    after = registry.selected()
    out(
        json.dumps({"selected": after, "previous": before})
        if args.json
        else f"Selected {after} (was {before})."
    )


def _models_rename(args: argparse.Namespace, registry: ModelRegistry) -> None:
    version = registry.rename(args.name, args.new_name)
    out(json.dumps(version.to_dict()) if args.json else f"Renamed {args.name} to {version.name}.")


def _models_delete(args: argparse.Namespace, registry: ModelRegistry) -> None:
    registry.delete(args.name)
    out(json.dumps({"deleted": args.name}) if args.json else f"Deleted {args.name}.")


MODELS_ACTIONS = {
    "list": _models_list,
    "show": _models_show,
    "select": _models_select,
    "rollback": _models_select,
    "rename": _models_rename,
    "delete": _models_delete,
}


def command_models(args: argparse.Namespace) -> int:
    """Run the ``models`` action (``list`` when none is given)."""
    args.action = args.action or "list"
    MODELS_ACTIONS[args.action](args, registry_of(args))
    return EXIT_OK
