"""Putting a fully written folder in place in one step, so readers never see half of it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def swap_in_folder(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an existing ``final`` is moved aside, then removed.

    Both must sit in the same folder (one file system), so each rename is atomic.
    """
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)


# -- hidden folders of writers that were killed -------------------------------------------

_PARTIAL = re.compile(r"^\.(?P<name>.+?)\.partial-(?:(?P<pid>\d+)-)?")
STALE_WITHOUT_OWNER_S = 3600.0  # a partial folder that names no writer: stale after an hour


def process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def staging_folder(final: Path) -> Path:
    """A new hidden ``.NAME.partial-PID-*`` folder beside ``final``, after removing the
    partial folders of ``final`` whose writers were killed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in stale_partials(final.parent, final.name):
        shutil.rmtree(leftover, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))


def stale_partials(folder: Path, name: str | None = None) -> list[Path]:
    """Hidden partial folders in ``folder`` (of ``name``, or any) whose writing process is gone."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    now, stale = time.time(), []
    for path in children:
        match = _PARTIAL.match(path.name)
        if match is None or (name is not None and match.group("name") != name) or not path.is_dir():
            continue
        if match.group("pid"):
            gone = process_gone(int(match.group("pid")))
        else:
            try:
                gone = now - path.stat().st_mtime > STALE_WITHOUT_OWNER_S
            except OSError:
                gone = False
        if gone:
            stale.append(path)
    return sorted(stale)


def append_line(path: Path, line: bytes) -> None:
    """Append one line to an append-only log (a store's manifest, a queue's events), durably.

    A writer killed mid-line left no newline: the new line then starts on a line of its own,
    so the torn one costs only itself. Flushed and fsynced before returning; OSError passes up.
    """
    with open(path, "a+b") as log:
        log.seek(0, os.SEEK_END)
        prefix = b""
        if log.tell() > 0:
            log.seek(-1, os.SEEK_END)
            if log.read(1) != b"\n":
                prefix = b"\n"
        log.write(prefix + line.rstrip(b"\n") + b"\n")
        log.flush()
        os.fsync(log.fileno())
