"""Putting a fully written folder in place in one step, so readers never see half of it."""

from __future__ import annotations

import os
import shutil
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
