"""How the CLI reports long work and how it is stopped: progress lines and signals.

Plain text progress goes to stderr (one self-overwriting line on a terminal, a line every
few seconds in a log file), so stdout stays clean for ``--json`` results. With
``--progress-json`` stdout carries one JSON object per line instead, for the napari
plugin that runs ``medsegdiff finetune`` as a separate process.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from ..finetune_events import FinetuneProgress

if TYPE_CHECKING:  # the CLI imports this module for --help: no torch at import time
    from ..trainer import TrainProgress


def json_safe(value: Any) -> Any:
    """NaN and infinities become ``null`` so the output stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def emit_json(event: dict[str, Any], stream: TextIO | None = None) -> None:
    """Write one JSON object as one line and flush it at once."""
    stream = stream or sys.stdout
    stream.write(json.dumps(json_safe(event)) + "\n")
    stream.flush()


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class TrainingReporter:
    """A progress callback for :func:`~medsegdiff_training.trainer.train`.

    ``json_lines`` writes :class:`~.finetune_events.FinetuneProgress` lines to stdout (at most every
    ``interval_s`` seconds, and always for the last step and each new validation);
    otherwise a human-readable line goes to stderr.
    """

    def __init__(
        self, json_lines: bool = False, interval_s: float | None = None, stream: TextIO | None = None
    ) -> None:
        self.json_lines = json_lines
        self.stream = stream or (sys.stdout if json_lines else sys.stderr)
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = (
            interval_s if interval_s is not None else (0.5 if json_lines or self.terminal else 10.0)
        )
        self.last_time = -math.inf
        self.last_validation: tuple[int | None, float | None] = (None, None)
        self.pending_newline = False

    def __call__(self, progress: TrainProgress) -> None:
        now = time.monotonic()
        last_step = progress.total_steps is not None and progress.step >= progress.total_steps
        point = (progress.validation_step, progress.validation_dice)
        new_validation = progress.validation_dice is not None and point != self.last_validation
        if not (last_step or new_validation or now - self.last_time >= self.interval_s):
            return
        self.last_time, self.last_validation = now, point
        if self.json_lines:
            emit_json(FinetuneProgress.of(progress).to_dict(), self.stream)
            return
        total = f"/{progress.total_steps}" if progress.total_steps is not None else ""
        best = progress.best_validation_dice
        validation = (
            ""
            if progress.validation_dice is None
            else f" | validation Dice {progress.validation_dice:.3f}"
            + ("" if best is None else f" (best {best:.3f} at step {progress.best_step})")
        )
        line = (
            f"step {progress.step}{total} | loss {progress.loss:.4f}{validation} | "
            f"{progress.images_per_s:.1f} images/s | {format_duration(progress.remaining_s)} left"
        )
        self.write(line)

    def write(self, line: str) -> None:
        if self.terminal:
            self.stream.write("\r\033[K" + line)
            self.pending_newline = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.pending_newline:
            self.stream.write("\n")
            self.stream.flush()
            self.pending_newline = False


class CountReporter:
    """``done/total`` progress of predictions and evaluations, on stderr."""

    def __init__(self, what: str, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.what, self.quiet = what, quiet
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started, self.last_time = time.monotonic(), -math.inf

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if done < total and now - self.last_time < (0.2 if self.terminal else 10.0):
            return
        self.last_time = now
        spent = now - self.started
        left = spent / done * (total - done) if done else None
        line = f"{self.what} {done}/{total} | {format_duration(left)} left"
        if self.terminal:
            self.stream.write("\r\033[K" + line + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


@contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """An Event set by SIGINT or SIGTERM while the block runs (handlers restored after).

    The first signal asks the work to stop cleanly at its next step; a second SIGINT
    interrupts at once.
    """
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel  # signals can only be handled in the main thread
        return
    previous = {}

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping after the current step...\n")
        sys.stderr.flush()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield cancel
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
