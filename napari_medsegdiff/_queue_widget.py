"""The "MedSegDiff queue" dock widget: annotate a whole dataset, image after image.

A dock widget of its own rather than a section of the segmentation widget: working
through a folder is a different task from segmenting the image in front of you, it needs
its own keys and layers, and the segmentation widget stays as short as it is. Both write
to the same corrections store by default.

Open a folder (or files, or the slices of an opened volume); every image is already
segmented when you reach it (a background worker keeps the next ones ready), you correct
the Labels layer, and **Accept and next** exports it to the corrections store with the
queue's provenance. The loop itself -- the queue, accept/skip, "fine-tune every N", keep
or switch -- is the core's :class:`medsegdiff_training.annotation_session.AnnotationSession`,
the one ``medsegdiff simulate-annotation`` runs; this widget is its screen (it shows what
happens and re-segments with a new model) and gives it a runner that fine-tunes in a
separate process. The queue's state is kept beside the store, so reopening the same folder
resumes where you stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from medsegdiff_training.annotation_session import SESSION_FINETUNE  # no torch

from ._animation import ANIMATION_KEY
from ._export import RUN_KEY, corrections_store, export_correction
from ._finetune_process import FinetuneProcess, ProcessRunner
from ._models import read_model_choices
from ._queue_parts import RereadingComboBox, row
from ._queue_presegment import Presegmentation, Presegmenter
from ._run_progress import finetune_step
from ._scrolling import scroll_content
from ._trend_plot import TrendPlot

if TYPE_CHECKING:
    import napari

    from medsegdiff_training.annotation_queue import AnnotationQueue
    from medsegdiff_training.annotation_session import AnnotationSession, FinetuneRecord
    from medsegdiff_training.finetune_events import FinetuneProgress
    from medsegdiff_training.finetune_options import FinetuneOptions

KEYS = {"accept": "Shift-Enter", "skip": "Shift-Right", "previous": "Shift-Left"}
ORDERS = (("file order", "file"), ("most uncertain first", "uncertain"))
AHEAD = 3  # the current image and the next two are kept segmented in file order


class QueueWidget(QWidget):
    """Work through a folder of images: pre-segmented, corrected, accepted, fine-tuned on."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: AnnotationSession | None = None
        self.image_layer: Any = None
        self.labels_layer: Any = None
        self.runner = ProcessRunner(self)  # the session's fine-tunes, each in its own process
        self._volumes: dict[str, Any] = {}  # volume name -> its layer, for "name[z]" items
        self._shown_at = time.perf_counter()
        self._store_root: Path | None = None
        self.presegmenter = Presegmenter(self._read_item, self)
        self.presegmenter.ready.connect(self._on_presegmented)
        self.presegmenter.failed.connect(self._on_presegment_failed)
        self._build()
        self._bind_keys()
        self.destroyed.connect(self._closing(self.viewer, self.presegmenter))
        self.viewer.layers.events.inserted.connect(self._refresh_volumes)
        self.viewer.layers.events.removed.connect(self._refresh_volumes)
        self._refresh_volumes()
        self._read_models()

    # -- the form ----------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(scroll_content(self))
        layout.addWidget(self._build_source())
        self.where_label = QLabel("Open a folder to start.")
        self.where_label.setWordWrap(True)
        self.counts_label = QLabel()
        layout.addWidget(self.where_label)
        layout.addWidget(self.counts_label)
        layout.addLayout(self._build_navigation())
        layout.addWidget(self._build_tuning())
        layout.addStretch(1)
        self._update_labels()

    def _build_source(self) -> QGroupBox:
        """Images (folder, files, volume), order, model and store."""
        from medsegdiff_training.paths import default_corrections_root  # no torch

        source = QGroupBox("Images")
        form = QFormLayout(source)
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.setToolTip("Queue every image of a folder (PNG, JPEG, GIF, BMP, TIFF, NIfTI)")
        self.folder_button.clicked.connect(self._choose_folder)
        self.files_button = QPushButton("Open files…")
        self.files_button.clicked.connect(self._choose_files)
        form.addRow(row(self.folder_button, self.files_button))
        self.volume_box = QComboBox()
        self.volume_button = QPushButton("Queue its slices")
        self.volume_button.clicked.connect(lambda: self.open_volume(self.volume_box.currentText()))
        self.volume_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        form.addRow("Volume", self.volume_box)  # rows of their own: long names are never cut short
        form.addRow("", row(self.volume_button, stretch_after=True))
        self.order_box = QComboBox()
        for label, name in ORDERS:
            self.order_box.addItem(label, name)
        self.order_box.setToolTip(
            "Most uncertain first: the images whose ensemble members disagree most about the object, "
            "per unit of object area, come first (scores appear as the images are pre-segmented)."
        )
        self.order_box.currentIndexChanged.connect(self._order_changed)
        form.addRow("Order", self.order_box)
        self.model_box = RereadingComboBox(self._reread_models)
        self.model_box.addItem("reading the model registry…", None)
        self.model_box.currentIndexChanged.connect(self._model_chosen)
        form.addRow("Model", self.model_box)
        self.store_label = QLabel(str(default_corrections_root()))
        self.store_label.setWordWrap(True)
        store_button = QPushButton("Change…")
        store_button.clicked.connect(self._choose_store)
        form.addRow("Store", self.store_label)
        form.addRow("", row(store_button, stretch_after=True))
        return source

    def _build_navigation(self) -> QHBoxLayout:
        """Previous, Skip, Accept and next."""
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip(f"Back to the image finished before this one ({KEYS['previous']})")
        self.previous_button.clicked.connect(self.previous)
        self.skip_button = QPushButton("Skip")
        self.skip_button.setToolTip(f"Leave this image without a correction ({KEYS['skip']})")
        self.skip_button.clicked.connect(self.skip)
        self.accept_button = QPushButton("Accept and next ▶")
        self.accept_button.setToolTip(
            f"Export the Labels layer as it is to the corrections store and go on ({KEYS['accept']}); "
            "an empty layer is accepted as a true negative"
        )
        self.accept_button.clicked.connect(self.accept)
        return row(self.previous_button, self.skip_button, self.accept_button)

    def _build_tuning(self) -> QGroupBox:
        """The fine-tune cadence ("fine-tune every N accepted, M minutes each") and its trend."""
        tuning = QGroupBox("Fine-tuning that keeps up")
        tuning_form = QFormLayout(tuning)
        self.finetune_check = QCheckBox("fine-tune in the background")
        self.finetune_check.setToolTip(
            "In the background, fine-tune the queue's model on the store every N accepted images; "
            "switch to the new version when its held-out Dice beats its parent's"
        )
        self.finetune_every = QSpinBox()
        self.finetune_every.setRange(1, 10_000)
        self.finetune_every.setValue(10)
        self.finetune_every.setSuffix(" accepted")
        self.finetune_minutes = QDoubleSpinBox()
        self.finetune_minutes.setRange(0.1, 24 * 60)
        self.finetune_minutes.setValue(SESSION_FINETUNE.config.minutes or 3.0)
        self.finetune_minutes.setSuffix(" min each")
        self.finetune_check.toggled.connect(self._cadence_changed)
        self.finetune_every.valueChanged.connect(self._cadence_changed)
        self.finetune_minutes.valueChanged.connect(self._cadence_changed)
        tuning_form.addRow(self.finetune_check)  # a row each: no spin box squeezed into a cut number
        tuning_form.addRow("every", self.finetune_every)
        tuning_form.addRow("for", self.finetune_minutes)
        self.finetune_label = QLabel("")
        self.finetune_label.setWordWrap(True)
        tuning_form.addRow(self.finetune_label)
        self.plot = TrendPlot()
        tuning_form.addRow(self.plot)
        return tuning

    def _bind_keys(self) -> None:
        for action, key in KEYS.items():
            self.viewer.bind_key(key, self._key_handler(action), overwrite=True)

    def _key_handler(self, action: str):
        def handle(_viewer: object) -> None:
            getattr(self, action)()

        return handle

    @staticmethod
    def _closing(viewer: Any, presegmenter: Presegmenter):
        """A slot for ``destroyed``: unbind the keys and stop the background work (no self then)."""

        def close(*_: object) -> None:
            for key in KEYS.values():
                try:
                    viewer.bind_key(key, None)
                except (KeyError, RuntimeError, AttributeError):  # the viewer went first
                    pass
            presegmenter.stop()

        return close

    # -- models --------------------------------------------------------------------------------
    def _read_models(self) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(read_model_choices)  # the first reading, off the GUI thread
        worker.returned.connect(self._fill_models)
        worker.start()

    def _reread_models(self) -> None:
        """The registry's versions again (a fine-tune elsewhere may have added one); keeps the choice."""
        if self.model_box.currentData() is None:
            return  # the first reading is still under way
        choices, _ = read_model_choices()
        current = self.model_box.currentData()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for label, name in choices:
            self.model_box.addItem(label, name)
        if self.model_box.findData(current) < 0:  # deleted meanwhile: keep showing what is in use
            self.model_box.addItem(current, current)
        self.model_box.setCurrentIndex(self.model_box.findData(current))
        self.model_box.blockSignals(False)

    def _fill_models(self, found: tuple[list[tuple[str, str]], str]) -> None:
        choices, selected = found
        current = self.model_box.currentData() or selected
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for label, name in choices:
            self.model_box.addItem(label, name)
        index = self.model_box.findData(current)
        self.model_box.setCurrentIndex(max(index, 0))
        self.model_box.blockSignals(False)
        self._use_model(self.model_box.currentData(), "chosen")

    @property
    def model_version(self) -> str | None:
        return self.model_box.currentData()

    def _model_chosen(self) -> None:
        if self.model_version is not None:
            self._use_model(self.model_version, "chosen in the queue widget")

    def _use_model(self, version: str | None, reason: str) -> None:
        if not version:
            return
        self.presegmenter.configure(version, "auto")
        if self.session is not None:
            self.session.use_model(version, reason)
        self._request_ahead()

    def model_switched(self, version: str, reason: str) -> None:
        """Pre-segment with ``version`` from now on (the session's switch to a fine-tuned
        version); the image on screen is left as it is."""
        self.model_box.blockSignals(True)
        if self.model_box.findData(version) < 0:
            self.model_box.addItem(version, version)
        self.model_box.setCurrentIndex(self.model_box.findData(version))
        self.model_box.blockSignals(False)
        self._use_model(version, reason)

    @property
    def queue(self) -> AnnotationQueue | None:
        """The open queue (the session's), or None before one is opened."""
        return None if self.session is None else self.session.queue

    @property
    def finetune(self) -> FinetuneProcess | None:
        """The session's latest fine-tune process (None before the first)."""
        return self.runner.process

    # -- opening a queue -----------------------------------------------------------------------
    @property
    def store(self):
        return corrections_store(self._store_root)

    def _choose_store(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Corrections store", self.store_label.text())
        if folder:
            self._store_root = Path(folder)
            self.store_label.setText(folder)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of images to annotate")
        if folder:
            self.open_folder(folder)

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Images to annotate")
        if files:
            self.open_files(files)

    def open_folder(self, folder: str | Path) -> None:
        """Queue the images of ``folder`` (resuming it if it was opened before)."""
        from medsegdiff_training.annotation_queue import AnnotationQueue

        self._open(lambda root, order: AnnotationQueue.for_folder(folder, root, order))

    def open_files(self, files: list[str]) -> None:
        """Queue a list of image files."""
        from medsegdiff_training.annotation_queue import AnnotationQueue

        self._open(lambda root, order: AnnotationQueue.for_files(files, root, order))

    def open_volume(self, name: str) -> None:
        """Queue the slices (axis 0) of the opened volume layer ``name``."""
        from medsegdiff_training.annotation_queue import AnnotationQueue

        if name not in self._volumes:
            self._notify_error(f"There is no volume layer '{name}' to queue: open a 3D image first.")
            return
        slices = int(np.shape(self._volumes[name].data)[0])
        self._open(lambda root, order: AnnotationQueue.for_volume(name, slices, root, order))

    def _open(self, make) -> None:
        from napari.utils.notifications import show_warning

        from medsegdiff_training.annotation_session import AnnotationSession
        from medsegdiff_training.errors import MedSegDiffError

        store = self.store
        try:
            queue = make(store.root, self.order_box.currentData())
        except MedSegDiffError as error:
            self._notify_error(str(error))
            return
        self.session = AnnotationSession(queue, store, self.runner, self)
        if queue.vanished:  # files deleted or renamed since: said, and skipped
            show_warning(f"MedSegDiff queue: {queue.vanished_message()}")
        self._cadence_changed()
        if self.model_version:
            self.session.use_model(self.model_version, "queue opened")
        for item, state in queue.states.items():
            if state.status == "accepted":
                self.plot.add_changed(len(self.plot.changed) + 1, self._accepted_fraction(item))
        self._show(queue.current)

    # -- showing an image -------------------------------------------------------------------------
    def _read_item(self, item: str) -> np.ndarray:
        """An item's image: a file read by the core, or a slice of an opened volume."""
        name, _, index = item.rpartition("[")
        if item.endswith("]") and name in self._volumes:
            return np.asarray(self._volumes[name].data[int(index[:-1])])
        from medsegdiff_training.data.io import read_array

        return read_array(item)

    def _show(self, item: str | None) -> None:
        if item is None:
            self._update_labels()
            self.where_label.setText("Every image of the queue is done. 🎉")
            return
        try:
            image = self._read_item(item)
        except Exception as error:  # noqa: BLE001 - a damaged file costs itself only: skip it
            self._notify_error(f"Cannot show {item}: {error}. Skipping it.")
            self._show(self.queue.skip(item) if self.queue is not None else None)
            return
        if image.ndim != 2 and not (image.ndim == 3 and image.shape[-1] in (3, 4)):
            self._notify_error(
                f"{Path(item).name} is not a 2D image (shape {image.shape}): open it in napari and queue "
                "its slices instead. Skipping it."
            )
            self._show(self.queue.skip(item) if self.queue is not None else None)
            return
        self._put_layers(item, image)
        self._shown_at = time.perf_counter()
        ready = self.presegmenter.result(item)
        entry = self._accepted_entry(item)
        if entry is not None:  # back to an accepted image: show what was accepted
            _, labels, prediction = self.store.read(entry)
            self._set_labels(labels, prediction, entry.manifest.get("model_version"), None)
        elif ready is not None:
            self._apply(ready)
        self._update_labels()
        self._request_ahead()

    def _put_layers(self, item: str, image: np.ndarray) -> None:
        title = Path(item).name if not item.endswith("]") else item
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        spatial = image.shape[:2]
        layers = self.viewer.layers
        if self.image_layer is None or self.image_layer not in layers or self.image_layer.rgb != rgb:
            if self.image_layer is not None and self.image_layer in layers:
                layers.remove(self.image_layer)
            self.image_layer = self.viewer.add_image(image, name="queue image", rgb=rgb)
        else:
            self.image_layer.data = image
            self.image_layer.reset_contrast_limits()
        self.image_layer.metadata["queue_item"] = item
        zeros = np.zeros(spatial, dtype=np.int32)
        if (
            self.labels_layer is None
            or self.labels_layer not in layers
            or self.labels_layer.data.shape != spatial
        ):
            if self.labels_layer is not None and self.labels_layer in layers:
                layers.remove(self.labels_layer)
            self.labels_layer = self.viewer.add_labels(zeros, name="queue segmentation")
        else:
            self.labels_layer.data = zeros
        self.labels_layer.metadata[RUN_KEY] = {"image_layer": self.image_layer.name, "queue_item": item}
        self.viewer.layers.selection.active = self.labels_layer
        self.viewer.reset_view()
        self.viewer.status = f"MedSegDiff queue: {title}"

    def _set_labels(self, labels, prediction, model_version, settings) -> None:
        self.labels_layer.data = np.asarray(labels).astype(np.int32)
        record = self.labels_layer.metadata.get(RUN_KEY, {})
        record.update(
            prediction=None if prediction is None else np.asarray(prediction).copy(),
            model_version=model_version,
            sampler_settings=settings,
        )
        self.labels_layer.metadata[RUN_KEY] = record

    def _apply(self, ready: Presegmentation) -> None:
        result = ready.result
        self._set_labels(result.labels, result.labels, ready.model_version, result.settings)

    def _on_presegmented(self, item: str) -> None:
        ready = self.presegmenter.results[item]
        if self.queue is None or item not in self.queue.states:
            return
        self.queue.record_score(item, ready.score, ready.model_version)
        on_screen = self.queue.current == item and self.labels_layer is not None
        if on_screen and not np.asarray(self.labels_layer.data).any() and self._accepted_entry(item) is None:
            self._apply(ready)  # only while nothing is painted: a correction is never overwritten
        self._update_labels()

    def _on_presegment_failed(self, item: str, message: str) -> None:
        self._notify_error(f"MedSegDiff could not pre-segment {Path(item).name}: {message}")

    def _request_ahead(self) -> None:
        if self.queue is None:
            return
        if self.queue.order == "uncertain":  # the order needs every pending image's score
            wanted = self.queue.upcoming(len(self.queue.items))
        else:
            wanted = self.queue.upcoming(AHEAD)
        self.presegmenter.request(wanted)

    # -- what the annotator does --------------------------------------------------------------
    def accept(self) -> None:
        """Export the Labels layer with the queue's provenance, then show the next image."""
        from medsegdiff_training.errors import MedSegDiffError

        if self.session is None or self.session.queue.current is None or self.labels_layer is None:
            self._notify_error("There is no queue image to accept: open a folder first.")
            return
        item = self.session.queue.current
        record = self.labels_layer.metadata.get(RUN_KEY, {})
        labels, prediction = np.asarray(self.labels_layer.data), record.get("prediction")
        changed = None if prediction is None else float(np.mean(np.asarray(prediction) != labels))
        store, image_layer, labels_layer = self.store, self.image_layer, self.labels_layer
        try:
            _, following = self.session.accept(
                item,
                lambda provenance: export_correction(
                    store, image_layer, labels_layer, allow_empty=True, extra={"queue": provenance}
                ),
                seconds=time.perf_counter() - self._shown_at,
                fraction_changed=changed,
                model_version=record.get("model_version"),
            )
        except (MedSegDiffError, OSError) as error:
            self._notify_error(f"MedSegDiff could not accept {Path(item).name}: {error}")
            return  # nothing lost: the image stays on screen with its labels
        if changed is not None:
            self.plot.add_changed(self.session.queue.counts()["accepted"], changed)
        self._show(following)

    def skip(self) -> None:
        """Leave the current image without a correction and show the next one."""
        if self.session is not None and self.session.queue.current is not None:
            self._show(self.session.skip(self.session.queue.current))

    def previous(self) -> None:
        """Show the image finished before this one (what was accepted, if it was)."""
        if self.queue is None:
            return
        item = self.queue.previous()
        if item is None:
            self.viewer.status = "MedSegDiff queue: no earlier image"
            return
        self._show(item)

    def _order_changed(self) -> None:
        if self.queue is not None:
            self.queue.set_order(self.order_box.currentData())
            self._request_ahead()
            self._update_labels()

    # -- fine-tuning that keeps up: the session decides, this screen shows -------------------
    def _cadence_changed(self, *_: object) -> None:
        """The session's cadence from the form: every N accepted (0: off), M minutes each."""
        if self.session is None:
            return
        on = self.finetune_check.isChecked()
        self.session.finetune_every = self.finetune_every.value() if on else 0
        self.session.finetune = SESSION_FINETUNE.replace(minutes=self.finetune_minutes.value())

    def finetune_started(self, options: FinetuneOptions, accepted: int) -> None:
        self.finetune_label.setText(f"Fine-tuning {options.parent} on {accepted} corrections…")

    def finetune_progress(self, event: FinetuneProgress, accepted: int) -> None:
        parent = self.finetune.options.parent if self.finetune is not None else ""
        step, curve = finetune_step(event), event.held_out_summary()
        self.finetune_label.setText(f"Fine-tuning {parent} on {accepted} corrections: {step}{curve}")

    def finetune_ended(self, record: FinetuneRecord) -> None:
        if record.version is None:
            self.finetune_label.setText("Fine-tuning cancelled.")
            return
        before, after = record.validation_dice_before, record.validation_dice_after
        self.plot.add_finetune(record.after_accepted, before, after)
        verdict = "Now using" if record.switched else f"Made {record.version} but kept"
        used = record.version if record.switched else self.model_version
        self.finetune_label.setText(f"{verdict} {used} (held-out Dice {record.scores()}).")

    def finetune_failed(self, message: str) -> None:
        self._notify_error(f"Fine-tuning failed: {message}")

    # -- helpers -------------------------------------------------------------------------------
    def _accepted_entry(self, item: str):
        if self.queue is None or self.queue.states[item].status != "accepted":
            return None
        entry_id = self.queue.states[item].entry_id
        return next((e for e in self.store.entries() if e.id == entry_id), None)

    def _accepted_fraction(self, item: str) -> float:
        entry = self._accepted_entry(item)
        value = None if entry is None else entry.manifest.get("fraction_changed")
        return float(value) if isinstance(value, (int, float)) else 0.0

    def _refresh_volumes(self, *_: object) -> None:
        from napari.layers import Image

        self._volumes = {
            layer.name: layer
            for layer in self.viewer.layers
            if isinstance(layer, Image)
            and not layer.rgb
            and layer.ndim == 3
            and layer is not self.image_layer
            and not layer.metadata.get(ANIMATION_KEY)  # a run's denoising steps, not a volume
        }
        current = self.volume_box.currentText()
        self.volume_box.clear()
        self.volume_box.addItems(list(self._volumes))
        if current in self._volumes:
            self.volume_box.setCurrentText(current)

    def _update_labels(self) -> None:
        if self.queue is None:
            self.counts_label.setText("")
            return
        counts = self.queue.counts()
        self.counts_label.setText(
            f"accepted {counts['accepted']} · skipped {counts['skipped']} · remaining {counts['remaining']}"
        )
        item = self.queue.current
        if item is None:
            return
        score = self.queue.score(item)
        ready = self.presegmenter.result(item) is not None or self._accepted_entry(item) is not None
        self.where_label.setText(
            f"Image {self.queue.position(item)} of {len(self.queue.items)}: {Path(item).name}"
            + ("" if score is None else f" · uncertainty {score:.3f}")
            + ("" if ready else " · pre-segmenting…")
        )

    def _notify_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        show_error(message)
