"""The fine-tune dialog says what the child will become, and the child takes colour and new classes."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _colour_image(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    image = np.stack([60 + 120 * (radius < 12), 40 + 100 * (radius < 5), 30 + 0 * radius], -1)
    return (image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8)


@pytest.mark.slow
def test_colour_corrections_with_a_new_label_make_a_three_class_rgb_child(qtbot, widget):
    widget.viewer.add_image(_colour_image(), name="fundus", rgb=True)
    widget._refresh_layers()
    widget.image_box.setCurrentText("fundus")
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    labels = widget.viewer.layers[-1]
    painted = np.zeros(labels.data.shape, np.uint8)
    painted[12:36, 12:36], painted[19:29, 19:29] = 1, 2  # the rim, and the cup: a label the model lacks
    labels.data = painted
    widget.viewer.layers.selection.active = labels
    assert widget.export_correction() is not None

    widget.confirm = lambda question: True
    dialog = widget.open_finetune_dialog()
    assert dialog.child_label.text() == "3 classes, RGB (the parent: binary, grey)"
    dialog.options.steps.value = 1
    finished = []
    dialog.start()
    dialog.process.done.connect(finished.append)
    dialog.process.failed.connect(finished.append)
    qtbot.waitUntil(lambda: bool(finished), timeout=300_000)
    event = finished[0]
    from medsegdiff_training.finetune_events import FinetuneDone

    assert isinstance(event, FinetuneDone), event
    assert event.adaptation == {"parent_channels": 1, "parent_classes": 2, "channels": 3, "classes": 3}
    from medsegdiff_training.registry import ModelRegistry

    version = ModelRegistry().get(event.version)
    assert (
        version.parent == "tiny"
        and version.model["image_channels"] == 3
        and version.model["num_classes"] == 3
    )
    assert widget.model_version() == version.name  # switched to it; segmenting colour works
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.viewer.layers[-1].metadata["medsegdiff"]["model_version"] == version.name
