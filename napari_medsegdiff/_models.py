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
    from magicgui.widgets import ComboBox

    from medsegdiff_training.inference import Segmenter

UNTRAINED = "untrained"
AUTOMATIC = "automatic"  # the segmentation widget's first choice: each model for its role
DEVICES_UNCHECKED = "Checked when the first model loads (the first Segment)."
_cache: dict[tuple[str, str], Segmenter] = {}
_lock = threading.Lock()


def read_model_choices() -> tuple[list[tuple[str, str]], str]:
    """(:func:`model_choices`, the registry's selected version): JSON files only, no torch."""
    from medsegdiff_training.registry import ModelRegistry

    return model_choices(), ModelRegistry().selected()


def model_choices() -> list[tuple[str, str]]:
    """(label, version name) for every registry version, the shipped default first.

    Labels are short (``default (shipped)``, ``v3-… (from default)``): a score is shown only
    with what it was measured on (:func:`score_lines`). Without any trained model, a clearly
    labelled untrained one is offered instead.
    """
    from medsegdiff_training.registry import ModelRegistry

    choices = []
    for version in ModelRegistry().usable():  # a broken version is listed by the CLI, not offered
        details = []
        if version.read_only:
            details.append("shipped")
        if version.parent:
            details.append(f"from {version.parent}")
        label = version.name + (f" ({', '.join(details)})" if details else "")
        choices.append((label, version.name))
    if not choices:
        choices.append(("untrained — random weights, for trying the tool only", UNTRAINED))
    return choices


def model_roles() -> tuple[str, str]:
    """(the whole-image model, the box-prompt model) the registry selects: JSON files only."""
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry()
    return registry.selected(), registry.selected_for_boxes()


def automatic_label(whole: str, boxes: str) -> str:
    """The first entry of the widget's model picker: short, so that it is never cut off (the
    line under the picker, and this entry's tooltip, say which model does what)."""
    return f"automatic ({whole})" if whole == boxes else f"automatic ({whole} / {boxes})"


def automatic_meaning(whole: str, boxes: str) -> str:
    """What *automatic* does, in a sentence."""
    if whole == boxes:
        return f"automatic: {whole} for whole images and for boxes"
    return f"automatic: {whole} for whole images, {boxes} for boxes and points"


def score_lines(names: list[str]) -> dict[str, tuple[str, str]]:
    """Version name -> (its score and what it was measured on, the same with which images).

    ``Dice 0.882 on 30 held-out DDTI training images``; a fine-tuned version's is on its
    held-out corrections. Unknown names (``untrained``) get no line.
    """
    from medsegdiff_training.errors import MedSegDiffError
    from medsegdiff_training.registry import ModelRegistry
    from medsegdiff_training.score_labels import version_score

    registry, lines = ModelRegistry(), {}
    for name in names:
        try:
            score = version_score(registry.get(name))
        except MedSegDiffError:
            continue
        lines[name] = (score.label(), score.details())
    return lines


def comparison_with_parent(version: str) -> str:
    """A fine-tuned ``version`` and its parent scored on the same held-out corrections, in one
    sentence (``On the same 2 held-out corrections (…): default Dice 0.710, v3 Dice 0.962.``)."""
    from medsegdiff_training.errors import MedSegDiffError
    from medsegdiff_training.registry import ModelRegistry
    from medsegdiff_training.score_labels import version_score

    try:
        return version_score(ModelRegistry().get(version)).comparison(version)
    except MedSegDiffError:  # gone meanwhile
        return ""


def model_channels(name: str) -> int | None:
    """How many image channels version ``name`` takes (its config, no torch); None if unknown."""
    from medsegdiff_training.errors import MedSegDiffError
    from medsegdiff_training.registry import ModelRegistry

    if name == UNTRAINED:
        return 1
    try:
        channels = ModelRegistry().get(name).model.get("image_channels")
    except MedSegDiffError:
        return None
    return int(channels) if isinstance(channels, int) else None


def is_loaded(version: str, device: str) -> bool:
    """Whether :func:`get_segmenter` has this model in memory already (no loading to wait for)."""
    with _lock:
        return (version, device) in _cache


def device_choices() -> list[tuple[str, str | None]]:
    """(device, None when usable else the reason it is not); imports torch to ask it."""
    from medsegdiff_training.device import DEVICE_CHOICES, device_availability

    reasons = device_availability()
    return [(choice, reasons.get(choice)) for choice in DEVICE_CHOICES]


def known_device_choices() -> list[tuple[str, str | None]] | None:
    """:func:`device_choices` when torch is loaded already, else None (nothing is imported)."""
    return device_choices() if "torch" in sys.modules else None


def set_device_choices(box: ComboBox, devices: list[tuple[str, str | None]] | None) -> None:
    """Grey out the devices of a magicgui picker this machine lacks, the reason as the tooltip.

    The picker offers every device choice (``auto``, ``cuda``, ``mps``, ``cpu``) in that order;
    ``devices=None``: none checked yet (no torch), each saying when it will be. An unusable
    current choice falls back to ``auto``. magicgui has no disabled choices, so the greying
    is done on the items of its native QComboBox.
    """
    from medsegdiff_training.device import DEVICE_CHOICES

    if list(box.choices) != list(DEVICE_CHOICES):
        box.choices = list(DEVICE_CHOICES)
    reasons = dict(devices) if devices is not None else {}
    native = box.native
    for index in range(native.count()):
        reason = reasons.get(native.itemData(index))
        item = native.model().item(index)
        item.setToolTip(reason or ("" if devices is not None else DEVICES_UNCHECKED))
        item.setEnabled(reason is None)
    if reasons.get(box.value) is not None:
        box.value = "auto"


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
