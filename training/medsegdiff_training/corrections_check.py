"""Reading a corrections store's manifest defensively, and rebuilding it from the entry folders.

The manifest (``manifest.jsonl``) is the store's index, but every entry folder also holds
its own record (``entry.json``). So a damaged manifest line never loses an entry: a line
that is not valid UTF-8 or JSON, is zero-filled, torn, holds something other than an
object, repeats an id, or names a folder outside ``entries/`` is reported with its line
number, and a complete entry folder that no good line names is recovered from its own
``entry.json``. :func:`repair_store` writes a clean manifest from what was found, keeping
the damaged one aside. Nothing here ever reads a file outside the store's ``entries/``.

A record whose content is malformed (its prompts, ``labels_present``: see
:mod:`.prompt_records`) is left out, and said, naming the entry; an entry folder that lacks
a file is named with the file it lacks. :func:`unreadable_entries` (``corrections check``)
also decodes every TIFF, so a truncated ``image.tif`` is found before a fine-tune trips on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import stale_partials
from .errors import CorrectionsError, MedSegDiffError
from .prompt_records import record_content_problem

ENTRIES = "entries"
ENTRY_FILE = "entry.json"
REQUIRED_FILES = ("image.tif", "labels.tif")
OPTIONAL_FILES = ("prediction.tif",)
# What add() makes (20261124-230112-3f9a01c2); a little wider so that renamed ids still read.
_ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class StoreReport:
    """What :func:`scan_store` found: the usable entries and every problem, in words."""

    records: list[dict[str, Any]] = field(default_factory=list)  # one per usable entry, in order
    problems: list[str] = field(default_factory=list)  # "manifest.jsonl line 3: ..." etc.
    recovered: list[str] = field(default_factory=list)  # ids read from their folders only
    stale_partials: list[Path] = field(default_factory=list)  # left by killed writers

    @property
    def clean(self) -> bool:
        return not self.problems and not self.stale_partials


def safe_entry_id(value: Any) -> str | None:
    """``value`` when it can name an entry folder inside ``entries/``, else None."""
    if isinstance(value, str) and _ENTRY_ID.match(value) and ".." not in value:
        return value
    return None


def entry_folder(root: Path, entry_id: str) -> Path:
    """``root/entries/entry_id``, refused (CorrectionsError) when it resolves outside ``entries/``."""
    entries = (root / ENTRIES).resolve()
    folder = entries / entry_id
    if safe_entry_id(entry_id) is None or folder.resolve().parent != entries:
        raise CorrectionsError(f"The entry id {entry_id!r:.80} would lead outside {entries}; refused.")
    return folder


def entry_file(folder: Path, name: str) -> Path:
    """A file of an entry folder; refused when it is a link or leads elsewhere."""
    path = folder / name
    if path.is_symlink() or path.resolve().parent != folder.resolve():
        raise CorrectionsError(f"{path} leads outside its entry folder; refused.")
    return path


def _missing(root: Path, entry_id: str) -> str | None:
    """What an entry's folder lacks ("is missing", "lacks labels.tif"); None when it is complete."""
    try:
        folder = entry_folder(root, entry_id)
        if not folder.is_dir():
            return "is missing"
        lacking = [name for name in (ENTRY_FILE, *REQUIRED_FILES) if not entry_file(folder, name).is_file()]
    except CorrectionsError as error:
        return f"cannot be used ({error})"
    return f"lacks {' and '.join(lacking)}" if lacking else None


def _complete(root: Path, entry_id: str) -> bool:
    return _missing(root, entry_id) is None


