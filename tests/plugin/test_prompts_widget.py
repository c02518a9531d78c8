"""Box and point prompts in the widget, in a real viewer under Xvfb, with the shipped model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medsegdiff._sample_data import ultrasound_all

pytestmark = pytest.mark.gui

SCALE, TRANSLATE = (0.5, 0.5), (10.0, -20.0)
# The expert masks' bounding boxes of the first two samples (x0, y0, x1, y1), and a box
# around the third sample's centre; the samples side by side make one 300x900 frame.
BOXES = [(79, 89, 223, 214), (300 + 34, 46, 300 + 268, 256), (600 + 60, 60, 600 + 240, 240)]


def rectangle(box, shapes_scale=1.0):
    """A napari rectangle (row, column vertices in world units) covering the box's pixels."""
    x0, y0, x1, y1 = box
    top, left = np.array(TRANSLATE) + np.array(SCALE) * (np.array([y0, x0]) - 0.5)
    bottom, right = np.array(TRANSLATE) + np.array(SCALE) * (np.array([y1, x1]) - 0.5)
    return np.array([[top, left], [top, right], [bottom, right], [bottom, left]]) / shapes_scale


def run_and_wait(qtbot, dock, timeout=120_000):
    worker = dock.run()
    assert worker is not None
    qtbot.waitUntil(lambda: dock.worker is None, timeout=timeout)
    return worker


@pytest.fixture
def frame_widget(qtbot, widget):
    viewer = widget.viewer
    frame = np.concatenate([data for data, _, _ in ultrasound_all()], axis=1)
    viewer.add_image(frame, name="frame", scale=SCALE, translate=TRANSLATE)
    qtbot.waitUntil(lambda: widget._choices_ready, timeout=30_000)
    widget.model_box.setCurrentIndex(widget.model_box.findData("default"))
    return widget


def test_two_boxes_give_two_objects_inside_their_crops_and_a_third_box_keeps_them(qtbot, frame_widget):
    from medsegdiff_training.prompts import Box
    from medsegdiff_training.registry import ModelRegistry

    widget, viewer = frame_widget, frame_widget.viewer
    # the prompts layer has its own scale: boxes reach the image through both layers' transforms
    shapes = viewer.add_shapes(
        [rectangle(b, 2.0) for b in BOXES[:2]], shape_type="rectangle", name="boxes", scale=(2.0, 2.0)
    )
    widget._refresh_layers()
    assert widget.prompts_box.currentText() == "newest prompts over the image"
    worker = run_and_wait(qtbot, widget)
    del worker
    labels_layer = viewer.layers["frame segmentation"]
    labels = np.asarray(labels_layer.data)
    assert labels.shape == (300, 900) and tuple(labels_layer.scale) == SCALE
    assert set(np.unique(labels)) == {0, 1, 2}
    rule = ModelRegistry().load("default").preprocess.prompt_crop_rule()
    for label, box in zip((1, 2), BOXES, strict=False):
        window = rule.window(Box(*box))
        rows, columns = np.nonzero(labels == label)
        assert rows.min() >= window.top and rows.max() < window.bottom
        assert columns.min() >= window.left and columns.max() < window.right
        # the nodule covers a good part of its expert box. The sample frame is made of DDTI's
        # 300x300 crops, where the default's box + 30 px (right on full-size frames) is tighter
        # than the crops it learnt (box + 55-70 % there): one member of 3 steps gives 0.38 here
        x0, y0, x1, y1 = box
        assert (labels[y0:y1, x0:x1] == label).mean() > 0.3
    animation = viewer.layers["frame x_t"]
    first = rule.window(Box(*BOXES[0]))  # the animation shows the first prompt over its crop
    corner = animation.data_to_world((0, -0.5, -0.5))[1:]
    assert np.allclose(
        corner, np.array(TRANSLATE) + np.array(SCALE) * (np.array([first.top, first.left]) - 0.5)
    )
    record = labels_layer.metadata["medsegdiff"]
    assert [p["box"] for p in record["prompts"]] == [[float(v) for v in b] for b in BOXES[:2]]

    # a correction painted by the annotator, then a third box: earlier objects and the paint stay
    edited = labels.copy()
    edited[150:160, 450:460] = 7
    labels_layer.data = edited
    shapes.add_rectangles(rectangle(BOXES[2], 2.0))
    run_and_wait(qtbot, widget)
    assert len([lay for lay in viewer.layers if lay.name.startswith("frame segmentation")]) == 1
    after = np.asarray(viewer.layers["frame segmentation"].data)
    assert np.array_equal(after[edited > 0], edited[edited > 0])  # nothing earlier was overwritten
    assert set(np.unique(after)) == {0, 1, 2, 7, 8}  # the new object takes the next free id
    rows, columns = np.nonzero(after == 8)
    window = rule.window(Box(*BOXES[2]))
    assert rows.size > 500 and columns.min() >= window.left and columns.max() < window.right
    assert "1 new object(s) of 1 prompt(s)" in widget.status.text()

    # everything prompted already: a notification, no run
    assert widget.run() is None


