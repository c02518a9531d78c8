"""A progress bar with a line saying the stage: what the annotator watches while work runs.

Used by the segmentation widget (loading the model, step k of n, adding the layers) and the
fine-tune dialog (starting the process, fine-tune step k of n and the minutes left). A stage
without a count shows a busy bar and, after a second, how long it has taken, so a slow start
(PyTorch loading in a worker or a separate process) never looks like a hang. Updating it
never processes events (napari's activity progress bar does, which re-enters the event loop
from inside a slot).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from medsegdiff_training.finetune_events import FinetuneProgress


def finetune_step(event: FinetuneProgress) -> str:
    """``step 40 of 120, about 2.1 min left`` (the parts the fine-tune process reported)."""
    total, left = event.total_steps, event.remaining_s
    return (
        f"step {event.step}"
        + (f" of {total}" if total else "")
        + (f", about {left / 60:.1f} min left" if left is not None else "")
    )


class RunProgress(QWidget):
    """``stage(text)`` (busy), ``steps(done, total, text)``, ``finish()``; hidden when idle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.label = QLabel()
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label)
        self._stage_text, self._stage_started = "", 0.0
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        self.setVisible(False)

    def stage(self, text: str) -> None:
        """A stage without a count (e.g. loading the model): a busy bar and the time it takes."""
        self.setVisible(True)
        self.bar.setRange(0, 0)
        self._stage_text, self._stage_started = text, time.monotonic()
        self.label.setText(text)
        self._clock.start()

    def steps(self, done: int, total: int, text: str) -> None:
        """``done`` of ``total`` steps, with a line saying what they are."""
        self.setVisible(True)
        self._clock.stop()
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, total))
        self.bar.setFormat(f"{done} / {total}")
        self.label.setText(text)

    def finish(self) -> None:
        """The work ended: the bar and its line go (the caller says how it ended)."""
        self._clock.stop()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.label.setText("")
        self.setVisible(False)

    @property
    def text(self) -> str:
        """The stage line as shown."""
        return self.label.text()

    def _tick(self) -> None:
        seconds = time.monotonic() - self._stage_started
        self.label.setText(f"{self._stage_text} {seconds:.0f} s")
