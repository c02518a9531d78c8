"""The models and devices the widget offers; models loaded lazily and once per (version, device).

torch and the training package are imported only when a model is first needed, so that
opening the widget is instant.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtpy.QtWidgets import QComboBox

    from medsegdiff_training.inference import Segmenter

UNTRAINED = "untrained"
_cache: dict[tuple[str, str], Segmenter] = {}
_lock = threading.Lock()


def model_choices() -> list[tuple[str, str]]:
    """(label, version name) for every registry version, the shipped default first.

    Without any trained model, a clearly labelled untrained one is offered instead.
    """
    from medsegdiff_training.registry import ModelRegistry

    choices = []
    for version in ModelRegistry().versions():
        details = []
        if version.read_only:
            details.append("shipped")
        if version.parent:
            details.append(f"from {version.parent}")
        dice = version.metrics.get("validation_dice_after", version.metrics.get("validation_dice"))
        if isinstance(dice, (int, float)):
            details.append(f"val Dice {dice:.3f}")
        label = version.name + (f" ({', '.join(details)})" if details else "")
        choices.append((label, version.name))
    if not choices:
        choices.append(("untrained — random weights, for trying the tool only", UNTRAINED))
    return choices


def device_choices() -> list[tuple[str, str | None]]:
    """(device, None when usable else the reason it is not)."""
    from medsegdiff_training.device import DEVICE_CHOICES, device_availability

    reasons = device_availability()
    return [(choice, reasons.get(choice)) for choice in DEVICE_CHOICES]


def fill_device_box(box: QComboBox, devices: list[tuple[str, str | None]]) -> None:
    """Fill a device picker: unavailable devices greyed out with the reason as a tooltip.

    The current choice is kept when it is still listed.
    """
    current = box.currentData()
    box.clear()
    for choice, reason in devices:
        box.addItem(choice if reason is None else f"{choice} (unavailable)", choice)
        if reason is not None:
            item = box.model().item(box.count() - 1)
            item.setEnabled(False)
            item.setToolTip(reason)
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