def record_problem(record: Any) -> str | None:
    """Why a manifest record cannot describe an entry, or None when it can."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not a JSON object"
    if safe_entry_id(record.get("id")) is None:
        return f"has an unusable id {record.get('id')!r:.60} (letters, digits, - and _ only)"
    if record.get("layout", "2d") not in ("2d", "volume"):
        return f"has an unknown layout {record.get('layout')!r:.40}"
    if record.get("channel_axis") not in (None, 0, 2):
        return f"has an unknown channel_axis {record.get('channel_axis')!r:.40}"
    return None


def _decode_line(raw: bytes) -> tuple[list[Any], str | None]:
    """The JSON values on one manifest line (several when lines were joined) and a problem."""
    if raw.strip(b"\x00") == b"":
        return [], "is zero-filled (the disk lost what was written)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [], "is not valid UTF-8"
    decoder, values, position = json.JSONDecoder(), [], 0
    text = text.strip()
    try:
        while position < len(text):
            value, end = decoder.raw_decode(text, position)
            values.append(value)
            position = end
            while position < len(text) and text[position].isspace():
                position += 1
    except (ValueError, RecursionError):
        return values, "is not valid JSON (torn or damaged)"
    if len(values) > 1:
        return values, f"holds {len(values)} records joined without a newline"
    return values, None


def _read_manifest(manifest: Path, report: StoreReport, root: Path) -> set[str]:
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as error:
        report.problems.append(f"{manifest.name} cannot be read ({error.strerror or error})")
        return set()
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        values, problem = _decode_line(raw)
        if problem is not None:
            report.problems.append(f"{manifest.name} line {number} {problem}")
        for value in values:
            reason = record_problem(value)
            if reason is not None:
                report.problems.append(f"{manifest.name} line {number} {reason}")
                continue
            entry_id = value["id"]
            if entry_id in seen:
                report.problems.append(
                    f"{manifest.name} line {number} repeats the id {entry_id} of line {seen[entry_id]}"
                )
                continue
            seen[entry_id] = number
            missing = _missing(root, entry_id)
            if missing is not None:
                report.problems.append(f"{manifest.name} line {number}: the folder of {entry_id} {missing}")
                continue
            malformed = record_content_problem(value)
            if malformed is not None:
                report.problems.append(
                    f"{manifest.name} line {number}: the entry {entry_id} is left out, its record is "
                    f"malformed: {malformed}"
                )
                continue
            report.records.append(value)
    return set(seen)


def scan_store(root: Path, manifest: Path) -> StoreReport:
    """Read the manifest line by line and the entry folders; never raises for damage."""
    report = StoreReport()
    listed = _read_manifest(manifest, report, root)
    entries = root / ENTRIES
    try:
        folders = sorted(entries.iterdir()) if entries.is_dir() else []
    except OSError as error:
        report.problems.append(f"{entries} cannot be listed ({error.strerror or error})")
        folders = []
    report.stale_partials = stale_partials(entries) if folders else []
    recovered = []
    for folder in folders:
        if folder.name.startswith("."):
            continue
        entry_id = safe_entry_id(folder.name)
        if entry_id is None or entry_id in listed:
            continue
        missing = _missing(root, entry_id)
        if missing is not None:  # not in the manifest either: a folder that lost files
            report.problems.append(f"{ENTRIES}/{entry_id} {missing}; skipped")
            continue
        try:
            record = json.loads(entry_file(folder, ENTRY_FILE).read_bytes())
        except (OSError, ValueError, RecursionError, CorrectionsError):
            report.problems.append(f"{ENTRIES}/{entry_id}/{ENTRY_FILE} is unreadable; entry skipped")
            continue
        if record_problem(record) is not None or record.get("id") != entry_id:
            report.problems.append(f"{ENTRIES}/{entry_id}/{ENTRY_FILE} does not describe {entry_id}; skipped")
            continue
        malformed = record_content_problem(record)
        if malformed is not None:
            report.problems.append(f"{ENTRIES}/{entry_id}/{ENTRY_FILE} is malformed: {malformed}; skipped")
            continue
        recovered.append(record)
    recovered.sort(key=lambda record: (str(record.get("created", "")), record["id"]))
    for record in recovered:
        report.problems.append(
            f"the entry {record['id']} has no good manifest line; recovered from its folder"
        )
        report.recovered.append(record["id"])
        report.records.append(record)
    return report


def unreadable_entries(root: Path, report: StoreReport) -> None:
    """Decode every file of the report's entries; move those that fail into its problems.

    Slow (reads every image): for ``corrections check``, not for every read of the store.
    """
    from .data.io import read_array

    readable = []
    for record in report.records:
        folder = entry_folder(root, record["id"])
        problem = None
        for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
            path = entry_file(folder, name)
            if name in OPTIONAL_FILES and not path.is_file():
                continue
            try:
                read_array(path)
            except (MedSegDiffError, OSError, ValueError) as error:
                problem = f"the entry {record['id']}: {name} cannot be read ({str(error)[:160]})"
                break
        if problem is None:
            readable.append(record)
        else:
            report.problems.append(problem + "; it cannot be trained on (delete its folder to drop it)")
    report.records = readable


def remove_stale_partials(folders: list[Path]) -> None:
    """Delete hidden partial folders whose writers are gone (see :func:`stale_partials`)."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def repair_store(root: Path, manifest: Path) -> tuple[StoreReport, Path | None]:
    """Rewrite the manifest from what :func:`scan_store` finds; the damaged one is kept aside.

    Returns the report and the path of the kept original (None when nothing needed
    repairing). Partial folders of killed writers are removed. Run it while nobody
    exports into the store.
    """
    report = scan_store(root, manifest)
    remove_stale_partials(report.stale_partials)
    if not report.problems:
        return report, None
    kept = manifest.with_name(f"{manifest.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{manifest.name}.", suffix=".tmp", dir=root)
        with os.fdopen(handle, "wb") as stream:
            for record in report.records:
                stream.write(json.dumps(record, sort_keys=True).encode() + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        if manifest.exists():
            shutil.copy2(manifest, kept)
        os.replace(temporary, manifest)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise CorrectionsError(
            f"Could not rewrite {manifest} ({error.strerror or error}); the store is unchanged."
        ) from None
    return report, kept if kept.exists() else None
