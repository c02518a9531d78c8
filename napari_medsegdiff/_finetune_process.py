"""Fine-tuning in a separate process (``python -m medsegdiff_training finetune``).

Training in its own process can neither freeze nor crash the viewer, and Cancel is a
SIGTERM, which the CLI turns into a clean stop that leaves the registry as it was. The
CLI's ``--progress-json`` lines become Qt signals here.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

from qtpy.QtCore import QCoreApplication, QObject, QProcess, QProcessEnvironment, Signal


@dataclass(frozen=True)
class FinetuneRequest:
    """What to fine-tune, on what, and for how long."""

    parent: str
    store: str
    steps: int | None = 300
    minutes: float | None = None
    device: str = "auto"
    mix_original: bool = False

    def arguments(self) -> list[str]:
        args = [
            "-m",
            "medsegdiff_training",
            "finetune",
            "--store",
            self.store,
            "--parent",
            self.parent,
            "--device",
            self.device,
            "--progress-json",
        ]
        if self.steps is not None:
            args += ["--steps", str(self.steps)]
        if self.minutes is not None:
            args += ["--minutes", str(self.minutes)]
        if self.mix_original:
            args.append("--mix-original")
        return args


class FinetuneProcess(QObject):
    """Runs one fine-tune.

    Emits ``progress(dict)`` per step, then one of ``done(dict)``, ``cancelled()``, ``failed(str)``.
    """

    progress = Signal(dict)
    done = Signal(dict)
    cancelled = Signal()
    failed = Signal(str)

    def __init__(self, request: FinetuneRequest, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        for name in ("MEDSEGDIFF_HOME", "PYTHONPATH"):
            if name in os.environ:
                environment.insert(name, os.environ[name])
        self.process.setProcessEnvironment(environment)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self._buffer = b""
        self._outcome: str | None = None
        self._stderr = b""
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.process.errorOccurred.connect(self._error_occurred)

    def start(self) -> None:
        self.process.start(sys.executable, self.request.arguments())
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
            self._outcome = "error"
            self.failed.emit(f"could not start {sys.executable} ({self.process.errorString()})")

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + bytes(self.process.readAllStandardError()))[-65536:]

    def _read(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "progress":
                self.progress.emit(event)
            elif kind == "done":
                self._outcome = "done"
                self.done.emit(event)
            elif kind == "cancelled":
                self._outcome = "cancelled"
                self.cancelled.emit()
            elif kind == "error":
                self._outcome = "error"
                self.failed.emit(str(event.get("message", "fine-tuning failed")))

    def _finished(self, exit_code: int, _status: object = None) -> None:
        application = QCoreApplication.instance()
        if application is not None:
            try:
                application.aboutToQuit.disconnect(self.stop)
            except (TypeError, RuntimeError):  # never connected
                pass
        self._read()
        if self._outcome is None:
            if exit_code == 130:
                self.cancelled.emit()
            else:
                message = self._stderr.decode(errors="replace").strip().splitlines()
                self.failed.emit(message[-1] if message else f"fine-tuning stopped (exit code {exit_code})")
