"""The widget's options, the store's Change… button, the fine-tune dialog's fields, sample data."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from medsegdiff_training.samplers import RECOMMENDED_STEPS
from napari_medsegdiff._sampling_glue import Frame

pytestmark = pytest.mark.gui


def _run(qtbot, widget, frames: list | None = None):
    worker = widget.run()
    assert worker is not None
    if frames is not None:
        worker.yielded.connect(lambda item: frames.append(item) if isinstance(item, Frame) else None)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    return widget.last_run.labels_layer


def _scan(widget, size: int = 40):
    image = widget.viewer.add_image(np.random.default_rng(0).random((size, size)), name="scan")
    widget._refresh_layers()
    return image


def test_choosing_a_sampler_sets_its_recommended_steps(widget):
    for name in ("dpm++", "ddpm", "ddim"):
        widget.advanced.sampler.value = name
        assert widget.advanced.steps.value == RECOMMENDED_STEPS[name]


def test_the_seed_repeats_a_run_and_another_seed_changes_it(qtbot, widget):
    _scan(widget)
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        widget.advanced.seed.value = seed
        frames = []
        labels = _run(qtbot, widget, frames)
        assert labels.metadata["medsegdiff"]["sampler_settings"]["seed"] == seed
        runs[key] = np.stack([frame.x_t for frame in frames])
    assert np.array_equal(runs["a"], runs["b"]) and not np.allclose(runs["a"], runs["c"])


def test_the_threshold_is_the_one_the_core_applies(qtbot, widget):
    from medsegdiff_training.inference import Segmenter
    from medsegdiff_training.registry import ModelRegistry

    image = _scan(widget)
    segmenter = Segmenter(ModelRegistry().load("tiny"), device="cpu")
    core = {}
    for threshold in (0.3, 0.7):
        widget.advanced.threshold.value = threshold
        labels = _run(qtbot, widget)
        assert labels.metadata["medsegdiff"]["sampler_settings"]["threshold"] == pytest.approx(threshold)
        core[threshold] = segmenter.segment(image.data, widget.settings()).labels
        assert np.array_equal(labels.data, core[threshold])
    assert not np.array_equal(core[0.3], core[0.7])  # the two thresholds do differ here


def test_animating_x0_shows_the_predicted_x0_of_each_step(qtbot, widget):
    _scan(widget)
    widget.advanced.animate_x0.value = True
    frames = []
    _run(qtbot, widget, frames)
    animation = widget.viewer.layers["scan x0"]
    assert "scan x_t" not in widget.viewer.layers
    assert np.allclose(np.asarray(animation.data), np.stack([frame.predicted_x0 for frame in frames]))
    assert not np.allclose(frames[0].predicted_x0, frames[0].x_t)  # the two animations differ


def test_a_second_segment_while_one_runs_is_refused_with_a_notification(qtbot, widget, notifications):
    _scan(widget)
    widget.advanced.steps.value = 50
    first = widget.run()
    assert first is not None
    assert widget.run() is None  # the first is still running: nothing queued behind it
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert any("already segmenting" in m for severity, m in notifications() if severity == "error")


def test_the_change_button_points_the_store_elsewhere(qtbot, widget, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from medsegdiff_training.corrections import CorrectionsStore

    other = tmp_path / "other-store"
    CorrectionsStore(other).add(np.ones((20, 20)), np.pad(np.ones((10, 10), np.uint8), 5))
    # the folder dialog is modal; the annotator's choice is what it returns
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(other))
    qtbot.mouseClick(widget.corrections.change_button, Qt.MouseButton.LeftButton)
    assert widget.store.root == other and widget.corrections.store_label.toolTip() == str(other)
    assert widget.count_label.text() == "1"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: "")  # cancelled
    qtbot.mouseClick(widget.corrections.change_button, Qt.MouseButton.LeftButton)
    assert widget.store.root == other


def test_the_finetune_dialog_passes_its_budget_device_and_original_data(qtbot, widget, tmp_path):
    from medsegdiff_training.cli import build_parser
    from medsegdiff_training.finetune_options import finetune_argv, options_from_args

    dialog = widget.open_finetune_dialog()
    dialog.options.steps.value = 7
    dialog.options.minutes.value = 2.5
    dialog.options.device.value = "cpu"
    dialog.options.mix_original.value = True
    dialog.options.original_images.value = str(tmp_path / "images")
    dialog.options.original_masks.value = str(tmp_path / "masks")
    request = dialog.request()
    # what the fine-tune process will run: the CLI parses the command line back to the same request
    parsed = options_from_args(build_parser().parse_args(["finetune", *finetune_argv(request)]))
    assert parsed == request
    assert (parsed.config.steps, parsed.config.minutes, parsed.config.device) == (7, 2.5, "cpu")
    assert parsed.mix_original and parsed.original_images == tmp_path / "images"
    assert parsed.original_masks == tmp_path / "masks" and str(parsed.store) == dialog.store
    # the measured recipe (issue 29): the best held-out weights, corrections also cut per object
    assert parsed.config.keep_best and parsed.object_crops and parsed.config.validate_every == 50
    assert (parsed.config.learning_rate, parsed.config.lr_schedule) == (1e-3, "constant")
    dialog.options.minutes.value = 0  # "no limit"
    dialog.options.mix_original.value = False
    request = dialog.request()
    arguments = finetune_argv(request)
    assert not any(a.startswith(("--minutes", "--mix-original", "--original")) for a in arguments)
    assert options_from_args(build_parser().parse_args(["finetune", *arguments])) == request
    dialog.close()


def test_the_three_ultrasound_samples_and_the_fundus_photograph_open(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-medsegdiff", "ultrasound_all")
    names = [layer.name for layer in viewer.layers]
    assert names == ["ultrasound 106_2", "ultrasound 119_1", "ultrasound 185_11"]
    assert all(layer.data.shape == (300, 300) and layer.data.dtype == np.uint8 for layer in viewer.layers)
    assert all(
        "DDTI" in layer.metadata["citation"] or "Pedraza" in layer.metadata["citation"]
        for layer in viewer.layers
    )
    assert not np.array_equal(viewer.layers[0].data, viewer.layers[1].data)
    viewer.open_sample("napari-medsegdiff", "fundus")
    fundus = viewer.layers["fundus photograph"]
    assert fundus.rgb and fundus.data.shape == (1411, 1411, 3)


def test_the_brain_mri_sample_opens_with_its_citation_and_terms(make_napari_viewer):
    from npe2 import PluginManager

    offered = {
        contribution.key: contribution.display_name
        for plugin, contributions in PluginManager.instance().iter_sample_data()
        if plugin == "napari-medsegdiff"
        for contribution in contributions
    }
    assert "Brain MRI FLAIR" in offered["brain_mri"]  # File > Open Sample lists it
    viewer = make_napari_viewer()
    viewer.open_sample("napari-medsegdiff", "brain_mri")
    (layer,) = viewer.layers
    assert layer.name == "brain MRI FLAIR" and layer.data.shape == (256, 256) and layer.data.dtype == np.uint8
    citation = layer.metadata["citation"]
    assert "Buda" in citation and "non-commercial" in citation
    assert 10 < layer.data.mean() < 200 and layer.data.std() > 10  # a picture, not a blank slice
