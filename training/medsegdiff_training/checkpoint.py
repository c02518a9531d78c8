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
from .checkpoint_files import (  # noqa: F401  (re-exported: the checkpoint API's home)
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    _checkpoint_folder,
    read_checkpoint_config,
)
from .config import DiffusionConfig, ModelConfig, PreprocessConfig, check_prompt_encoding
from .errors import CheckpointError
from .model import MedSegDiffUNet


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
    check_prompt_encoding(config, preprocess)
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


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or its ``model.safetensors``) without unpickling anything."""
    folder = _checkpoint_folder(Path(path))
    document = read_checkpoint_config(folder)
    try:
        model_config = ModelConfig.from_dict(document["model"])
        diffusion = DiffusionConfig.from_dict(document.get("diffusion", {}))
        preprocess = PreprocessConfig.from_dict(document.get("preprocess", {}))
        check_prompt_encoding(model_config, preprocess)
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
