"""``medsegdiff corrections check`` and ``medsegdiff corrections repair``.

``check`` lists every problem of a corrections store (damaged manifest lines with their
numbers, entries known only from their folders, partial folders left by killed writers)
and exits 1 when there is any. ``repair`` rebuilds ``manifest.jsonl`` from the entry
folders, keeping the damaged original beside it as ``manifest.jsonl.damaged-DATE``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import EXIT_OK, CorrectionsError
from .output import out

EXIT_DAMAGED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``corrections`` command and its ``check`` / ``repair`` actions."""
    parser = subparsers.add_parser("corrections", help="check or repair a corrections store")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for action, text in (
        ("check", "list the store's problems (exit 1 if any)"),
        ("repair", "rebuild manifest.jsonl from the entry folders, keeping the damaged one aside"),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument(
            "--store",
            type=Path,
            default=None,
            metavar="DIR",
            help="corrections store (default: $MEDSEGDIFF_HOME/corrections or the user data folder)",
        )
        sub.add_argument("--json", action="store_true", help="print the report as JSON")


def command_corrections(args: argparse.Namespace) -> int:
    """Run ``corrections check`` or ``corrections repair``; returns the exit code."""
    from ..corrections import CorrectionsStore  # torch comes with it: not at parse time

    store = CorrectionsStore(args.store)
    if not store.root.is_dir():
        raise CorrectionsError(f"There is no corrections store at {store.root}.")
    if args.action == "check":
        report, kept = store.check(verify_files=True), None
    else:
        report, kept = store.repair()
    document = {
        "store": str(store.root),
        "entries": len(report.records),
        "recovered_from_folders": report.recovered,
        "problems": report.problems,
        "stale_partial_folders": [str(p) for p in report.stale_partials],
    }
    if args.action == "repair":
        document["damaged_manifest_kept_as"] = None if kept is None else str(kept)
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        for problem in report.problems:
            out(f"problem: {problem}")
        for folder in report.stale_partials:
            out(f"{'removed' if args.action == 'repair' else 'stale'} partial folder: {folder.name}")
        if args.action == "check":
            state = "clean" if report.clean else "damaged: run 'medsegdiff corrections repair'"
            out(f"{store.root}: {len(report.records)} entries; {state}")
        elif kept is None:
            out(f"{store.root}: {len(report.records)} entries; nothing to repair")
        else:
            out(
                f"Rebuilt {store.manifest_path} with {len(report.records)} entries "
                f"({len(report.recovered)} recovered from their folders); "
                f"the damaged manifest is kept as {kept}"
            )
    return EXIT_DAMAGED if args.action == "check" and not report.clean else EXIT_OK
