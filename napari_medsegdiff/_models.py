"""The models and devices the widget offers; models loaded lazily and once per (version, device).

Listing models reads the registry's JSON files only, and devices are offered before they
are checked, so that opening the widget never imports torch; torch comes in when a model
is first needed (in the worker thread of the first Segment).
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtpy.QtWidgets import QComboBox

    from medsegdiff_training.inference import Segmenter

UNTRAINED = "untrained"
DEVICES_UNCHECKED = "Checked when the first model loads (the first Segment)."
_cache: dict[tuple[str, str], Segmenter] = {}
_lock = threading.Lock()


def read_model_choices() -> tuple[list[tuple[str, str]], str]:
    """(:func:`model_choices`, the registry's selected version): JSON files only, no torch."""
    from medsegdiff_training.registry import ModelRegistry

    return model_choices(), ModelRegistry().selected()


def model_choices() -> list[tuple[str, str]]:
    """(label, version name) for every registry version, the shipped default first.

    Without any trained model, a clearly labelled untrained one is offered instead.
    """
    from medsegdiff_training.registry import ModelRegistry

    choices = []
    for version in ModelRegistry().usable():  # a broken version is listed by the CLI, not offered
        details = []
        if version.read_only:
            details.append("shipped")
        if version.parent:
            details.append(f"from {version.parent}")
        if version.validation_dice is not None:
            details.append(f"val Dice {version.validation_dice:.3f}")
        label = version.name + (f" ({', '.join(details)})" if details else "")
        choices.append((label, version.name))
    if not choices:
        choices.append(("untrained — random weights, for trying the tool only", UNTRAINED))
    return choices


def device_choices() -> list[tuple[str, str | None]]:
    """(device, None when usable else the reason it is not); imports torch to ask it."""
    from medsegdiff_training.device import DEVICE_CHOICES, device_availability

    reasons = device_availability()
    return [(choice, reasons.get(choice)) for choice in DEVICE_CHOICES]


def known_device_choices() -> list[tuple[str, str | None]] | None:
    """:func:`device_choices` when torch is loaded already, else None (nothing is imported)."""
    return device_choices() if "torch" in sys.modules else None


def fill_device_box(box: QComboBox, devices: list[tuple[str, str | None]] | None) -> None:
    """Fill a device picker: unavailable devices greyed out with the reason as a tooltip.

    ``devices=None``: every device choice, not checked yet (no torch), each saying when it
    will be. The current choice is kept when it is still listed.
    """
    from medsegdiff_training.device import DEVICE_CHOICES

    current = box.currentData()
    box.clear()
    for choice, reason in devices or [(choice, None) for choice in DEVICE_CHOICES]:
        box.addItem(choice if reason is None else f"{choice} (unavailable)", choice)
        item = box.model().item(box.count() - 1)
        item.setToolTip(reason or ("" if devices is not None else DEVICES_UNCHECKED))
        if reason is not None:
            item.setEnabled(False)
    box.setCurrentIndex(max(box.findData(current), 0))


def get_segmenter(version: str, device: str) -> Segmenter:
    """Load (once) and return a ready segmenter for ``version`` on ``device``."""
    from medsegdiff_training.inference import Segmenter
    from medsegdiff_training.registry import ModelRegistry

    key = (version, device)
    with _lock:
        if key not in _cache:
            _cache[key] = Segmenter(ModelRegistry().load(version, device="cpu"), device=device)
        return _cache[key]


def forget_models() -> None:
    """Drop every cached model (after the registry changed under a name)."""
    with _lock:
        _cache.clear()