def test_draw_boxes_adds_a_prompts_layer_in_rectangle_mode_and_points_work(
    qtbot, frame_widget, notifications
):
    widget, viewer = frame_widget, frame_widget.viewer
    shapes = widget.draw_boxes()
    assert shapes.name == "frame prompts" and shapes.mode == "add_rectangle"
    assert widget.prompts_box.currentText() == "frame prompts"
    widget.draw_boxes()  # a second click selects the same layer
    assert [layer.name for layer in viewer.layers].count("frame prompts") == 1
    assert widget.run() is None  # nothing drawn yet: said so
    assert "has no box or point over 'frame'" in notifications()[-1][1]

    # a click on the first nodule: a box of the default size centred there
    y, x = 150, 150
    viewer.add_points([np.array(TRANSLATE) + np.array(SCALE) * np.array([y, x])], name="clicks")
    widget._refresh_layers()
    widget.prompts_box.setCurrentText("newest prompts over the image")
    widget.same_label.setChecked(True)
    run_and_wait(qtbot, widget)
    labels = np.asarray(viewer.layers["frame segmentation"].data)
    assert set(np.unique(labels)) == {0, 1}
    rows, columns = np.nonzero(labels)
    assert columns.max() < 300  # the object stays in the clicked tile
    assert labels[140:160, 140:160].mean() > 0.9


def test_a_rotated_rectangle_counts_through_its_bounding_box(qtbot, make_napari_viewer):
    from medsegdiff_training.prompts import Box
    from napari_medsegdiff._layer_axes import interpret
    from napari_medsegdiff._prompts import prompts_from_layer

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((100, 200)), scale=(2, 3), translate=(5, 7))
    diamond = np.array(
        [
            [5 + 2 * 20, 7 + 3 * 50],
            [5 + 2 * 40, 7 + 3 * 70],
            [5 + 2 * 60, 7 + 3 * 50],
            [5 + 2 * 40, 7 + 3 * 30],
        ]
    )
    shapes = viewer.add_shapes([diamond - [1, 1.5]], shape_type="polygon")
    found = prompts_from_layer(shapes, image, interpret((100, 200), False), tuple(viewer.dims.point))
    assert found == [Box(30.0, 20.0, 70.0, 60.0)]


