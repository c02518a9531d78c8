"""The "Fine-tune MedSegDiff on corrections…" dialog (its menu command: :mod:`._menu_commands`).

Its options are a magicgui form (:mod:`._finetune_form`); the store, the plan for the new
version, the progress (starting the process, then step k of n and the minutes left) and the
Start and Cancel buttons are hand-written Qt, since they are live state rather than fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from medsegdiff_training.finetune_events import FinetuneDone, FinetuneProgress, FinetuneStarted
from medsegdiff_training.finetune_options import FinetuneOptions

from ._finetune_form import FinetuneForm
from ._finetune_process import FinetuneProcess
from ._run_progress import RunProgress, finetune_step

_STOPPING: set[FinetuneProcess] = set()  # cancelled by a closed viewer, kept alive until they end


def _stop_when_closed(process: FinetuneProcess, progress_bar: Any) -> Callable[..., None]:
    """A slot for the dialog's ``destroyed``: the viewer closed mid-run, so stop it cleanly.

    A closure over the process and the progress bar, not a method: the dialog is gone by then.
    SIGTERM, and no wait-then-kill: the CLI stops after its current step and saves its state,
    which on a loaded machine can take longer than any fixed wait (a kill then cost the clean
    stop); the process object is kept until it has ended (a deleted QProcess is SIGKILLed).
    Quitting napari still waits and kills a stuck one (:meth:`FinetuneProcess.stop`).
    """

    def stop(*_: object) -> None:
        if not process.is_running():
            return
        for signal in (process.progress, process.done, process.cancelled, process.failed):
            try:
                signal.disconnect()  # their slots belong to the deleted dialog
            except (TypeError, RuntimeError):
                pass
        progress_bar.close()
        _STOPPING.add(process)
        process.process.finished.connect(lambda *_: _STOPPING.discard(process))
        process.cancel()  # SIGTERM: the CLI leaves the registry as it was and exits with 130

    return stop


class FinetuneDialog(QDialog):
    """Choose parent, budget, device and data; start; watch progress; cancel.

    Closing the dialog does not stop the fine-tune: napari's progress bar keeps showing it,
    and the widget's "Fine-tune on corrections…" button brings this dialog back.
    ``on_done(event)`` is called with the process's :class:`FinetuneDone` event (new
    version, parent, validation Dice before/after).
    """

    def __init__(
        self,
        store: str,
        parent_version: str | None = None,
        on_done: Callable[[FinetuneDone], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune MedSegDiff on corrections")
        self.store, self.on_done = store, on_done
        self.process: FinetuneProcess | None = None
        self._progress = None
        self.options = FinetuneForm(parent_version)
        self.child_label = QLabel()
        self.child_label.setWordWrap(True)
        self.child_label.setToolTip(
            "RGB corrections give a grey parent an RGB child; label values the parent lacks give "
            "it more classes. The child starts where the parent was (weight surgery)."
        )
        self.options.parent_model.changed.connect(self._show_plan)
        about = QFormLayout()
        about.addRow("Corrections", QLabel(store))
        about.addRow("New version", self.child_label)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.run_progress = RunProgress()
        self.start_button, self.cancel_button = QPushButton("Start"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.options.native)
        layout.addLayout(about)
        layout.addWidget(self.run_progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._show_plan()

    def _show_plan(self) -> None:
        """Say what the child will become ("3 classes, RGB ...") for this parent and store."""
        from medsegdiff_training.adaptation import plan_finetune
        from medsegdiff_training.errors import MedSegDiffError

        from ._export import corrections_store

        parent = str(self.options.parent_model.value)
        try:
            plan = plan_finetune(parent, corrections_store(self.store))
        except (MedSegDiffError, OSError, ValueError) as error:
            self.child_label.setText(f"unknown ({error})")
            return
        self.child_label.setText(plan.describe())

    def request(self) -> FinetuneOptions:
        """The fine-tune the form asks for (the process's command line is made from it)."""
        return self.options.options(self.store)

    def start(self) -> FinetuneProcess | None:
        """Start fine-tuning in a separate process; None (and a message) when refused."""
        from napari.utils import progress
        from napari.utils.notifications import show_error

        if self.is_running():
            return self.process
        entries = self._count_entries()
        if not entries:
            self.status.setText(f"No corrections in {self.store} yet: export at least one first.")
            show_error(f"MedSegDiff: the corrections store {self.store} is empty; export corrections first.")
            return None
        # No Qt parent: closing the viewer deletes this dialog first, and the process must
        # outlive it long enough to be stopped cleanly (a deleted QProcess is SIGKILLed).
        self.process = FinetuneProcess(self.request())
        self.process.started.connect(self._on_started)
        self.process.progress.connect(self._on_progress)
        self.process.done.connect(self._on_done)
        self.process.cancelled.connect(lambda: self._finish("Cancelled: the registry is unchanged."))
        self.process.failed.connect(self._on_failed)
        self._progress = progress(total=int(self.options.steps.value), desc="Fine-tuning MedSegDiff")
        self.destroyed.connect(_stop_when_closed(self.process, self._progress))
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Fine-tuning on {entries} correction(s).")
        self.run_progress.stage("Starting the fine-tune process (loading PyTorch and the parent)…")
        self.process.start()
        return self.process

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def _count_entries(self) -> int:
        from medsegdiff_training.errors import MedSegDiffError

        from ._export import corrections_store

        try:
            return len(corrections_store(self.store))
        except (MedSegDiffError, OSError):
            return 0

    def cancel(self) -> None:
        if self.process is not None:
            self.status.setText("Cancelling…")
            self.process.cancel()

    def _on_started(self, event: FinetuneStarted) -> None:
        self.status.setText(f"Fine-tuning {event.parent} on {event.corrections} correction(s): {event.plan}.")
        self.run_progress.stage("Preparing the corrections and scoring the parent on the held-out ones…")

    def _on_progress(self, event: FinetuneProgress) -> None:
        if self._progress is not None:
            total = event.total_steps
            if total is not None and total > 0 and total != self._progress.total:
                self._progress.total = total  # a time budget: the CLI's estimate of the steps
            self._progress.n = event.step
            self._progress.refresh()
        total = event.total_steps or max(event.step, 1)
        self.run_progress.steps(
            event.step,
            total,
            f"Fine-tune {finetune_step(event)} (loss {event.loss or 0:.4f}{event.held_out_summary()})",
        )

    def _on_done(self, event: FinetuneDone) -> None:
        from napari.utils.notifications import show_info

        from ._models import comparison_with_parent  # each Dice with the corrections it is on

        scores = " ".join(
            part for part in (comparison_with_parent(event.version), event.best_summary()) if part
        )
        message = f"New model version '{event.version}' from '{event.parent}'. {scores}"
        self._finish(message)
        show_info(f"MedSegDiff: {message}")  # the dialog may be closed by now
        if self.on_done is not None:
            self.on_done(event)

    def _on_failed(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._finish(f"Failed: {message}")
        show_error(f"Fine-tuning failed: {message}")

    def _finish(self, message: str) -> None:
        self.run_progress.finish()
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.status.setText(message)
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
