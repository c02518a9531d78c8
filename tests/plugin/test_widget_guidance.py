"""What the widget tells the annotator (issue 30): a poor whole-image answer, what each Dice was
measured on, which model segments what, a channel stack's guessed reading, the named axes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medsegdiff._sample_data import ultrasound_all

pytestmark = pytest.mark.gui


def _run(qtbot, widget, timeout=120_000):
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


@pytest.fixture
def default_widget(qtbot, make_napari_viewer, medsegdiff_home):
    """A fresh registry (the shipped models, ``default`` selected) and the widget docked."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    qtbot.waitUntil(lambda: widget._choices_ready, timeout=30_000)
    return widget


def test_a_whole_frame_unlike_the_training_crops_is_said_to_be_probably_poor(
    qtbot, default_widget, notifications
):
    widget, viewer = default_widget, default_widget.viewer
    viewer.open_sample("napari-medsegdiff", "ultrasound")  # a nodule-centred 300x300 crop, as trained
    widget._refresh_layers()
    _run(qtbot, widget)
    assert not widget.warning.isVisible() and widget.warning.text() == ""
    assert not [m for severity, m in notifications() if severity == "warning"]

    # three crops side by side, three times: a 900x900 frame, three times the training size
    samples = [data for data, _, _ in ultrasound_all()]
    mosaic = np.concatenate([np.concatenate(samples[i:] + samples[:i], axis=1) for i in range(3)], axis=0)
    viewer.add_image(mosaic, name="mosaic")
    widget.image_box.setCurrentText("mosaic")
    _run(qtbot, widget)
    assert widget.status.text().startswith("Done")  # the answer is there; it comes with a warning
    assert not widget.warning.isHidden()
    text = widget.warning.text()
    assert "probably poor" in text and "draw a box around the object" in text and "'default'" in text
    warned = [m for severity, m in notifications() if severity == "warning"]
    assert warned and "probably poor" in warned[-1]

    # a new run clears the old warning at once
    widget.image_box.setCurrentText("thyroid ultrasound")
    _run(qtbot, widget)
    assert widget.warning.isHidden()


def test_every_dice_says_what_it_was_measured_on(default_widget):
    widget = default_widget
    details = widget.models.details.text()
    assert "Dice 0.882 on 30 held-out DDTI training images" in details
    assert "val Dice" not in widget.model_box.itemText(1)  # no bare number in the picker
    index = widget.model_box.findData("drishti-disc-cup")
    assert "on 5 held-out training images" in widget.model_box.itemData(index, 3)  # its tooltip


def test_the_switch_offer_compares_parent_and_child_on_the_same_corrections(default_widget, tmp_path):
    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.finetune_events import FinetuneDone
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.registry import ModelRegistry

    widget = default_widget
    held_out = ["20261207-093100-aa11bb22", "20261207-093200-cc33dd44"]
    folder = save_checkpoint(
        tmp_path / "child",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(),
        PreprocessConfig(),
        parent_version="default",
        finetune={"validation_entries": held_out, "train_entries": ["x", "y", "z"]},
    )
    metrics = {"validation_dice_before": 0.71, "validation_dice_after": 0.962, "validation_corrections": 2}
    ModelRegistry().add(folder, name="child", parent="default", metrics=metrics)
    asked = []
    widget.confirm = lambda question: asked.append(question) or False
    done = FinetuneDone(
        version="child",
        parent="default",
        path=str(folder),
        steps=1,
        validation_dice_before=0.71,
        validation_dice_after=0.962,
        adaptation={},
        seconds=1.0,
        cpu_seconds=1.0,
    )
    widget.corrections._on_finetuned(done)
    assert len(asked) == 1
    assert "On the same 2 held-out corrections" in asked[0] and held_out[0] in asked[0]
    assert "default Dice 0.710" in asked[0] and "child Dice 0.962" in asked[0]
    # the picker now lists the child, its number beside what it was measured on
    index = widget.model_box.findData("child")
    assert index > 0 and "Dice 0.962 on 2 held-out corrections" in widget.model_box.itemData(index, 3)
    widget.refresh_models(select="child")
    assert "child (Dice 0.962 on 2 held-out corrections)" in widget.models.details.text()


