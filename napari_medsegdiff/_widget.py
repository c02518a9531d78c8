"""The MedSegDiff dock widget: what the annotator sees.

It only gathers choices and shows results; sampling runs in a napari worker thread
(:mod:`._sampling_glue` turns the sampler's steps into frames), models come from the
registry through :mod:`._models`, exports go through :mod:`._export`, and fine-tuning
runs in a separate process (:mod:`._finetune_dialog`, also reached from the menu
through :mod:`._menu_commands`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medsegdiff_training.sampling_defaults import (  # torch-free: the core's recommendation
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    RECOMMENDED_ENSEMBLE,
    RECOMMENDED_STEPS,
    SAMPLER_LABELS,
    SamplingSettings,
)

from ._animation import StepAnimation
from ._corrections_panel import CorrectionsPanel
from ._layer_axes import INTERPRETATIONS, LayerAxes, UnsupportedLayerError, interpret
from ._messages import user_message
from ._models import (
    UNTRAINED,
    device_choices,
    fill_device_box,
    forget_models,
    known_device_choices,
    model_choices,
    read_model_choices,
)
from ._placement import placement_of
from ._prompt_results import add_prompted_objects, add_propagated_object, pending_prompts_for
from ._prompts_panel import PromptsPanel
from ._result_layers import SegmentationRun, add_result_layers
from ._sampling_glue import Frame, propagate_in_layer, segment_layer, segment_prompts_in_layer

if TYPE_CHECKING:
    import napari

SAMPLERS = SAMPLER_LABELS  # (label shown, sampler name), in the order shown


def _ask(parent: QWidget, question: str) -> bool:
    answer = QMessageBox.question(parent, "MedSegDiff", question)
    return answer == QMessageBox.StandardButton.Yes


class SegmentWidget(QWidget):
    """Segment an image layer with MedSegDiff and watch the denoising live."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.current_run: SegmentationRun | None = None  # the run in progress, or the last one
        self.last_run: SegmentationRun | None = None  # the last run that finished with a result
        # Injectable answers to yes/no questions, so tests need no modal dialog.
        self.confirm: Callable[[str], bool] = lambda question: _ask(self, question)
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._choices_ready = False
        self._checked_devices: list[tuple[str, str | None]] | None = None  # set by a worker
        self._read_choices_when_opening()

    # -- the form ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.image_box = QComboBox()
        self.image_box.currentIndexChanged.connect(self._describe_layer)
        self.axes_box = QComboBox()
        self.axes_box.addItems(INTERPRETATIONS)
        self.axes_box.currentIndexChanged.connect(self._describe_layer)
        self.axes_label = QLabel()
        self.axes_label.setWordWrap(True)
        self.model_box = QComboBox()
        self.model_box.addItem("reading the model registry…", None)
        self.device_box = QComboBox()
        self.sampler_box = QComboBox()
        for label, name in SAMPLERS:
            self.sampler_box.addItem(label, name)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.sampler_box.currentIndexChanged.connect(
            lambda: self.steps.setValue(RECOMMENDED_STEPS[self.sampler_box.currentData()])
        )
        self.sampler_box.setCurrentIndex(self.sampler_box.findData(DEFAULT_SAMPLER))
        self.steps.setValue(RECOMMENDED_STEPS[DEFAULT_SAMPLER])
        self.ensemble = QSpinBox()
        self.ensemble.setRange(1, 32)
        self.ensemble.setValue(RECOMMENDED_ENSEMBLE)
        self.ensemble.setToolTip(
            "Samples averaged into the result (one batch); more than one also adds an uncertainty layer."
        )
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(DEFAULT_SEED)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.01, 0.99)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setToolTip("Foreground threshold of binary models; K-class models take the argmax.")
        self.scope_box = QComboBox()
        self.scope_box.addItems(["current slice", "all slices"])
        self.show_x0 = QCheckBox("animate the predicted x₀ instead of x_t")
        self.prompts = PromptsPanel(self.viewer, on_propagate=self.propagate)
        self.prompts_box, self.same_label = self.prompts.prompts_box, self.prompts.same_label
        self.prompts.draw_button.clicked.connect(self.draw_boxes)
        form.addRow("Image layer", self.image_box)
        form.addRow("Read as", self.axes_box)
        form.addRow("", self.axes_label)
        form.addRow("Prompts", self.prompts)
        form.addRow("Model", self.model_box)
        form.addRow("Device", self.device_box)
        form.addRow("Sampler", self.sampler_box)
        form.addRow("Steps", self.steps)
        form.addRow("Ensemble", self.ensemble)
        form.addRow("Seed", self.seed)
        form.addRow("Threshold", self.threshold)
        form.addRow("Volumes", self.scope_box)
        form.addRow(self.show_x0)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.run_button, self.cancel_button = QPushButton("Segment"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.status = QLabel("Choose an image layer and press Segment.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.corrections = CorrectionsPanel(
            self.viewer,
            image_layer=self.image_layer,
            model_version=self.model_version,
            on_new_version=self._on_new_version,
            confirm=lambda question: self.confirm(question),
        )
        layout.addWidget(self.corrections)
        layout.addStretch(1)

    # -- layers, models, store ------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, *_: object) -> None:
        current = self.image_box.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.image_box.blockSignals(True)
        self.image_box.clear()
        self.image_box.addItems(names)
        if current in names:
            self.image_box.setCurrentText(current)
        self.image_box.blockSignals(False)
        self._describe_layer()
        self.prompts.refresh()

    def draw_boxes(self) -> Any | None:
        """Select (or add) the Shapes layer ``<image> prompts`` in rectangle mode and pick it."""
        from napari.utils.notifications import show_error

        layer = self.image_layer()
        try:
            if layer is None:
                raise UnsupportedLayerError("there is no image layer to draw boxes on; open an image first.")
            shapes = self.prompts.draw_boxes(layer, self.layer_axes(layer))
        except UnsupportedLayerError as error:
            show_error(f"MedSegDiff: {error}")
            return None
        self.status.setText(f"Drag boxes around the objects in '{shapes.name}', then press Segment.")
        return shapes

    def image_layer(self) -> Any | None:
        name = self.image_box.currentText()
        return next((layer for layer in self._image_layers() if layer.name == name), None)

    def layer_axes(self, layer: Any) -> LayerAxes:
        """How the widget reads ``layer`` (the "Read as" choice); UnsupportedLayerError if it cannot."""
        if layer.multiscale:
            raise UnsupportedLayerError(
                f"'{layer.name}' is a multiscale (pyramid) image; MedSegDiff segments single-scale "
                "images. Open the full-resolution image (or a region of it) as its own layer."
            )
        stacked = (layer.metadata.get("dicom") or {}).get("kind") in ("volume", "frames")
        return interpret(np.shape(layer.data), bool(layer.rgb), self.axes_box.currentText(), stacked)

    def _describe_layer(self, *_: object) -> None:
        layer = self.image_layer()
        if layer is None:
            self.axes_label.setText("No image layer: open an image or a sample first.")
            return
        try:
            self.axes_label.setText(self.layer_axes(layer).describe())
        except UnsupportedLayerError as error:
            self.axes_label.setText(str(error))

    def _read_choices_when_opening(self) -> None:
        """Fill the model and device pickers without importing torch.

        The registry's versions come from its JSON files. The devices are all offered at
        first; which of them this machine lacks is known once torch is loaded (by the first
        Segment, in its worker thread), and they are greyed out then (at once when torch is
        loaded already). So the dock opens at once and the GUI never waits for torch.
        """
        from napari.utils.notifications import show_error, show_warning

        from medsegdiff_training.registry import ModelRegistry

        self._fill_devices(known_device_choices())
        try:
            self.ensure_choices()
            fallback = ModelRegistry().selection_warning()  # a lost selection is said, not hidden
        except Exception as error:  # a broken registry must not break the viewer
            self.model_box.setItemText(0, "no model could be listed")
            show_error(f"MedSegDiff could not read the model registry: {user_message(error)}")
            return
        if fallback is not None:
            show_warning(f"MedSegDiff: {fallback}")

    def _fill_choices(self, choices: tuple[list[tuple[str, str]], str]) -> None:
        models, selected = choices
        self._fill_models(models, selected, self.model_box.currentData())
        self._choices_ready = True
        self.corrections.refresh_count()  # the store's manifest: no torch either

    def ensure_choices(self) -> None:
        """Fill the model picker if it is not filled yet (the constructor does, unless the
        registry could not be read then)."""
        if not self._choices_ready:
            self._fill_choices(read_model_choices())

    def _fill_devices(self, devices: list[tuple[str, str | None]] | None) -> None:
        """Offer ``devices`` (unusable ones greyed out); None: every device, not checked yet."""
        self.devices_checked = devices is not None
        fill_device_box(self.device_box, devices)

    def _fill_models(self, models: list[tuple[str, str]], selected: str, current: Any) -> None:
        self.model_box.clear()
        for label, name in models:
            self.model_box.addItem(label, name)
        index = self.model_box.findData(current) if current else -1
        if index < 0:
            index = self.model_box.findData(selected)
        self.model_box.setCurrentIndex(max(index, 0))

    def refresh_models(self, select: str | None = None) -> None:
        """Re-read the model registry into the picker, optionally selecting ``select``."""
        from medsegdiff_training.registry import ModelRegistry

        if not self._choices_ready:
            self.ensure_choices()
        self._fill_models(model_choices(), ModelRegistry().selected(), select or self.model_box.currentData())

    def model_version(self) -> str:
        self.ensure_choices()
        return str(self.model_box.currentData() or UNTRAINED)

    # -- segmenting -------------------------------------------------------------------------
    def settings(self) -> SamplingSettings:
        """The sampling settings the form shows (no torch: the GUI thread builds them)."""
        return SamplingSettings(
            sampler=str(self.sampler_box.currentData()),
            steps=self.steps.value(),
            ensemble=self.ensemble.value(),
            seed=self.seed.value(),
            threshold=self.threshold.value(),
        )

    def _checked_layer(self) -> tuple[Any, LayerAxes] | None:
        """The chosen image layer and how it reads, or None after saying why not."""
        from napari.utils.notifications import show_error

        layer = self.image_layer()
        if layer is None:
            show_error(
                "MedSegDiff: there is no image layer to segment. Open an image (or File > Open Sample) first."
            )
            return None
        try:
            axes = self.layer_axes(layer)
        except UnsupportedLayerError as error:
            show_error(f"MedSegDiff: {error}")
            return None
        if self.worker is not None:
            show_error("MedSegDiff is already segmenting; wait for it or press Cancel.")
            return None
        return layer, axes

    def run(self) -> Any:
        """Segment the chosen layer, or its prompted objects; returns the worker (None when refused)."""
        from napari.utils.notifications import show_error

        checked = self._checked_layer()
        if checked is None:
            return None
        layer, axes = checked
        slices = [self._current_slice(layer, axes)]
        chosen = self.prompts.chosen(layer, axes, slices[0])
        if chosen is False:
            return None
        if chosen is None and axes.kind == "volume" and self.scope_box.currentText() == "all slices":
            slices = list(range(axes.slices))
        prompts, last_size = [], None
        if chosen:
            prompts, last_size = pending_prompts_for(self.viewer, layer, axes, chosen[1], slices[0])
            if not prompts:
                show_error(
                    f"MedSegDiff: every prompt in '{chosen[0].name}' is segmented already; draw another "
                    "box, or remove the segmentation layer to segment them again."
                )
                return None
        data = layer.data  # read in the worker, one slice at a time (it may be a lazy array)

        def work(segmenter, settings):  # runs in the worker thread
            if prompts:
                return (
                    yield from segment_prompts_in_layer(
                        segmenter, data, axes, settings, slices[0], prompts, last_size
                    )
                )
            return (yield from segment_layer(segmenter, data, axes, settings, slices))

        self._mode, self._prompts = ("prompts" if prompts else "whole"), prompts
        return self._start(work, layer, axes, slices, steps_per_slice=True)

    def propagate(self) -> Any:
        """Follow the first prompt on this volume slice through the volume; returns the worker."""
        from napari.utils.notifications import show_error

        checked = self._checked_layer()
        if checked is None:
            return None
        layer, axes = checked
        if axes.kind != "volume":
            show_error(
                f"MedSegDiff: Propagate follows a box through a volume's slices; '{layer.name}' is 2D."
            )
            return None
        start = self._current_slice(layer, axes)
        chosen = self.prompts.chosen(layer, axes, start)
        if not chosen:
            if chosen is None:
                show_error(f"MedSegDiff: draw a box around the object on slice {start} first (Draw boxes).")
            return None
        data, prompt = layer.data, chosen[1][0]

        def work(segmenter, settings):  # runs in the worker thread
            return (yield from propagate_in_layer(segmenter, data, axes, settings, start, prompt))

        self._mode, self._prompts = "propagate", [prompt]
        return self._start(work, layer, axes, [start], steps_per_slice=False)

    def _start(self, work: Any, layer: Any, axes: LayerAxes, slices: list[int], steps_per_slice: bool) -> Any:
        from napari.qt.threading import create_worker
        from napari.utils import progress
        from napari.utils.notifications import show_error

        try:
            settings, version = self.settings(), self.model_version()
        except Exception as error:  # e.g. an unreadable registry.json: say so, raise nothing
            show_error(f"MedSegDiff could not read the model registry: {user_message(error)}")
            return None
        device = str(self.device_box.currentData())

        def load_and_work():
            from ._models import get_segmenter

            if not self.devices_checked:  # torch is being loaded here anyway
                self._checked_devices = device_choices()
            return (yield from work(get_segmenter(version, device), settings))

        placement = placement_of(layer, axes)
        self.current_run = SegmentationRun(layer, axes, placement, version, device, settings, slices)
        self._animation = StepAnimation(self.viewer, layer, axes, placement, self.show_x0.isChecked())
        self._stopping = False
        self.worker = create_worker(load_and_work, _ignore_errors=True)  # errors go to _on_error
        total = settings.resolved_steps() * len(slices) if steps_per_slice else axes.slices
        self._progress = progress(total=total, desc="MedSegDiff sampling")
        self.worker.yielded.connect(self._on_frame)
        self.worker.returned.connect(self._on_results)
        self.worker.errored.connect(self._on_error)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Loading '{version}' and sampling…")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the run after the step in progress; it leaves no layer behind."""
        if self.worker is not None:
            self.status.setText("Cancelling after this step…")
            self._stopping = True  # frames already queued for the GUI are dropped
            self.worker.quit()

    def _current_slice(self, layer: Any, axes: LayerAxes) -> int:
        if axes.kind != "volume":
            return 0
        position = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(position[axes.slice_axis])), 0, axes.slices - 1))

    def _on_frame(self, frame: Frame | int) -> None:
        if self._stopping:
            return
        if isinstance(frame, int):  # propagation: a slice is done
            self.status.setText(f"Propagating: slice {frame} segmented")
            self._progress.update(1)
            return
        self._animation.show(frame)
        where = f"slice {frame.slice_index}: " if self.current_run.axes.kind == "volume" else ""
        self.status.setText(f"{where}step {frame.step + 1}/{frame.total_steps} (t = {frame.t})")
        # Last: napari's progress bar processes pending events, so the run may end in this call.
        self._progress.update(1)

    def _on_results(self, results: Any) -> None:
        done = "is ready to correct with the label tools; then Export correction."
        if self._mode == "propagate":
            labels_layer, slices = add_propagated_object(
                self.viewer, self.current_run, results, self.same_label.isChecked()
            )
            done = f"holds the object on {slices} slice(s); it " + done
        elif self._mode == "prompts":
            labels_layer, added = add_prompted_objects(
                self.viewer, self.current_run, results, self._prompts, self.same_label.isChecked()
            )
            done = f"holds {added} new object(s) of {len(self._prompts)} prompt(s); it " + done
        else:
            labels_layer = add_result_layers(self.viewer, self.current_run, results)
        self.viewer.layers.selection.active = labels_layer
        self.last_run = self.current_run
        self.status.setText(f"Done: '{labels_layer.name}' {done}")

    def _on_error(self, error: BaseException) -> None:
        from napari.utils.notifications import show_error

        self._stopping = True  # like a cancel: the half-made animation goes
        self.status.setText("Failed: nothing was added.")
        show_error(f"MedSegDiff: {user_message(error)}")

    def _on_aborted(self) -> None:
        self._stopping = True
        self.status.setText("Cancelled: nothing was added.")

    def _on_finished(self) -> None:
        if self._checked_devices is not None and not self.devices_checked:
            self._fill_devices(self._checked_devices)  # grey out what this machine lacks
        if self._stopping:  # cancelled or failed: no Labels layer, and no half-made animation
            self._animation.discard()
        self._progress.close()
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # -- corrections and fine-tuning (the Corrections panel does the work) ---------------------
    @property
    def store(self) -> Any:
        """The corrections store the Corrections panel exports to."""
        return self.corrections.store

    @property
    def count_label(self) -> QLabel:
        return self.corrections.count_label

    def export_correction(self) -> Any | None:
        """Export the image and its corrected Labels layer; returns the entry (None if refused)."""
        return self.corrections.export_correction()

    def open_finetune_dialog(self) -> Any:
        return self.corrections.open_finetune_dialog()

    def _on_new_version(self, version: str, switch: bool) -> None:
        """Fine-tuning made ``version``: list it in the picker, and select it if asked to."""
        forget_models()
        self.refresh_models(select=version if switch else None)
