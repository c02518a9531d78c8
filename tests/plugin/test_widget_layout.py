"""How the widget looks and keeps the viewer answering (issue 30): progress you can see, GUI work
in small pieces, the Advanced section, both docks on a 1080p screen, no cut-off text, the trend plot.

No wall-clock asserts here (speed lives in benchmarks/bench_gui_stall.py): these tests check
the order of what happens on the GUI thread, which is what keeps each piece of it short.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QObject, Qt, Signal

from napari_medsegdiff._sampling_glue import Frame

pytestmark = pytest.mark.gui


def _run(qtbot, widget, timeout=120_000):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


class _Later(QObject):
    """Calls a function on a later turn of the event loop (a queued signal)."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(lambda function: function(), Qt.ConnectionType.QueuedConnection)


def test_the_progress_bar_says_each_stage_of_a_run(qtbot, widget):
    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).random((40, 40)), name="scan")
    widget._refresh_layers()
    widget.advanced.steps.value = 3
    seen = []
    progress = widget.progress
    # record what the bar is told, from before the worker starts (a connection made to the
    # worker after run() could miss its first yield on a busy machine)
    show_stage, show_steps = progress.stage, progress.steps

    def record_stage(text):
        show_stage(text)
        seen.append(("Stage", progress.text, progress.bar.maximum()))

    def record_steps(done, total, text):
        show_steps(done, total, text)
        seen.append(("Frame", progress.text, progress.bar.maximum()))

    progress.stage, progress.steps = record_stage, record_steps
    widget.run()  # the fixture forgot every loaded model: this run loads 'tiny'
    assert not widget.progress.isHidden()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    loading = [i for i, (kind, text, _) in enumerate(seen) if text.startswith("Loading the model 'tiny'")]
    first_frame = next(i for i, (kind, _, _) in enumerate(seen) if kind == "Frame")
    assert loading and seen[loading[0]][0] == "Stage" and loading[0] < first_frame
    assert seen[loading[0]][2] == 0  # a busy bar while loading: no count to show yet
    steps = [(text, maximum) for kind, text, maximum in seen if kind == "Frame"]
    assert [text.split(" (")[0] for text, _ in steps] == [f"denoising step {k} of 3" for k in (1, 2, 3)]
    assert {maximum for _, maximum in steps} == {3}
    assert widget.progress.isHidden() and widget.status.text().startswith("Done")
    seen.clear()
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert any(kind == "Frame" for kind, _, _ in seen)
    assert not any(text.startswith("Loading the model") for _, text, _ in seen)  # loaded already


def test_frames_are_handled_one_at_a_time_never_inside_another_slot(qtbot, make_napari_viewer, tiny_model):
    """napari's activity progress bar processes pending events whenever it moves, so the next
    frames' slots ran inside the slot of the frame before: the GUI thread re-entered itself and
    did several frames' work in one go. The widget's own bar never processes events. (A shown
    viewer: its activity dock is where napari's progress bars live.)"""
    import sys

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    viewer.add_image(np.random.default_rng(0).random((300, 300)), name="scan")
    widget._refresh_layers()
    widget.advanced.steps.value = 6
    widget.advanced.ensemble.value = 1
    inside = []

    def in_a_plugin_slot() -> bool:  # a frame of the plugin's own code below this slot
        frame = sys._getframe(2)
        while frame is not None:
            if "napari_medsegdiff" in frame.f_code.co_filename:
                return True
            frame = frame.f_back
        return False

    def on_yield(item) -> None:
        if isinstance(item, Frame):
            inside.append(in_a_plugin_slot())

    widget.run().yielded.connect(on_yield)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(inside) == 6 and not any(inside)


