"""A model named on a command line: a registry version by name, or a checkpoint folder by path.

``medsegdiff predict --model``, ``train --init-from`` and the rest read their model here.
No torch until a checkpoint is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint_files import PICKLE_SUFFIXES
from .registry import ModelRegistry

if TYPE_CHECKING:
    from .checkpoint import Checkpoint


def load_model(
    spec: str | None, registry: ModelRegistry, device: str = "cpu", *, for_boxes: bool = False
) -> tuple[Checkpoint, str]:
    """(the checkpoint, its name) of a registry version by name, or a checkpoint folder by path.

    ``spec`` ``None`` is the selected version (with ``for_boxes``: the one box prompts use,
    :meth:`~.registry.ModelRegistry.selected_for_boxes`). A name the registry knows is its
    version even when a folder of that name exists; a path (or a pickle file's name, to be
    refused with its reason) is read as a checkpoint.
    """
    from .checkpoint import load_checkpoint

    name = spec or (registry.selected_for_boxes() if for_boxes else registry.selected())
    path = Path(name)
    looks_like_path = "/" in name or "\\" in name or path.suffix.lower() in PICKLE_SUFFIXES
    if name not in registry.names() and (looks_like_path or path.exists()):
        return load_checkpoint(path, device), str(path)
    return registry.load(name, device), name