def test_boxes_use_the_box_model_and_whole_images_the_whole_image_model(qtbot, widget, medsegdiff_home):
    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry()
    folder = save_checkpoint(
        medsegdiff_home / "boxy-checkpoint",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(),
        PreprocessConfig(),
    )
    registry.add(folder, name="boxy")
    registry.select("boxy", role="boxes")
    widget.refresh_models()
    assert widget.model_box.currentData() == "automatic"
    assert widget.model_box.currentText() == "automatic (tiny / boxy)"
    assert widget.models.details.text().startswith("Whole images: tiny")
    assert "Boxes and points: boxy" in widget.models.details.text()
    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).random((60, 80)), name="scan")
    widget._refresh_layers()
    widget.prompts_box.setCurrentText("whole image")
    _run(qtbot, widget)
    assert viewer.layers["scan segmentation"].metadata["medsegdiff"]["model_version"] == "tiny"
    viewer.layers.remove("scan segmentation")
    viewer.add_shapes([np.array([[10, 10], [10, 50], [40, 50], [40, 10]])], shape_type="rectangle", name="b")
    widget.prompts_box.setCurrentText("b")
    _run(qtbot, widget)
    assert viewer.layers["scan segmentation"].metadata["medsegdiff"]["model_version"] == "boxy"
    # one version chosen by hand does both
    widget.model_box.setCurrentIndex(widget.model_box.findData("tiny"))
    assert widget.models.box_version() == widget.models.whole_image_version() == "tiny"


def test_a_guessed_channel_stack_says_so_and_the_volume_reading_is_one_click_away(qtbot, widget):
    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).random((4, 40, 30)), name="planes")
    widget._refresh_layers()
    text = widget.axes_label.text()
    assert text.startswith("Guessed: the 4 planes on axis 0 are channels of one 2D image")
    assert "mixed into one grey image by RGB luminance (the 4th plane dropped)" in text and "'tiny'" in text
    button = widget.axes.switch_button
    assert not button.isHidden() and button.text() == "Read as 4 slices"
    from qtpy.QtCore import Qt

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # an int is refused under PyQt6
    assert widget.axes_box.currentText() == "volume (slices along axis 0)"
    assert widget.axes_label.text() == "volume of 4 slices of 40x30 (axis 0)"
    assert button.text() == "Read as 4 channels"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert widget.axes_box.currentText() == "auto" and widget.axes_label.text().startswith("Guessed")
    # a 2D image or an RGB one is not a guess: nothing to offer
    viewer.add_image(np.zeros((40, 30, 3), np.uint8), name="photo", rgb=True)
    widget.image_box.setCurrentText("photo")
    assert button.isHidden() and widget.axes_label.text() == "RGB image, 40x30"


def test_the_denoising_steps_and_a_volumes_slices_have_named_sliders(qtbot, widget):
    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).random((5, 40, 30)), name="volume")
    widget._refresh_layers()
    widget.advanced.steps.value = 2
    _run(qtbot, widget)
    animation = viewer.layers["volume x_t"]
    assert tuple(animation.axis_labels) == ("denoising step", "slice", "row", "column")
    assert tuple(viewer.dims.axis_labels) == ("denoising step", "slice", "row", "column")
    assert viewer.layers["volume"].axis_labels == ("-3", "-2", "-1")  # the user's layer is untouched
    # the image's own names are kept where it has them
    viewer.add_image(np.zeros((4, 20, 20)), name="named", axis_labels=("z", "y", "x"))
    widget.image_box.setCurrentText("named")
    widget.axes_box.setCurrentText("volume (slices along axis 0)")
    _run(qtbot, widget)
    assert tuple(viewer.layers["named x_t"].axis_labels) == ("denoising step", "z", "y", "x")