def test_propagate_follows_a_box_through_a_volume_into_one_3d_labels_layer(qtbot, widget, notifications):
    viewer = widget.viewer
    volume = np.random.default_rng(0).normal(100, 20, (12, 64, 80)).astype(np.float32)
    image = viewer.add_image(volume, name="scan", scale=(2.0, 0.5, 0.5))
    widget._refresh_layers()
    viewer.dims.set_current_step(0, 5)
    assert widget.propagate() is None and "draw a box around the object on slice 5" in notifications()[-1][1]
    shapes = widget.draw_boxes()
    assert shapes.ndim == 3
    shapes.add_rectangles(np.array([[5, 20, 20], [5, 20, 40], [5, 40, 40], [5, 40, 20]]))
    widget.advanced.threshold.value = 0.01  # the untrained tiny model then claims its whole crop
    worker = widget.propagate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    labels_layer = viewer.layers["scan segmentation"]
    labels = np.asarray(labels_layer.data)
    assert labels.shape == (12, 64, 80) and tuple(labels_layer.scale) == tuple(image.scale)
    assert set(np.unique(labels)) <= {0, 1}
    assert all(labels[z].any() for z in range(12))  # the crop never vanished: both volume ends reached
    assert "on 12 slice(s)" in widget.status.text()
    assert labels_layer.metadata["medsegdiff"]["propagated"] == [list(range(12))]


def test_a_box_over_an_object_already_segmented_resegments_it_and_keeps_painted_pixels(qtbot, widget):
    """Issue 30: a box after a whole-image run used to add "0 new object(s)" and change nothing."""
    from medsegdiff_training.inference import Segmenter
    from medsegdiff_training.prompted import segment_prompts
    from medsegdiff_training.prompts import Box
    from medsegdiff_training.registry import ModelRegistry

    viewer = widget.viewer
    image = np.random.default_rng(0).random((80, 100)).astype(np.float32)
    viewer.add_image(image, name="scan")
    widget._refresh_layers()
    widget.prompts_box.setCurrentText("whole image")
    widget.advanced.threshold.value = 0.01  # the untrained model then calls the whole image object
    run_and_wait(qtbot, widget)
    labels_layer = viewer.layers["scan segmentation"]
    assert (np.asarray(labels_layer.data) == 1).all()
    edited = np.asarray(labels_layer.data).copy()
    edited[20:24, 30:34] = 5  # painted by the annotator inside the coming box
    edited[40:42, 50:52] = 0  # erased by the annotator inside the coming box
    labels_layer.data = edited

    def vertices(box):
        return np.array([[box.y0, box.x0], [box.y0, box.x1], [box.y1, box.x1], [box.y1, box.x0]]) - 0.5

    box = Box(25, 15, 75, 60)  # x0, y0, x1, y1: the pixels of rows 15-59, columns 25-74
    shapes = viewer.add_shapes([vertices(box)], shape_type="rectangle", name="boxes")
    widget.prompts_box.setCurrentText("boxes")
    widget.advanced.threshold.value = 0.5
    run_and_wait(qtbot, widget)
    after = np.asarray(viewer.layers["scan segmentation"].data)
    assert len([layer for layer in viewer.layers if layer.name.startswith("scan segmentation")]) == 1
    assert "1 object(s) re-segmented (your painted pixels kept); 0 new object(s) of 1 prompt(s)" in (
        widget.status.text()
    )
    expected = segment_prompts(
        Segmenter(ModelRegistry().load("tiny"), device="cpu"), image, [box], widget.settings()
    ).labels
    inside = np.zeros(after.shape, bool)
    inside[15:60, 25:75] = True
    painted = edited != 1
    assert 0 < expected[inside].mean() < 1  # the box's answer is not the whole-image one
    # under the box: the box's answer (keeping the object's id 1), except what was painted
    assert np.array_equal(after[inside & ~painted], (expected[inside & ~painted] > 0).astype(after.dtype))
    assert np.array_equal(after[painted], edited[painted])  # the paint and the erasure stay
    assert np.array_equal(after[~inside], edited[~inside])  # the model's pixels elsewhere stay

    # a box over pixels the annotator painted: nothing to re-segment there, and it says so
    after[62:78, 5:20] = 7
    viewer.layers["scan segmentation"].data = after
    shapes.add_rectangles(vertices(Box(5, 62, 20, 78)))
    run_and_wait(qtbot, widget)
    final = np.asarray(viewer.layers["scan segmentation"].data)
    assert (final[62:78, 5:20] == 7).all()
    assert "1 box(es) over pixels you painted left as they were" in widget.status.text()
