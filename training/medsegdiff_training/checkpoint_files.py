"""A checkpoint folder's files and its ``config.json``, read without torch.

The model registry lists versions from these alone, so that listing models (the napari
widget's model picker) never imports torch; :mod:`.checkpoint` loads and writes weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError
from .validation import check_checkpoint_document

FORMAT = "medsegdiff-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def read_checkpoint_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json`` without touching the weights.

    Every field's type and range is checked (:mod:`.validation`), so a config that reads
    here builds a network of a sane size.
    """
    folder = _checkpoint_folder(Path(path))
    try:
        document = json.loads((folder / CONFIG_FILE).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: it is not a MedSegDiff checkpoint.") from None
    except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8, absurd nesting
        reason = str(error) or type(error).__name__
        raise CheckpointError(f"{folder / CONFIG_FILE} is corrupt ({reason:.200}).") from None
    except OSError as error:
        raise CheckpointError(f"Cannot read {folder / CONFIG_FILE}: {error.strerror or error}.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a MedSegDiff checkpoint config.")
    format_version = document.get("format_version", FORMAT_VERSION)
    if not isinstance(format_version, int) or isinstance(format_version, bool) or format_version < 1:
        raise CheckpointError(
            f"{folder / CONFIG_FILE} has an unknown format_version {format_version!r:.40}; "
            f"this napari-medsegdiff reads format {FORMAT_VERSION}."
        )
    if format_version > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer napari-medsegdiff "
            f"(format {format_version}); upgrade napari-medsegdiff to read it."
        )
    try:
        check_checkpoint_document(document)
    except ConfigError as error:
        raise CheckpointError(f"{folder / CONFIG_FILE} has an invalid configuration: {error}") from None
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
