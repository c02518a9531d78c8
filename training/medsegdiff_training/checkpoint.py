"""Checkpoints: weights in safetensors plus a JSON config. Loading never unpickles.

A checkpoint is a folder::

    model.safetensors   the network's weights (the EMA weights when training used EMA)
    config.json         architecture, schedule, preprocessing, version, parent version,
                        training data digest, metrics

Writes are atomic: the folder is written under a temporary name beside its final place
and renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import staging_folder, swap_in_folder
from .config import DiffusionConfig, ModelConfig, PreprocessConfig
from .errors import CheckpointError, ConfigError
from .model import MedSegDiffUNet
from .validation import check_checkpoint_document

FORMAT = "medsegdiff-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (in eval mode) and everything said about it."""

    model: MedSegDiffUNet
    model_config: ModelConfig
    diffusion: DiffusionConfig
    preprocess: PreprocessConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def version(self) -> str | None:
        return self.metadata.get("version")


def checkpoint_config(
    model_config: ModelConfig,
    diffusion: DiffusionConfig,
    preprocess: PreprocessConfig,
    **metadata: Any,
) -> dict[str, Any]:
    """The JSON document stored beside the weights."""
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "diffusion": diffusion.to_dict(),
        "preprocess": preprocess.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    document.update(metadata)
    return document


def _atomic_folder(destination: Path) -> Path:
    return staging_folder(destination)  # also removes what a killed earlier save left


def save_checkpoint(
    destination: str | os.PathLike[str],
    model: torch.nn.Module,
    diffusion: DiffusionConfig,
    preprocess: PreprocessConfig,
    *,
    overwrite: bool = False,
    **metadata: Any,
) -> Path:
    """Write ``model`` as a checkpoint folder at ``destination``, atomically.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.config import named_config
    >>> model = MedSegDiffUNet(named_config("tiny"))
    >>> folder = save_checkpoint(tempfile.mkdtemp() + "/ckpt", model, DiffusionConfig(), PreprocessConfig())
    >>> load_checkpoint(folder).model_config.name
    'tiny'
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise CheckpointError(f"{destination} exists already; checkpoints are never overwritten.")
    config: ModelConfig = model.config  # type: ignore[assignment]
    document = checkpoint_config(config, diffusion, preprocess, **metadata)
    staging = _atomic_folder(destination)
    try:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(weights, str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        swap_in_folder(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


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


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or its ``model.safetensors``) without unpickling anything."""
    folder = _checkpoint_folder(Path(path))
    document = read_checkpoint_config(folder)
    try:
        model_config = ModelConfig.from_dict(document["model"])
        diffusion = DiffusionConfig.from_dict(document.get("diffusion", {}))
        preprocess = PreprocessConfig.from_dict(document.get("preprocess", {}))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG_FILE} has an invalid configuration: {error}") from None
    try:
        weights = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}.") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} is corrupt or truncated ({error}).") from None
    model = MedSegDiffUNet(model_config)
    check_weights_match(model, weights, folder)
    model.load_state_dict(weights)
    model.eval().to(device)
    metadata = {k: v for k, v in document.items() if k not in ("model", "diffusion", "preprocess")}
    return Checkpoint(model, model_config, diffusion, preprocess, metadata, folder)


def check_weights_match(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Raise a readable :class:`CheckpointError` when weights and config disagree."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{name}: file {tuple(weights[name].shape)} vs config {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights and tuple(weights[name].shape) != tuple(tensor.shape)
    ]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            details.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CheckpointError(
            f"The weights in {source} do not match its config.json: " + "; ".join(details) + ". "
            "The config was edited or the files come from different models."
        )


def convert_trusted_pickle(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    model_config: ModelConfig,
    diffusion: DiffusionConfig | None = None,
    preprocess: PreprocessConfig | None = None,
) -> Path:
    """Convert a state dict saved with ``torch.save`` that *you trust* into a safe checkpoint.

    This is the only place that reads a pickle, and only with ``weights_only=True``.
    """
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{source} does not exist.") from None
    except Exception as error:  # weights_only refuses anything but plain tensors and containers
        raise CheckpointError(
            f"{source} cannot be read as a plain PyTorch state dict (weights_only=True): {error}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a mapping of names to tensors).")
    model = MedSegDiffUNet(model_config)
    check_weights_match(model, state, Path(source))
    model.load_state_dict(state)
    return save_checkpoint(
        destination, model, diffusion or DiffusionConfig(), preprocess or PreprocessConfig()
    )