def test_the_result_layers_come_one_per_event_loop_turn_and_a_rerun_reuses_its_layers(qtbot, widget):
    viewer = widget.viewer
    viewer.add_image(np.random.default_rng(0).random((40, 40)), name="scan")
    widget._refresh_layers()
    widget.advanced.steps.value = 2
    widget.advanced.ensemble.value = 2  # an uncertainty layer, then the labels
    later, events = _Later(), []

    def inserted(event):
        name = event.value.name
        events.append(("inserted", name))
        later.call.emit(lambda: events.append(("turn after", name)))

    viewer.layers.events.inserted.connect(inserted)
    _run(qtbot, widget)
    qtbot.wait(50)
    names = [name for kind, name in events if kind == "inserted"]
    assert names == ["scan x_t", "scan uncertainty", "scan segmentation"]
    # the viewer had a turn (to draw, to answer a click) between adding one layer and the next
    for first, second in zip(names, names[1:], strict=False):
        assert events.index(("turn after", first)) < events.index(("inserted", second))
    events.clear()
    _run(qtbot, widget)  # the same image again: only the new Labels layer is built
    assert [name for kind, name in events if kind == "inserted"] == ["scan segmentation [1]"]
    assert [layer.name for layer in viewer.layers] == [
        "scan",
        "scan x_t",
        "scan uncertainty",
        "scan segmentation",
        "scan segmentation [1]",
    ]


def test_the_advanced_section_is_closed_and_holds_the_recommended_values(qtbot, widget):
    from medsegdiff_training.sampling_defaults import SamplingSettings

    content = widget.advanced_section.content()
    assert not widget.advanced_section.isExpanded()
    assert content.maximumHeight() == 0  # diffusion jargon out of sight
    widget.advanced.reset()  # (the fixture asked for one sample; back to the recommendation)
    assert widget.advanced.is_recommended() and widget.settings().to_dict() == SamplingSettings().to_dict()
    assert widget.advanced_section.text() == "Advanced: DDIM 3 steps × 5, auto (recommended)"
    widget.advanced.sampler.value = "dpm++"
    assert widget.advanced.steps.value == 5 and "DPM-Solver++ 5 steps × 5" in widget.advanced_section.text()
    assert "(changed)" in widget.advanced_section.text()
    widget.advanced_section.expand(animate=False)
    assert widget.advanced_section.isExpanded() and content.maximumHeight() >= content.sizeHint().height()


def test_both_widgets_docked_fit_a_1080p_screen_without_cut_off_text(
    qtbot, make_napari_viewer, medsegdiff_home
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.add_image(np.zeros((4, 64, 64)), name="thyroid cine (DDTI samples)")
    viewer.open_sample("napari-medsegdiff", "ultrasound")
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    _, queue = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff queue")
    qtbot.waitUntil(
        lambda: widget._choices_ready and queue.model_box.currentData() is not None, timeout=30_000
    )
    qtbot.wait(200)
    assert window.height() <= 1080 and window.minimumSizeHint().height() <= 1080
    assert widget.height() > 0.3 * 1080 and queue.height() > 0.3 * 1080  # both get room

    def shows_all_of(combo) -> bool:
        return combo.width() >= combo.fontMetrics().horizontalAdvance(combo.currentText()) + 24

    assert (
        shows_all_of(widget.image_box) and shows_all_of(widget.prompts_box) and shows_all_of(widget.model_box)
    )
    assert queue.volume_box.currentText() == "thyroid cine (DDTI samples)" and shows_all_of(queue.volume_box)
    for spin in (queue.finetune_every, queue.finetune_minutes):
        assert spin.width() >= spin.sizeHint().width()
    # the view fits the sample into the canvas the docks left
    height, width = viewer.window._qt_viewer.canvas.size
    shown = viewer.scene.camera.zoom * 300
    assert 0.9 * min(height, width) <= shown <= min(height, width) + 1


def test_the_trend_plot_has_labelled_axes_and_a_lone_point_says_its_value(qtbot):
    from napari_medsegdiff._trend_plot import TrendPlot

    plot = TrendPlot()
    qtbot.addWidget(plot)
    assert "nothing accepted yet" in plot.axis_texts()
    plot.add_changed(1, 0.034)
    texts = plot.axis_texts()
    assert {"accepted images", "pixels changed (%)", "held-out Dice", "3.4 %"} <= set(texts)
    plot.add_changed(2, 0.01)
    plot.add_finetune(2, 0.80, 0.91)
    assert "3.4 %" not in plot.axis_texts() and "0.910" in plot.axis_texts()
    plot.resize(320, 150)
    picture = plot.grab().toImage()
    assert picture.width() == 320  # it paints without error at a dock's width
