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
