"""What the registry knows of one version: :class:`ModelVersion`, its ``version.json`` record
read and checked, and the rule for a version's name. JSON only, no torch."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, RegistryError
from .registry_selection import DEFAULT_VERSION, UNTRAINED_VERSION
from .validation import check_nesting

RESERVED_NAMES = (DEFAULT_VERSION, UNTRAINED_VERSION)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")


@dataclass
class ModelVersion:
    """One model version as the registry lists it."""

    name: str
    path: Path
    parent: str | None
    created: str
    metrics: dict[str, Any]
    data_digest: str | None
    read_only: bool
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict, repr=False)
    broken: str | None = None  # why the version cannot be used; None when it can

    @property
    def validation_dice(self) -> float | None:
        """The validation Dice recorded for this version (after fine-tuning, if it was), or None."""
        dice = self.metrics.get("validation_dice_after", self.metrics.get("validation_dice"))
        return float(dice) if isinstance(dice, (int, float)) and not isinstance(dice, bool) else None

    @property
    def config_summary(self) -> str:
        """One line about the architecture, e.g. ``cpu, 96x96, 1 channel, binary``."""
        if self.broken is not None:
            return f"BROKEN: {self.broken}"
        if not self.model:
            return "unknown architecture"
        height, width = self.model.get("image_size", ("?", "?"))
        channels = self.model.get("image_channels", 1)
        classes = self.model.get("num_classes", 2)
        kind = "binary" if classes == 2 else f"{classes} classes"
        plural = "" if channels == 1 else "s"
        return f"{self.model.get('name', '?')}, {height}x{width}, {channels} channel{plural}, {kind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "parent": self.parent,
            "created": self.created,
            "metrics": self.metrics,
            "data_digest": self.data_digest,
            "read_only": self.read_only,
            "description": self.description,
            "config_summary": self.config_summary,
            "model": self.model,
            "broken": self.broken,
        }


def check_version_name(name: str) -> str:
    """Return ``name`` when it can name a new version, else raise :class:`RegistryError`."""
    if name in RESERVED_NAMES:
        raise RegistryError(f"{name!r} is reserved for the shipped model; choose another name.")
    if not _NAME.match(name):
        raise RegistryError(
            f"{name!r} cannot name a model version: use letters, digits and . _ + - "
            "(up to 80, not starting with a dot or dash)."
        )
    return name


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "parent": (str, type(None)),
    "created": (str,),
    "description": (str,),
    "metrics": (dict, type(None)),
    "data_digest": (str, type(None)),
}


def read_version_record(path: Path) -> dict[str, Any]:
    """A version's ``version.json``, checked field by field; :class:`RegistryError` if damaged."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:
        raise RegistryError(f"{path} cannot be read ({str(error) or type(error).__name__:.200}).") from None
    if not isinstance(record, dict):
        raise RegistryError(f"{path} holds a {type(record).__name__}, not a JSON object.")
    for key, types in _RECORD_TYPES.items():
        if key in record and not isinstance(record[key], types):
            raise RegistryError(f"{path}: {key} has the wrong type ({type(record[key]).__name__}).")
    try:
        check_nesting(record)
    except ConfigError as error:
        raise RegistryError(f"{path}: {error}") from None
    return record


def broken_version(name: str, folder: Path, reason: str, read_only: bool) -> ModelVersion:
    """A version that is listed but cannot be used, and why (one line)."""
    return ModelVersion(
        name=name,
        path=folder,
        parent=None,
        created="",
        metrics={},
        data_digest=None,
        read_only=read_only,
        description="",
        broken=" ".join(reason.split()),
    )
