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
    original_images: str | None = None  # with mix_original: folders other than the parent names
    original_masks: str | None = None
    channels: int | None = None  # None: the parent's, or what the corrections need
    num_classes: int | None = None

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
        if self.channels is not None:
            args += ["--channels", str(self.channels)]
        if self.num_classes is not None:
            args += ["--num-classes", str(self.num_classes)]
        if self.mix_original:
            args.append("--mix-original")
            if self.original_images:
                args += ["--original-images", self.original_images]
            if self.original_masks:
                args += ["--original-masks", self.original_masks]
        return args


class FinetuneProcess(QObject):
    """Runs one fine-tune.

    Emits ``progress(dict)`` per step, then, once the process has ended, exactly one of
    ``done(dict)``, ``cancelled()``, ``failed(str)``.
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
        self._outcome: dict | None = None  # the CLI's final event
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
            event = json.loads(line)
        except ValueError:
            return  # not one of the CLI's JSON lines (a library printing something)
        if not isinstance(event, dict):
            return
        if event.get("event") == "progress":
            self.progress.emit(event)
        elif event.get("event") in ("done", "cancelled", "error"):
            self._outcome = event  # announced once the process has ended (see _finished)

    def _finished(self, exit_code: int, _status: object = None) -> None:
        """Emit the outcome only now, so that a listener never sees a process still exiting."""
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
        outcome = self._outcome or {}
        if outcome.get("event") == "done":
            self.done.emit(outcome)
        elif outcome.get("event") == "cancelled" or (not outcome and exit_code == 130):
            self.cancelled.emit()
        elif outcome.get("event") == "error":
            self.failed.emit(str(outcome.get("message") or "fine-tuning failed"))
        else:
            lines = self._stderr.decode(errors="replace").strip().splitlines()
            self.failed.emit(lines[-1] if lines else f"fine-tuning stopped (exit code {exit_code})")
