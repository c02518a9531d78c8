"""Pre-segmenting a queue's next images in the background, one at a time.

The queue widget asks for items (the current image first, then the next ones; every
pending image when the order is "most uncertain first", since the order needs their
scores); this object segments them in a background thread, one job after another, and
emits ``ready(item)`` as each result arrives. The viewer never waits on it. A result is
kept per (item, model version), so switching model makes every item due again, except
what the caller keeps on screen.

Closing the viewer (:meth:`Presegmenter.stop`) cancels the running job between two sampler
steps and waits for it, so no job outlives the widget. The job is a plain Python thread
that reports through this object's own queued signal: when the widget is gone first, that
emit fails in Python and is dropped (a Qt worker's run() would abort the process instead:
"WorkerBaseSignals has been deleted"), and the interpreter waits for the thread at exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QObject, Signal

from ._messages import user_message

STOP_WAIT_S = 60.0  # stop() waits this long at most for the running job (one sampler step, or a model load)

if TYPE_CHECKING:
    from medsegdiff_training.inference import SegmentationResult


@dataclass
class Presegmentation:
    """One image's pre-segmentation: the result, its score and the model that made it."""

    item: str
    model_version: str
    result: SegmentationResult
    score: float
    seconds: float


def segment_item(
    image: np.ndarray, model_version: str, device: str, cancel: threading.Event | None = None
) -> Presegmentation:
    """Segment one image with the recommended settings (runs in a worker thread).

    ``cancel`` set stops it between two sampler steps (:class:`~medsegdiff_training.errors.Cancelled`).
    """
    import time

    from medsegdiff_training.annotation_queue import uncertainty_score
    from medsegdiff_training.errors import Cancelled
    from medsegdiff_training.sampling_defaults import SamplingSettings

    from ._cpu_share import use_sampling_threads
    from ._models import get_segmenter

    def check(*_: object) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("The pre-segmentation was stopped.")

    started = time.perf_counter()
    check()
    use_sampling_threads()  # this worker's share, beside a running fine-tune
    segmenter = get_segmenter(model_version, device)
    check()
    result = segmenter.segment(
        image, SamplingSettings(), on_step=check
    )  # the recommendation: an ensemble of 5
    score = uncertainty_score(result.probabilities, result.uncertainty)
    return Presegmentation("", model_version, result, score, time.perf_counter() - started)


class Presegmenter(QObject):
    """Segments requested items in the background; ``ready(item)`` / ``failed(item, message)``.

    ``read_image(item)`` gives an item's image (called in the worker thread: files are read
    there, never on the GUI thread).
    """

    ready = Signal(str)
    failed = Signal(str, str)
    _job_done = Signal(object)  # (item, Presegmentation or None, error or None), from the job's thread

    def __init__(self, read_image: Callable[[str], np.ndarray], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.read_image = read_image
        self.model_version = ""
        self.device = "auto"
        self.results: dict[str, Presegmentation] = {}
        self._wanted: list[str] = []
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        self._running_item: str | None = None
        self._stopped = False
        self._job_done.connect(self._on_job_done)  # queued: delivered on the GUI thread

    def configure(self, model_version: str, device: str) -> None:
        """Segment with ``model_version`` on ``device`` from now on (earlier results go stale)."""
        self.model_version, self.device = model_version, device

    def result(self, item: str) -> Presegmentation | None:
        """The item's pre-segmentation by the current model, if it is ready."""
        found = self.results.get(item)
        return found if found is not None and found.model_version == self.model_version else None

    def request(self, items: list[str]) -> None:
        """Segment ``items`` (in this order) unless already done with the current model."""
        self._wanted = [item for item in items if self.result(item) is None]
        self._start_next()

    def is_busy(self) -> bool:
        return self._worker is not None

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Take no further job; cancel the running one and wait for it to end (between two steps)."""
        self._stopped = True
        self._wanted = []
        self._cancel.set()
        if self._worker is not None:
            self._worker.join(wait_s)

    def _start_next(self) -> None:
        if self._worker is not None or self._stopped:
            return
        while self._wanted and self.result(self._wanted[0]) is not None:
            self._wanted.pop(0)
        if not self._wanted or not self.model_version:
            return
        item = self._wanted.pop(0)
        self._running_item = item
        self._worker = threading.Thread(
            target=self._job,
            args=(item, self.read_image, self.model_version, self.device, self._cancel, self._job_done),
            name=f"medsegdiff-presegment-{item}",
        )
        self._worker.start()

    @staticmethod
    def _job(item: str, read_image, version: str, device: str, cancel: threading.Event, done) -> None:
        """The background job: no ``self``, so nothing of a deleted widget is touched but ``done``."""
        try:
            result = segment_item(read_image(item), version, device, cancel)
            result.item = item
            outcome: tuple[str, Presegmentation | None, BaseException | None] = (item, result, None)
        except Exception as error:  # noqa: BLE001 - a failed image costs itself only: reported
            outcome = (item, None, error)
        try:
            done.emit(outcome)
        except RuntimeError:  # the widget was deleted first (the viewer closed): nobody waits
            pass

    def _on_job_done(self, outcome: tuple[str, Presegmentation | None, BaseException | None]) -> None:
        from medsegdiff_training.errors import Cancelled

        item, result, error = outcome
        self._worker, self._running_item = None, None
        if result is not None:
            self.results[item] = result
            self.ready.emit(item)
        elif error is not None and not isinstance(error, Cancelled):
            self.failed.emit(item, user_message(error))
        self._start_next()
