"""A multi-class model prompted with boxes in the widget (real viewer under Xvfb, tiny 3-class model).

Its objects are labelled with their classes (1..K-1), not with object ids; a second run
with one more box keeps the classes of the new object as they are (no shift to "next free
ids"), and the run record says the labels are classes.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

RULE_PX = 10
BOXES = [(20, 30, 120, 110), (300, 150, 420, 260), (180, 20, 260, 90)]  # x0, y0, x1, y1


def rectangle(box):
    x0, y0, x1, y1 = box
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float) - 0.5


def test_a_three_class_model_labels_prompted_objects_with_classes(qtbot, widget, medsegdiff_home):
    import torch

    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.prompts import Box, CropRule
    from medsegdiff_training.registry import ModelRegistry

    torch.manual_seed(0)
    rule = CropRule(margin_px=RULE_PX, margin_fraction=0.0)
    folder = save_checkpoint(
        medsegdiff_home / "tiny3-checkpoint",
        MedSegDiffUNet(named_config("tiny", num_classes=3)),
        DiffusionConfig(prediction="v"),
        PreprocessConfig(crop_rule=rule),
    )
    ModelRegistry().add(folder, name="tiny3")
    widget.refresh_models(select="tiny3")
    assert widget.model_version() == "tiny3"

    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).normal(100, 20, (300, 500)).astype(np.float32), name="frame")
    shapes = viewer.add_shapes([rectangle(b) for b in BOXES[:2]], shape_type="rectangle", name="boxes")
    widget._refresh_layers()
    widget.advanced.threshold.value = 0.3  # the untrained model's foreground is 1 - P(background), about 2/3
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    layer = viewer.layers["frame segmentation"]
    first = np.asarray(layer.data).copy()
    assert set(np.unique(first)) <= {0, 1, 2} and (first > 0).any()
    inside = np.zeros(first.shape, bool)
    for box in BOXES[:2]:
        window = rule.window(Box(*box))
        inside[max(window.top, 0) : window.bottom, max(window.left, 0) : window.right] = True
    assert not first[~inside].any()
    assert layer.metadata["medsegdiff"]["labels"] == "classes"

    shapes.add_rectangles(rectangle(BOXES[2]))
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    after = np.asarray(viewer.layers["frame segmentation"].data)
    assert np.array_equal(after[first > 0], first[first > 0])  # the first objects stay
    window = rule.window(Box(*BOXES[2]))
    added = after[window.top : window.bottom, window.left : window.right][
        first[window.top : window.bottom, window.left : window.right] == 0
    ]
    assert (added > 0).any() and set(np.unique(added)) <= {0, 1, 2}  # classes, not ids 3, 4
