"""What a model version's Dice was measured on, in words: so that numbers shown side by side
can be compared, or be seen not to be comparable.

A shipped model's validation Dice is measured on the training images its run held out; a
fine-tuned version's on the corrections its fine-tune held out (and its parent is scored on
those same corrections before fine-tuning). The napari model picker, the switch offer after
a fine-tune and the CLI read the same record here. JSON files only: no torch.

Examples
--------
>>> score = VersionScore(0.9617, ("20261207-0931-ab12",), "held-out correction", "default", 0.9004)
>>> score.label()
'Dice 0.962 on 1 held-out correction'
>>> score.comparison("v3")
'On the same 1 held-out correction (20261207-0931-ab12): default Dice 0.900, v3 Dice 0.962.'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .checkpoint_files import read_checkpoint_config
from .errors import MedSegDiffError

if TYPE_CHECKING:
    from .registry import ModelVersion

SHOWN_NAMES = 3  # at most this many names are listed in a sentence; the rest are counted


@dataclass(frozen=True)
class VersionScore:
    """A version's Dice and what it was measured on.

    ``dice`` is ``None`` when nothing was scored; ``images`` names what was scored (image
    names or correction ids); ``what`` says what they are (e.g. ``held-out DDTI training
    image``, singular); ``parent`` and ``parent_dice`` give the parent's score on the same
    images (fine-tuned versions only).
    """

    dice: float | None
    images: tuple[str, ...]
    what: str
    parent: str | None = None
    parent_dice: float | None = None

    def _count(self) -> str:
        count = len(self.images)
        if count == 0:
            return f"its {self.what}s (how many is not recorded)"
        return f"{count} {self.what}{'' if count == 1 else 's'}"

    def _names(self) -> str:
        shown = ", ".join(self.images[:SHOWN_NAMES])
        more = len(self.images) - SHOWN_NAMES
        return shown + (f" and {more} more" if more > 0 else "")

    def label(self) -> str:
        """``Dice 0.882 on 30 held-out DDTI training images``, or why there is no number."""
        if self.dice is None:
            if self.parent is not None:
                return "not scored: no correction was held out (a fine-tune holds some out from 3 on)"
            return "no validation score recorded"
        return f"Dice {self.dice:.3f} on {self._count()}"

    def details(self) -> str:
        """:meth:`label` and which images they were (for a tooltip)."""
        if self.dice is None or not self.images:
            return self.label()
        return f"{self.label()}: {self._names()}"

    def comparison(self, name: str) -> str:
        """Parent and child on the same held-out images, in one sentence (for the switch offer)."""
        if self.parent is None:
            return f"{name}: {self.label()}."
        if self.dice is None or self.parent_dice is None:
            return (
                f"{name} was not compared with {self.parent}: no correction was held out to score "
                "them on (a fine-tune holds some out from 3 corrections on)."
            )
        return (
            f"On the same {self._count()} ({self._names()}): {self.parent} Dice {self.parent_dice:.3f}, "
            f"{name} Dice {self.dice:.3f}."
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _validation_names(document: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """(the training images a run held out for validation, what they are)."""
    training = document.get("training") or {}
    data = document.get("training_data") or {}
    dataset = data.get("dataset")
    if isinstance(data.get("held_out_validation"), list):
        names = tuple(str(n) for n in data["held_out_validation"])
    elif isinstance(training.get("validation_images"), list):
        names = tuple(str(n) for n in training["validation_images"])
    else:
        datasets = training.get("datasets") or []
        names = tuple(
            str(n) for d in datasets if isinstance(d, dict) for n in d.get("validation_images") or []
        )
        if datasets and dataset is None:
            dataset = f"{len(datasets)}-dataset"
    return names, f"held-out {dataset + ' ' if dataset else ''}training image"


def version_score(version: ModelVersion) -> VersionScore:
    """What ``version``'s recorded Dice is and what it was measured on (JSON files only)."""
    metrics = version.metrics
    try:
        document = read_checkpoint_config(version.path)
    except MedSegDiffError:
        document = {}
    finetune = document.get("finetune")
    if isinstance(finetune, dict) or "validation_dice_after" in metrics:
        entries = (finetune or {}).get("validation_entries")
        names = tuple(str(e) for e in entries) if isinstance(entries, list) else ()
        if not names and isinstance(metrics.get("validation_corrections"), int):
            names = tuple(f"correction {i + 1}" for i in range(metrics["validation_corrections"]))
        return VersionScore(
            _number(metrics.get("validation_dice_after")),
            names,
            "held-out correction",
            parent=version.parent or (finetune or {}).get("parent_version") or "its parent",
            parent_dice=_number(metrics.get("validation_dice_before")),
        )
    names, what = _validation_names(document)
    return VersionScore(_number(metrics.get("validation_dice")), names, what)
