"""The MedSegDiff dock widget: what the annotator sees.

Plain choices first (image, how it reads, prompts, model), then **Segment**, a progress bar
with the stage, the outcome in words (with a warning when a whole-image answer is probably
poor), the collapsed *Advanced* section (a magicgui form, :mod:`._sampling_form`) and the
Corrections section (:mod:`._corrections_panel`).

It only gathers choices and shows outcomes: a run is driven by :class:`._segment_job.SegmentJob`
(worker thread, animation, result layers a piece at a time), the worker side is
:mod:`._sampling_glue`, models come from the registry through :mod:`._models`, and
fine-tuning runs in a separate process (:mod:`._finetune_dialog`).

Hand-written Qt stays for the rows that react to the viewer (the image and prompts pickers,
the model picker with its line, the Read-as row with its one-click alternative) and for the
buttons and lines of a run; the settings that are a form are magicgui.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from medsegdiff_training.sampling_defaults import (  # torch-free: the core's recommendation
    RECOMMENDED_ENSEMBLE,
    RECOMMENDED_STEPS,
    SAMPLER_LABELS,
    SamplingSettings,
)

from ._animation import StepAnimation
from ._axes_row import AxesRow
from ._corrections_panel import CorrectionsPanel
from ._layer_axes import LayerAxes, UnsupportedLayerError
from ._messages import user_message
from ._model_picker import ModelPicker
from ._models import (
    device_choices,
    forget_models,
    is_loaded,
    known_device_choices,
    model_channels,
    model_choices,
    model_roles,
    set_device_choices,
)
from ._placement import placement_of
from ._prompt_results import add_prompted_objects, add_propagated_object, pending_prompts_for
from ._prompts_panel import PromptsPanel
from ._result_layers import SegmentationRun, result_layer_steps
from ._run_progress import RunProgress
from ._sampling_form import SamplingForm
from ._sampling_glue import (
    Stage,
    WholeImageResults,
    propagate_in_layer,
    segment_layer,
    segment_prompts_in_layer,
)
from ._scrolling import scroll_content
from ._segment_job import SegmentJob

if TYPE_CHECKING:
    import napari

__all__ = ["RECOMMENDED_ENSEMBLE", "RECOMMENDED_STEPS", "SAMPLERS", "SegmentWidget"]

SAMPLERS = SAMPLER_LABELS  # (label shown, sampler name), in the order shown


def _ask(parent: QWidget, question: str) -> bool:
    answer = QMessageBox.question(parent, "MedSegDiff", question)
    return answer == QMessageBox.StandardButton.Yes


class SegmentWidget(QWidget):
    """Segment an image layer with MedSegDiff and watch the denoising live."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: SegmentJob | None = None
        self.current_run: SegmentationRun | None = None  # the run in progress, or the last one
        self.last_run: SegmentationRun | None = None  # the last run that finished with a result
        # Injectable answers to yes/no questions, so tests need no modal dialog.
        self.confirm: Callable[[str], bool] = lambda question: _ask(self, question)
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._choices_ready = False
        self._checked_devices: list[tuple[str, str | None]] | None = None  # set by a worker
        self._read_choices_when_opening()
        self._refresh_layers()
        self._fitted = False

    # -- the form ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(scroll_content(self, fit_content=True))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.image_box = QComboBox()
        self.image_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.image_box.setMinimumContentsLength(12)
        self.image_box.currentIndexChanged.connect(self._describe_layer)
        self.axes = AxesRow()
        self.axes_box, self.axes_label = self.axes.box, self.axes.label
        self.axes_box.currentIndexChanged.connect(self._describe_layer)
        self.prompts = PromptsPanel(self.viewer, on_propagate=self.propagate)
        self.prompts_box, self.same_label = self.prompts.prompts_box, self.prompts.same_label
        self.prompts.draw_button.clicked.connect(self.draw_boxes)
        self.models = ModelPicker()
        self.model_box = self.models.box
        self.models.changed.connect(self._describe_layer)
        form.addRow("Image", self.image_box)
        form.addRow("Read as", self.axes)
        form.addRow("Prompts", self.prompts)
        form.addRow("Model", self.models)
        layout.addLayout(form)
        self._build_run_area(layout)
        self.advanced = SamplingForm()
        self.advanced_section = QCollapsible(self._advanced_title())
        self.advanced_section.addWidget(self.advanced.native)
        self.advanced.changed.connect(lambda *_: self.advanced_section.setText(self._advanced_title()))
        layout.addWidget(self.advanced_section)
        self.corrections = CorrectionsPanel(
            self.viewer,
            image_layer=self.image_layer,
            model_version=self.model_version,
            on_new_version=self._on_new_version,
            confirm=lambda question: self.confirm(question),
        )
        layout.addWidget(self.corrections)
        layout.addStretch(1)

    def _build_run_area(self, layout: QVBoxLayout) -> None:
        """Segment and Cancel, the progress bar, the status line and the warning line."""
        buttons = QHBoxLayout()
        self.run_button, self.cancel_button = QPushButton("Segment"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = RunProgress()
        layout.addWidget(self.progress)
        self.status = QLabel("Choose an image layer and press Segment.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.warning = QLabel()  # a whole-image answer that is probably poor, in words
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e8a33d;")
        self.warning.setVisible(False)
        layout.addWidget(self.warning)

    def _advanced_title(self) -> str:
        return f"Advanced: {self.advanced.summary()}"

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Fit the view once the dock has taken its room (the canvas is narrower then)."""
        super().showEvent(event)
        if not self._fitted:
            self._fitted = True
            QTimer.singleShot(0, self.viewer.reset_view)

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
        for index, name in enumerate(names):
            self.image_box.setItemData(index, name, Qt.ItemDataRole.ToolTipRole)  # the full name
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

    @staticmethod
    def _stacked(layer: Any) -> bool:
        return (layer.metadata.get("dicom") or {}).get("kind") in ("volume", "frames")

    def layer_axes(self, layer: Any) -> LayerAxes:
        """How the widget reads ``layer`` (the "Read as" choice); UnsupportedLayerError if it cannot."""
        if layer.multiscale:
            raise UnsupportedLayerError(
                f"'{layer.name}' is a multiscale (pyramid) image; MedSegDiff segments single-scale "
                "images. Open the full-resolution image (or a region of it) as its own layer."
            )
        return self.axes.read(np.shape(layer.data), bool(layer.rgb), self._stacked(layer))

    def _describe_layer(self, *_: object) -> None:
        layer = self.image_layer()
        if layer is None:
            self.axes_label.setText("No image layer: open an image or a sample first.")
            self.axes.switch_button.setVisible(False)
            return
        if layer.multiscale:
            self.axes_label.setText(f"'{layer.name}' is a multiscale (pyramid) image: not segmented.")
            return
        model = self.models.whole_image_version()
        channels = model_channels(model) if self._choices_ready else None
        self.axes.describe(np.shape(layer.data), bool(layer.rgb), self._stacked(layer), model, channels)

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

    def ensure_choices(self) -> None:
        """Fill the model picker if it is not filled yet (the constructor does, unless the
        registry could not be read then)."""
        if not self._choices_ready:
            self.models.fill(model_choices(), model_roles())
            self._choices_ready = True
            self.corrections.refresh_count()  # the store's manifest: no torch either

    def _fill_devices(self, devices: list[tuple[str, str | None]] | None) -> None:
        """Offer ``devices`` (unusable ones greyed out); None: every device, not checked yet."""
        self.devices_checked = devices is not None
        set_device_choices(self.advanced.device, devices)

    def refresh_models(self, select: str | None = None) -> None:
        """Re-read the model registry into the picker, optionally choosing ``select``."""
        if not self._choices_ready:
            self.ensure_choices()
        self.models.fill(model_choices(), model_roles(), select or self.models.chosen())

    def model_version(self) -> str:
        """The version a whole-image run uses (and the fine-tune dialog starts from)."""
        self.ensure_choices()
        return self.models.whole_image_version()

    # -- segmenting -------------------------------------------------------------------------
    @property
    def worker(self) -> Any:
        """The running worker, or None: set from Segment until the result layers are in."""
        return None if self.job is None else self.job.worker

    def settings(self) -> SamplingSettings:
        """The sampling settings the Advanced form shows (no torch: the GUI thread builds them)."""
        return self.advanced.settings()

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
        if self.job is not None:
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
        if chosen is None and axes.kind == "volume" and self.advanced.scope.value == "all slices":
            slices = list(range(axes.slices))
        if not chosen:
            data = layer.data  # read in the worker, one slice at a time (it may be a lazy array)

            def whole(segmenter, settings):  # runs in the worker thread
                return (yield from segment_layer(segmenter, data, axes, settings, slices))

            return self._start(
                whole, layer, axes, slices, self.models.whole_image_version(), self._finish_whole
            )
        prompts, last_size = pending_prompts_for(self.viewer, layer, axes, chosen[1], slices[0])
        if not prompts:
            show_error(
                f"MedSegDiff: every prompt in '{chosen[0].name}' is segmented already; draw another "
                "box, or remove the segmentation layer to segment them again."
            )
            return None
        data = layer.data

        def prompted(segmenter, settings):  # runs in the worker thread
            return (
                yield from segment_prompts_in_layer(
                    segmenter, data, axes, settings, slices[0], prompts, last_size
                )
            )

        finish = self._finish_prompts(prompts)
        return self._start(prompted, layer, axes, slices, self.models.box_version(), finish)

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

        return self._start(work, layer, axes, [start], self.models.box_version(), self._finish_propagated)

    def _start(
        self,
        work: Callable[..., Generator[Any, None, Any]],
        layer: Any,
        axes: LayerAxes,
        slices: list[int],
        version: str,
        finish: Callable[[Any], Generator[None, None, str]],
    ) -> Any:
        from napari.utils.notifications import show_error

        try:
            settings = self.settings()
            self.ensure_choices()
        except Exception as error:  # e.g. an unreadable registry.json: say so, raise nothing
            show_error(f"MedSegDiff could not read the model registry: {user_message(error)}")
            return None
        device = str(self.advanced.device.value)
        checked = self.devices_checked

        def load_and_work():  # runs in the worker thread
            import sys

            from ._models import get_segmenter

            if not is_loaded(version, device):
                first = "" if "torch" in sys.modules else " (and PyTorch, the first time)"
                yield Stage(f"Loading the model '{version}'{first}…")
            segmenter = get_segmenter(version, device)
            if not checked:  # torch is loaded by now anyway
                self._checked_devices = device_choices()
            return (yield from work(segmenter, settings))

        placement = placement_of(layer, axes)
        self.current_run = SegmentationRun(layer, axes, placement, version, device, settings, slices)
        animation = StepAnimation(self.viewer, layer, axes, placement, bool(self.advanced.animate_x0.value))
        self.job = SegmentJob(
            load_and_work, animation, self.progress, finish, self._on_end, slices=len(slices)
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.warning.setVisible(False)
        self.status.setText(f"Segmenting '{layer.name}' with '{version}'…")
        self.progress.stage(f"Starting '{version}'…")
        return self.job.start()

    def cancel(self) -> None:
        """Stop the run after the step in progress; it leaves no layer behind."""
        if self.job is not None:
            self.status.setText("Cancelling after this step…")
            self.job.cancel()

    def _current_slice(self, layer: Any, axes: LayerAxes) -> int:
        if axes.kind != "volume":
            return 0
        position = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(position[axes.slice_axis])), 0, axes.slices - 1))

    # -- how a run ends: its result into layers (SegmentJob runs these a piece at a time) -----
    _DONE = "is ready to correct with the label tools; then Export correction."

    def _finish_whole(self, found: WholeImageResults) -> Generator[None, None, str]:
        run = self.current_run
        labels_layer = yield from result_layer_steps(self.viewer, run, found.results)
        self._select(labels_layer)
        self._warn_if_poor(found, run)
        return f"Done: '{labels_layer.name}' {self._DONE}"

    def _finish_prompts(self, prompts: list[Any]) -> Callable[[Any], Generator[None, None, str]]:
        def finish(result: Any) -> Generator[None, None, str]:
            labels_layer, outcome = add_prompted_objects(
                self.viewer, self.current_run, result, prompts, self.same_label.isChecked()
            )
            yield
            self._select(labels_layer)
            return f"Done: '{labels_layer.name}' holds {outcome.describe(len(prompts))}; it {self._DONE}"

        return finish

    def _finish_propagated(self, masks: Any) -> Generator[None, None, str]:
        labels_layer, slices = add_propagated_object(
            self.viewer, self.current_run, masks, self.same_label.isChecked()
        )
        yield
        self._select(labels_layer)
        return f"Done: '{labels_layer.name}' holds the object on {slices} slice(s); it {self._DONE}"

    def _select(self, labels_layer: Any) -> None:
        self.viewer.layers.selection.active = labels_layer
        self.last_run = self.current_run

    def _warn_if_poor(self, found: WholeImageResults, run: SegmentationRun) -> None:
        """Say (a line and a notification) when the whole-image answer is probably poor."""
        from napari.utils.notifications import show_warning

        poor = found.poor()
        if not poor:
            return
        verdict = found.verdicts[poor[0]]
        message = verdict.message(f"'{run.model_version}'")
        if len(found.results) > 1:
            message = f"On {len(poor)} of {len(found.results)} slices: " + message
        self.warning.setText("⚠ " + message)
        self.warning.setVisible(True)
        show_warning(f"MedSegDiff: {message}")

    def _on_end(self, message: str | None, ok: bool) -> None:
        """The job is over: say how, and make the widget ready for the next run."""
        from napari.utils.notifications import show_error

        job, self.job = self.job, None
        if self._checked_devices is not None and not self.devices_checked:
            self._fill_devices(self._checked_devices)  # grey out what this machine lacks
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if ok:
            self.status.setText(message or "Done.")
        elif job is not None and job.error is not None:
            self.status.setText("Failed: nothing was added.")
            show_error(f"MedSegDiff: {user_message(job.error)}")
        else:
            self.status.setText("Cancelled: nothing was added.")

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
        """Fine-tuning made ``version``: list it in the picker, and choose it if asked to."""
        forget_models()
        self.refresh_models(select=version if switch else None)
