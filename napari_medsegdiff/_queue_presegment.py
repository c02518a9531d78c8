"""Pre-segmenting a queue's next images in the background, one at a time.

The queue widget asks for items (the current image first, then the next ones; every
pending image when the order is "most uncertain first", since the order needs their
scores); this object segments them in a napari worker thread, one job after another, and
emits ``ready(item)`` as each result arrives. The viewer never waits on it. A result is
kept per (item, model version), so switching model makes every item due again, except
what the caller keeps on screen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from ._messages import user_message

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


def segment_item(image: np.ndarray, model_version: str, device: str) -> Presegmentation:
    """Segment one image with the recommended settings (runs in a worker thread)."""
    import time

    from medsegdiff_training.annotation_queue import uncertainty_score
    from medsegdiff_training.sampling_defaults import SamplingSettings

    from ._models import get_segmenter

    started = time.perf_counter()
    segmenter = get_segmenter(model_version, device)
    result = segmenter.segment(image, SamplingSettings())  # the recommendation: an ensemble of 5
    score = uncertainty_score(result.probabilities, result.uncertainty)
    return Presegmentation("", model_version, result, score, time.perf_counter() - started)


class Presegmenter(QObject):
    """Segments requested items in the background; ``ready(item)`` / ``failed(item, message)``.

    ``read_image(item)`` gives an item's image (called in the worker thread: files are read
    there, never on the GUI thread).
    """

    ready = Signal(str)
    failed = Signal(str, str)

    def __init__(self, read_image: Callable[[str], np.ndarray], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.read_image = read_image
        self.model_version = ""
        self.device = "auto"
        self.results: dict[str, Presegmentation] = {}
        self._wanted: list[str] = []
        self._worker: Any = None
        self._running_item: str | None = None
        self._stopped = False

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

    def stop(self) -> None:
        """Take no further job (the one running finishes: one image)."""
        self._stopped = True
        self._wanted = []
        if self._worker is not None:
            self._worker.quit()

    def _start_next(self) -> None:
        from napari.qt.threading import create_worker

        if self._worker is not None or self._stopped:
            return
        while self._wanted and self.result(self._wanted[0]) is not None:
            self._wanted.pop(0)
        if not self._wanted or not self.model_version:
            return
        item = self._wanted.pop(0)
        version, device = self.model_version, self.device

        def job() -> Presegmentation:
            done = segment_item(self.read_image(item), version, device)
            done.item = item
            return done

        self._running_item = item
        self._worker = create_worker(job)
        self._worker.returned.connect(self._returned)
        self._worker.errored.connect(lambda error, item=item: self._errored(item, error))
        self._worker.finished.connect(self._finished)
        self._worker.start()

    def _returned(self, done: Presegmentation) -> None:
        self.results[done.item] = done
        self.ready.emit(done.item)

    def _errored(self, item: str, error: BaseException) -> None:
        self.failed.emit(item, user_message(error))

    def _finished(self) -> None:
        self._worker, self._running_item = None, None
        self._start_next()
