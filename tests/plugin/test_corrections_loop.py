"""The human-in-the-loop cycle in a real viewer: segment, paint, export, fine-tune, switch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _image(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    return (disc * 120 + rng.normal(60, 20, (size, size))).clip(0, 255).astype(np.uint8)


def _segment(qtbot, widget, name="scan"):
    if name not in [layer.name for layer in widget.viewer.layers]:
        widget.viewer.add_image(_image(), name=name)
    widget._refresh_layers()
    widget.image_box.setCurrentText(name)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    return widget.viewer.layers[-1]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_segment_paint_export_finetune_and_segment_again(qtbot, widget, medsegdiff_home):
    labels = _segment(qtbot, widget)
    painted = labels.data.copy()
    painted[10:30, 10:30] = 1  # the annotator's correction
    labels.data = painted
    widget.viewer.layers.selection.active = labels
    entry = widget.export_correction()
    assert entry is not None and len(widget.store) == 1
    image, saved_labels, prediction = widget.store.read(widget.store.entries()[0])
    assert np.array_equal(saved_labels, painted)
    assert widget.store.entries()[0].manifest["model_version"] == "tiny"
    assert widget.count_label.text() == "1"

    widget.confirm = lambda question: True  # "switch to the new version?" -> yes
    dialog = widget.open_finetune_dialog()
    dialog.steps.setValue(2)
    finished = []
    dialog.start()
    dialog.process.done.connect(finished.append)
    dialog.process.failed.connect(finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    event = finished[0]
    assert isinstance(event, dict), event
    from medsegdiff_training.registry import ModelRegistry

    version = ModelRegistry().get(event["version"])
    assert version.parent == "tiny"
    assert widget.model_box.findData(version.name) >= 0
    assert widget.model_version() == version.name  # switched to it
    again = _segment(qtbot, widget)
    assert again.metadata["medsegdiff"]["model_version"] == version.name


def test_cancelling_a_finetune_leaves_the_registry_as_it_was(qtbot, widget, medsegdiff_home):
    labels = _segment(qtbot, widget)
    labels.data = np.pad(np.ones((20, 20), np.uint8), 14)
    widget.viewer.layers.selection.active = labels
    widget.export_correction()
    before = _digest(medsegdiff_home / "models")
    dialog = widget.open_finetune_dialog()
    dialog.steps.setValue(100000)
    outcome = []
    dialog.start()
    dialog.process.progress.connect(lambda event: dialog.cancel())
    dialog.process.cancelled.connect(lambda: outcome.append("cancelled"))
    dialog.process.done.connect(lambda event: outcome.append("done"))
    qtbot.waitUntil(lambda: bool(outcome), timeout=120_000)
    assert outcome == ["cancelled"]
    assert _digest(medsegdiff_home / "models") == before


def test_two_exports_make_two_entries_and_mistakes_are_refused(qtbot, widget, notifications):
    labels = _segment(qtbot, widget)
    labels.data = np.pad(np.ones((20, 20), np.uint8), 14)
    widget.viewer.layers.selection.active = labels
    assert widget.export_correction() is not None
    assert widget.export_correction() is not None
    assert len(widget.store) == 2

    empty = widget.viewer.add_labels(np.zeros((48, 48), np.uint8), name="empty")
    widget.viewer.layers.selection.active = empty
    widget.confirm = lambda question: False
    assert widget.export_correction() is None
    widget.confirm = lambda question: True  # a true negative, confirmed
    assert widget.export_correction() is not None
    assert len(widget.store) == 3

    wrong = widget.viewer.add_labels(np.ones((10, 10), np.uint8), name="wrong")
    widget.viewer.layers.selection.active = wrong
    assert widget.export_correction() is None
    assert len(widget.store) == 3
    assert any("shape" in message for severity, message in notifications() if severity == "error")
