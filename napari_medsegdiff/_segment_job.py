"""One Segment (or Propagate) run on the GUI side: the worker's yields into the animation and
the progress bar, its result into layers, in small pieces of GUI-thread work.

The worker (napari's ``create_worker``) yields :class:`._sampling_glue.Stage` (what it is
doing), :class:`._sampling_glue.Frame` (one sampler step, shown at once) or a slice index
(propagation). When the worker has returned, the caller's ``finish`` generator puts
the result into layers, one layer per event-loop turn (it yields between them), so the
viewer keeps drawing and answering clicks while a run ends. No Qt widget here: the
segmentation widget owns the buttons and the lines, this object owns the run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Qt, QTimer, Signal

from ._sampling_glue import Frame, Stage

if TYPE_CHECKING:
    from ._animation import StepAnimation
    from ._run_progress import RunProgress


class _NextTurn(QObject):
    """Runs a callable on a later turn of the GUI event loop, after the events already queued.

    A queued signal, not a zero-interval timer: Qt starves zero timers while the window
    system keeps it busy (a canvas redrawing), and then a run's last layers would wait.
    """

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(lambda function: function(), Qt.ConnectionType.QueuedConnection)


class SegmentJob:
    """Drive one worker: ``start()``, ``cancel()``; ``on_end(message, ok)`` when all is done.

    ``finish(value)`` is a generator over the worker's return value that adds the layers,
    yielding between two pieces of GUI work, and returns the line that says what was done.
    """

    def __init__(
        self,
        work: Callable[[], Generator[Any, None, Any]],
        animation: StepAnimation,
        progress: RunProgress,
        finish: Callable[[Any], Generator[None, None, str]],
        on_end: Callable[[str | None, bool], None],
        slices: int = 1,
    ) -> None:
        self.work, self.animation, self.progress = work, animation, progress
        self.finish, self.on_end, self.slices = finish, on_end, slices
        self.worker: Any = None
        self.stopping = False  # cancelled or failed: queued frames are dropped, nothing is added
        self.error: BaseException | None = None
        self._value: Any = None
        self._returned = False
        self._frames_seen = 0
        self._later = _NextTurn()

    def start(self) -> Any:
        """Start the worker thread on the next turn of the event loop; returns the napari worker.

        Starting it a turn later means a caller that connects to the returned worker's
        signals right away sees every yield, the first included, however busy the machine.
        """
        from napari.qt.threading import create_worker

        self.worker = create_worker(self.work, _ignore_errors=True)  # errors go to _on_error
        self.worker.yielded.connect(self._on_yield)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_error)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        QTimer.singleShot(0, self.worker.start)
        return self.worker

    def cancel(self) -> None:
        """Stop after the step in progress; frames already queued for the GUI are dropped."""
        self.stopping = True
        if self.worker is not None:
            self.worker.quit()

    # -- while it runs ----------------------------------------------------------------------
    def _on_yield(self, item: Stage | Frame | int) -> None:
        if self.stopping:
            return
        if isinstance(item, Stage):
            self.progress.stage(item.text)
        elif isinstance(item, Frame):
            self._frames_seen += 1
            total = max(item.total_steps * item.batches * self.slices, self._frames_seen)
            self.progress.steps(self._frames_seen, total, self._step_text(item))
            self.animation.show(item)
        else:  # propagation: slice ``item`` is done
            self._frames_seen += 1
            total = max(self.slices, self._frames_seen)
            self.progress.steps(self._frames_seen, total, f"Propagating: slice {item} segmented")

    def _step_text(self, frame: Frame) -> str:
        where = []
        if self.slices > 1 or frame.slice_index:
            where.append(f"slice {frame.slice_index}")
        if frame.batches > 1:
            where.append(f"objects batch {frame.batch + 1} of {frame.batches}")
        prefix = (", ".join(where) + ": ") if where else ""
        return f"{prefix}denoising step {frame.step + 1} of {frame.total_steps} (t = {frame.t})"

    # -- how it ends ------------------------------------------------------------------------
    def _on_returned(self, value: Any) -> None:
        self._value, self._returned = value, True

    def _on_error(self, error: BaseException) -> None:
        self.stopping, self.error = True, error

    def _on_aborted(self) -> None:
        self.stopping = True

    def _on_finished(self) -> None:
        if self.stopping or not self._returned:
            self.animation.discard()  # cancelled or failed: no half-made animation, no layer
            self.progress.finish()
            self.on_end(None, False)
            return
        self.progress.stage("Adding the result layers…")
        steps = self.finish(self._value)
        self._later.call.emit(lambda: self._continue(steps))  # after what is queued already

    def _continue(self, steps: Generator[None, None, str]) -> None:
        """One piece of the result's GUI work, then the next one on the next event-loop turn."""
        try:
            next(steps)
        except StopIteration as done:
            self.progress.finish()
            self.on_end(done.value, True)
            return
        except Exception as error:  # noqa: BLE001 - a failure adding layers is said, not raised
            self.error = error
            self.progress.finish()
            self.on_end(None, False)
            return
        self._later.call.emit(lambda: self._continue(steps))
