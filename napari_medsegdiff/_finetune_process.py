"""Fine-tuning in a separate process (``python -m medsegdiff_training finetune``).

Training in its own process can neither freeze nor crash the viewer, and Cancel is a
SIGTERM, which the CLI turns into a clean stop that leaves the registry as it was. The
command line comes from the core's :func:`~medsegdiff_training.finetune_options.process_arguments`
(the one the CLI parses back), and the process's JSON lines are read by the core's
:mod:`~medsegdiff_training.finetune_events` and become Qt signals here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from qtpy.QtCore import QCoreApplication, QObject, QProcess, QProcessEnvironment, Signal

from medsegdiff_training.finetune_events import (
    FinetuneCancelled,
    FinetuneDone,
    FinetuneEvent,
    FinetuneEventError,
    FinetuneFailed,
    FinetuneProgress,
    FinetuneStarted,
)
from medsegdiff_training.finetune_options import FinetuneOptions, process_arguments

from ._cpu_share import end_finetune, start_finetune


class FinetuneProcess(QObject):
    """Runs one fine-tune of ``options``.

    Emits ``started(FinetuneStarted)``, ``progress(FinetuneProgress)`` per step, then, once
    the process has ended, exactly one of ``done(FinetuneDone)``, ``cancelled()``,
    ``failed(str)``. A line the core's events module cannot read ends in ``failed``: a
    plugin and a core that disagree never pass for a fine-tune that made nothing.
    """

    started = Signal(object)
    progress = Signal(object)
    done = Signal(object)
    cancelled = Signal()
    failed = Signal(str)

    def __init__(self, options: FinetuneOptions, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.options = options
        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        for name in ("MEDSEGDIFF_HOME", "PYTHONPATH"):
            if name in os.environ:
                environment.insert(name, os.environ[name])
        self.process.setProcessEnvironment(environment)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self._buffer = b""
        self._outcome: FinetuneEvent | None = None  # the CLI's final event
        self._unreadable: str | None = None  # the first line the events module refused
        self.last_step = 0
        self._stderr = b""
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.errorOccurred.connect(self._error_occurred)

    def start(self) -> None:
        environment = self.process.processEnvironment()
        for name, value in start_finetune(self).items():  # its thread share, passive OpenMP wait
            environment.insert(name, value)
        self.process.setProcessEnvironment(environment)
        self.process.start(sys.executable, process_arguments(self.options))
        application = QCoreApplication.instance()
        if application is not None:  # napari quitting mid-run: stop cleanly, do not orphan it
            application.aboutToQuit.connect(self.stop)

    def cancel(self) -> None:
        """Ask the fine-tune to stop (SIGTERM); ``cancelled`` follows once it has."""
        if self.is_running():
            self.process.terminate()  # SIGTERM: the CLI stops cleanly and exits with 130

    def stop(self, wait_ms: int = 15_000) -> None:
        """Cancel and wait until the process has ended (killed after ``wait_ms``)."""
        if not self.is_running():
            return
        self.cancel()
        if not self.process.waitForFinished(wait_ms):
            self.process.kill()  # a stuck process; the registry only ever sees complete versions
            self.process.waitForFinished(5_000)

    def is_running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def _error_occurred(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no ``finished`` follows
            end_finetune(self)
            self.failed.emit(f"could not start {sys.executable} ({self.process.errorString()})")

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + bytes(self.process.readAllStandardError()))[-65536:]

    def _read(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._parse(line)

    def _parse(self, line: bytes) -> None:
        try:
            event = FinetuneEvent.parse(line)
        except FinetuneEventError as error:
            self._unreadable = self._unreadable or str(error)
            return
        if isinstance(event, FinetuneProgress):
            self.last_step = event.step
            self.progress.emit(event)
        elif isinstance(event, FinetuneStarted):
            self.started.emit(event)
        elif isinstance(event, (FinetuneDone, FinetuneCancelled, FinetuneFailed)):
            self._outcome = event  # announced once the process has ended (see _finished)

    def _finished(self, exit_code: int, _status: object = None) -> None:
        """Emit the outcome only now, so that a listener never sees a process still exiting."""
        end_finetune(self)
        application = QCoreApplication.instance()
        if application is not None:
            try:
                application.aboutToQuit.disconnect(self.stop)
            except (TypeError, RuntimeError):  # never connected
                pass
        self._read()
        if self._buffer.strip():
            self._parse(self._buffer)
            self._buffer = b""
        outcome = self._outcome
        if self._unreadable is not None:
            self.failed.emit(self._unreadable)
        elif isinstance(outcome, FinetuneDone):
            self.done.emit(outcome)
        elif isinstance(outcome, FinetuneCancelled) or (outcome is None and exit_code == 130):
            self.cancelled.emit()
        elif isinstance(outcome, FinetuneFailed):
            self.failed.emit(outcome.message or "fine-tuning failed")
        else:
            lines = self._stderr.decode(errors="replace").strip().splitlines()
            self.failed.emit(lines[-1] if lines else f"fine-tuning stopped (exit code {exit_code})")


class ProcessRunner:
    """An annotation session's runner: each fine-tune a :class:`FinetuneProcess` (one at a time).

    The session hears its events through ``report`` as the process sends them; the
    annotator goes on meanwhile.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        self.parent = parent
        self.process: FinetuneProcess | None = None

    def start(self, options: FinetuneOptions, report: Callable[[FinetuneEvent], None]) -> None:
        process = FinetuneProcess(options, self.parent)
        process.progress.connect(report)
        process.done.connect(report)
        process.failed.connect(lambda message: report(FinetuneFailed(message)))
        process.cancelled.connect(
            lambda: report(FinetuneCancelled(steps=process.last_step, run_dir=str(options.run_dir or "")))
        )
        self.process = process
        process.start()

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()
