"""Where napari-medsegdiff keeps its data: the model registry and the corrections store.

Everything lives under one folder, the user's data directory from :mod:`platformdirs`
(``~/.local/share/napari-medsegdiff`` on Linux), or ``$MEDSEGDIFF_HOME`` when that is set
(tests, shared machines, clusters)::

    <data home>/
        models/        the model registry (docs/registry.md)
        corrections/   the corrections store (docs/corrections-store.md)
        runs/          fine-tuning runs (resumable state, logs)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import platformdirs

ENV_HOME = "MEDSEGDIFF_HOME"
APP_NAME = "napari-medsegdiff"


def data_home() -> Path:
    """The folder holding models, corrections and runs; created on demand.

    Examples
    --------
    >>> data_home()  # doctest: +SKIP
    PosixPath('/home/me/.local/share/napari-medsegdiff')
    """
    configured = os.environ.get(ENV_HOME)
    home = Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir(APP_NAME))
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_registry_root() -> Path:
    """``data_home() / "models"``: the model registry's folder."""
    return data_home() / "models"


def default_corrections_root() -> Path:
    """``data_home() / "corrections"``: the corrections store's folder."""
    return data_home() / "corrections"


def default_runs_root() -> Path:
    """``data_home() / "runs"``: where fine-tuning runs keep their state and logs."""
    return data_home() / "runs"


def new_run_dir(prefix: str, root: Path | None = None) -> Path:
    """A new, empty run folder ``<root>/<prefix>-YYYYmmdd-HHMMSS``, made exclusively.

    ``root`` defaults to :func:`default_runs_root`. The folder is created here, with one
    atomic ``mkdir``: a second run that starts in the same second (another fine-tune from
    the CLI, the dialog or the queue) gets ``...-2`` (``-3``, ...), never the same folder.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> first, second = new_run_dir("finetune-v1", root), new_run_dir("finetune-v1", root)
    >>> first != second and first.is_dir() and second.is_dir()
    True
    """
    root = Path(root) if root is not None else default_runs_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    for number in range(1, 1000):
        candidate = root / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"No free run folder named {stamp}[-N] in {root}.")
