"""What a fine-tune will turn its parent into (channels, classes), decided without torch.

The fine-tune dialog shows it the moment it opens ("3 classes, RGB (the parent: binary,
grey)"), on the GUI thread, so nothing here imports torch: the plan reads the parent's
configuration from the registry's JSON and the corrections' manifest lines. The weight
surgery that carries it out is :mod:`~medsegdiff_training.surgery`.

Examples
--------
>>> from medsegdiff_training.config import named_config
>>> plan_adaptation(named_config("tiny"), data_channels=3, data_classes=3).describe()
'3 classes, RGB (the parent: binary, grey)'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig, named_config
from .corrections import CorrectionsStore
from .errors import ConfigError
from .registry import UNTRAINED_VERSION, ModelRegistry


@dataclass(frozen=True)
class Adaptation:
    """What a fine-tune turns the parent into: channels and classes, before and after."""

    parent_channels: int
    parent_classes: int
    channels: int
    classes: int

    @property
    def changes(self) -> bool:
        return (self.channels, self.classes) != (self.parent_channels, self.parent_classes)

    def describe(self) -> str:
        """E.g. ``3 classes, RGB (the parent: binary, grey)``."""
        child = f"{_classes(self.classes)}, {_channels(self.channels)}"
        if not self.changes:
            return f"{child}, as the parent"
        return f"{child} (the parent: {_classes(self.parent_classes)}, {_channels(self.parent_channels)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_channels": self.parent_channels,
            "parent_classes": self.parent_classes,
            "channels": self.channels,
            "classes": self.classes,
        }


def _classes(count: int) -> str:
    return "binary" if count == 2 else f"{count} classes"


def _channels(count: int) -> str:
    return {1: "grey", 3: "RGB"}.get(count, f"{count} channels")


def plan_adaptation(
    parent: ModelConfig,
    data_channels: int,
    data_classes: int,
    channels: int | None = None,
    num_classes: int | None = None,
) -> Adaptation:
    """Decide the child's channels and classes: what the data needs (or what is forced).

    A child never narrows: fewer channels or classes in the data than the parent takes
    keep the parent's (grey images are replicated, labels fit). Forcing fewer raises
    :class:`ConfigError`, as does a channel change other than grey to RGB.
    """
    wanted_channels = channels if channels is not None else max(parent.image_channels, data_channels)
    wanted_classes = num_classes if num_classes is not None else max(parent.num_classes, data_classes)
    if wanted_channels < parent.image_channels:
        raise ConfigError(
            f"The parent takes {parent.image_channels}-channel images; a fine-tuned version cannot take "
            f"fewer (asked for {wanted_channels}). Grey corrections are replicated to its channels."
        )
    if wanted_channels != parent.image_channels and (parent.image_channels, wanted_channels) != (1, 3):
        asked = (
            f"--channels {channels}"
            if channels is not None
            else f"corrections with {data_channels}-channel images"
        )
        raise ConfigError(
            f"A fine-tune can change a model's channels only from grey (1) to RGB (3); this parent takes "
            f"{parent.image_channels}-channel images and {asked} would need {wanted_channels}. Export the "
            "corrections as grey or RGB images, or fine-tune a parent with that many channels."
        )
    if wanted_classes < parent.num_classes:
        raise ConfigError(
            f"The parent has {parent.num_classes} classes; a fine-tuned version cannot have fewer "
            f"(asked for {wanted_classes})."
        )
    return Adaptation(parent.image_channels, parent.num_classes, wanted_channels, wanted_classes)


def corrections_profile(entries: list[Any]) -> tuple[int, int]:
    """(channels, classes) that corrections need, from their manifest records alone.

    Channels: 3 when any entry is a 2D image with 3 or 4 channels (RGB, RGBA), else 1.
    Classes: 2 for masks holding only 1 (or 255), else the largest label + 1; the object ids
    1..n of a binary model's prompted run (``extra.prompts.labels == "objects"``) count as
    one foreground class. Cheap: no image is read, so the fine-tune dialog can show it at once.
    """
    channels, top = 1, 1
    for entry in entries:
        manifest = entry.manifest
        axis, shape = manifest.get("channel_axis"), manifest.get("shape") or []
        if manifest.get("layout", "2d") == "2d" and axis is not None and len(shape) == 3:
            channels = max(channels, 3 if shape[axis] in (3, 4) else int(shape[axis]))
        labels = [int(v) for v in manifest.get("labels_present") or [] if int(v) != 255]
        if ((manifest.get("extra") or {}).get("prompts") or {}).get("labels") == "objects":
            labels = [1] if labels else []  # a binary model's prompted objects 1..n: one foreground class
        top = max([top, *labels])
    return channels, max(2, top + 1)


def plan_finetune(
    parent: str,
    store: CorrectionsStore | str | Path,
    *,
    registry: ModelRegistry | None = None,
    channels: int | None = None,
    num_classes: int | None = None,
) -> Adaptation:
    """What fine-tuning ``parent`` on ``store`` will make: channels and classes of the child.

    Read from the corrections' manifest (cheap) unless ``channels`` / ``num_classes``
    force it. Imports no torch (unless an old version records no configuration).
    """
    registry = registry or ModelRegistry()
    store = store if isinstance(store, CorrectionsStore) else CorrectionsStore(Path(store))
    if parent == UNTRAINED_VERSION:
        config = named_config("cpu")  # what registry.load builds for it, without building it
    else:
        version = registry.get(parent)
        config = ModelConfig.from_dict(version.model) if version.model else registry.load(parent).model_config
    return plan_adaptation(config, *corrections_profile(store.entries()), channels, num_classes)
