"""The "Corrections" section of the MedSegDiff widget: store, entry count, export, fine-tune.

The segmentation widget embeds it and tells it three things through callables (so this
module never imports the widget): which image layer is chosen, which model version is
current, and what to do once fine-tuning has made a new version. The layers are paired
and written by :mod:`._export`; fine-tuning runs in a separate process through
:mod:`._finetune_dialog`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton

from ._export import ExportError, check_export, corrections_store, export_correction, pair_for_export

if TYPE_CHECKING:
    import napari

    from medsegdiff_training.corrections import CorrectionEntry, CorrectionsStore
    from medsegdiff_training.finetune_events import FinetuneDone

    from ._finetune_dialog import FinetuneDialog


class CorrectionsPanel(QGroupBox):
    """Where corrections go and how many there are; Export correction; Fine-tune….

    ``confirm(question) -> bool`` answers the yes/no questions (an empty Labels layer as a
    true negative; switching to a new version); the widget passes a QMessageBox, tests a
    lambda.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        *,
        image_layer: Callable[[], Any],
        model_version: Callable[[], str],
        on_new_version: Callable[[str, bool], None],
        confirm: Callable[[str], bool],
    ) -> None:
        super().__init__("Corrections")
        self.viewer = viewer
        self._image_layer, self._model_version = image_layer, model_version
        self._on_new_version, self.confirm = on_new_version, confirm
        self.finetune_dialog: FinetuneDialog | None = None
        self._damage_shown: str | None = None  # the store damage last notified (once per state)
        form = QFormLayout(self)
        self.store_label = QLabel()
        self.store_label.setWordWrap(True)
        self.change_button = QPushButton("Change…")
        self.change_button.setToolTip("Keep corrections in another folder (e.g. one per project)")
        self.change_button.clicked.connect(self.choose_store)
        self.count_label = QLabel()
        row = QHBoxLayout()  # the path gets a row of its own: a long one wraps instead of being cut
        row.addWidget(self.count_label, 1)
        row.addWidget(self.change_button)
        self.export_button = QPushButton("Export correction")
        self.export_button.setToolTip(
            "Save the selected Labels layer (or the newest one made for the chosen image), its image "
            "and the model's first prediction as a new entry of the corrections store"
        )
        self.export_button.clicked.connect(self.export_correction)
        self.finetune_button = QPushButton("Fine-tune on corrections…")
        self.finetune_button.clicked.connect(self.open_finetune_dialog)
        form.addRow("Store", self.store_label)
        form.addRow("Entries", row)
        form.addRow(self.export_button)
        form.addRow(self.finetune_button)
        self.set_store(None)

    # -- the store --------------------------------------------------------------------------
    def set_store(self, root: str | Path | None) -> None:
        """Show the store at ``root`` (None: the default); it is opened on first use."""
        from medsegdiff_training.paths import default_corrections_root  # no torch

        self._store_root = Path(root) if root is not None else default_corrections_root()
        self._store: CorrectionsStore | None = None
        self.store_label.setText(str(self._store_root).replace("/", "/\u200b"))  # may wrap at a slash
        self.store_label.setToolTip(str(self._store_root))
        self.count_label.setText("…")

    @property
    def store(self) -> CorrectionsStore:
        """The CorrectionsStore (the training package, hence torch, is imported on first use)."""
        if self._store is None:
            self._store = corrections_store(self._store_root)
            self.refresh_count()
        return self._store

    def refresh_count(self) -> None:
        """Show how many complete entries the store holds (another process may have added some);
        damage (a broken manifest line, a half-written entry) is a warning, once per state."""
        from napari.utils.notifications import show_error, show_warning

        from medsegdiff_training.errors import MedSegDiffError

        try:
            report = self.store.check()
            damage = self.store.damage_message(report)
            self.count_label.setText(str(len(report.records)))
        except (MedSegDiffError, OSError) as error:
            self.count_label.setText("unreadable")
            show_error(f"MedSegDiff cannot read the corrections store: {error}")
            return
        if damage is not None and damage != self._damage_shown:
            show_warning(damage)
        self._damage_shown = damage

    def choose_store(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Corrections store", str(self._store_root))
        if folder:
            self.set_store(folder)
            self.refresh_count()

    # -- export ------------------------------------------------------------------------------
    def export_correction(self) -> CorrectionEntry | None:
        """Export the image and its corrected Labels layer; returns the entry (None if refused).

        Every refusal is a notification and writes nothing: no Labels layer, labels that do
        not cover the image, empty labels not confirmed as a true negative, a store that
        cannot be written (disk full, no permission; earlier entries are unharmed).
        """
        from napari.utils.notifications import show_error, show_info

        from medsegdiff_training.errors import MedSegDiffError

        try:
            image_layer, labels_layer = pair_for_export(
                self.viewer.layers, self.viewer.layers.selection.active, self._image_layer()
            )
            empty = check_export(image_layer, labels_layer)
        except ExportError as error:
            show_error(f"MedSegDiff could not export: {error}")
            return None
        if empty and not self.confirm(
            f"'{labels_layer.name}' is empty. Export it as a true negative "
            f"(nothing to segment in '{image_layer.name}')?"
        ):
            show_info("Export cancelled: paint the labels first, or confirm a true negative.")
            return None
        try:
            entry = export_correction(self.store, image_layer, labels_layer, allow_empty=empty)
        except (MedSegDiffError, OSError) as error:
            show_error(f"MedSegDiff could not export: {error}")
            return None
        self.refresh_count()
        show_info(
            f"Exported '{labels_layer.name}' with '{image_layer.name}' as correction {entry.id} "
            f"({self.count_label.text()} in the store)."
        )
        return entry

    # -- fine-tuning -------------------------------------------------------------------------
    def open_finetune_dialog(self) -> FinetuneDialog:
        """Show the fine-tune dialog; the running one if a fine-tune is under way."""
        from ._finetune_dialog import FinetuneDialog

        if self.finetune_dialog is None or not self.finetune_dialog.is_running():
            self.finetune_dialog = FinetuneDialog(
                str(self.store.root),
                parent_version=self._model_version(),
                on_done=self._on_finetuned,
                parent=self,
            )
        self.finetune_dialog.show()
        self.finetune_dialog.raise_()
        return self.finetune_dialog

    def _on_finetuned(self, event: FinetuneDone) -> None:
        version = event.version
        switch = self.confirm(switch_question(event))
        self._on_new_version(version, switch)


def switch_question(event: FinetuneDone) -> str:
    """The offer to switch to a fine-tuned version: parent and child scored on the same images."""
    from ._models import comparison_with_parent

    made = f"Fine-tuning made model version '{event.version}' from '{event.parent}'."
    return f"{made} {comparison_with_parent(event.version)} Switch to it now?"
