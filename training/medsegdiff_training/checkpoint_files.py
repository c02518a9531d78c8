"""A checkpoint folder's files and its ``config.json``, read without torch.

The model registry lists versions from these alone, so that listing models (the napari
widget's model picker) never imports torch; :mod:`.checkpoint` loads and writes weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError

FORMAT = "medsegdiff-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def read_checkpoint_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json`` without touching the weights."""
    folder = _checkpoint_folder(Path(path))
    try:
        document = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: it is not a MedSegDiff checkpoint.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{folder / CONFIG_FILE} is corrupt ({error}).") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a MedSegDiff checkpoint config.")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer napari-medsegdiff "
            f"(format {document['format_version']}); upgrade napari-medsegdiff to read it."
        )
    return document


def _looks_pickled(path: Path) -> bool:
    """A pickle suffix, or the first bytes of a pickle (protocol 2+) or of torch.save's zip."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if path.suffix.lower() in (".safetensors", ".json"):
        return False  # a safetensors header length may well start with byte 0x80
    try:
        with path.open("rb") as stream:
            head = stream.read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head == b"PK\x03\x04"


def _checkpoint_folder(path: Path) -> Path:
    if _looks_pickled(path):
        raise CheckpointError(
            f"{path} looks like a pickled PyTorch file. napari-medsegdiff never unpickles files, since "
            "unpickling can run arbitrary code. If you trust it, convert it in Python with "
            "medsegdiff_training.checkpoint.convert_trusted_pickle(src, dst, config)."
        )
    if path.is_file() and path.name not in (WEIGHTS_FILE, CONFIG_FILE):
        raise CheckpointError(
            f"{path} is a file, not a MedSegDiff checkpoint: a checkpoint is a folder holding "
            f"{WEIGHTS_FILE} and {CONFIG_FILE}; choose that folder."
        )
    if path.name in (WEIGHTS_FILE, CONFIG_FILE):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    return path
