"""What a fine-tune reports: the JSON lines of ``medsegdiff finetune --progress-json``.

One dataclass per event, written by :meth:`FinetuneEvent.to_json` on the process's side
(the CLI) and read back by :meth:`FinetuneEvent.parse` on the other (the napari plugin);
the in-process runner of an annotation session hands the same objects over directly. A
line with the ``event`` key that is not exactly one of these -- an unknown event, a field
missing, renamed or added, a value of the wrong type -- raises
:class:`FinetuneEventError`: a plugin and a core that disagree about the contract fail
loudly instead of, say, a queue keeping its old model because ``version`` read as nothing.

A fine-tune process writes ``started``, then ``progress`` lines, then exactly one of
``done``, ``cancelled`` and ``error``. ``medsegdiff train --progress-json`` writes the same
``progress``, ``cancelled`` and ``error`` lines. No torch here.

Examples
--------
>>> line = FinetuneCancelled(steps=12, run_dir="runs/ft").to_json()
>>> line
'{"event": "cancelled", "steps": 12, "run_dir": "runs/ft"}'
>>> FinetuneEvent.parse(line)
FinetuneCancelled(steps=12, run_dir='runs/ft')
>>> try:
...     FinetuneEvent.parse('{"event": "cancelled", "step": 12, "run_dir": "runs/ft"}')
... except FinetuneEventError as error:
...     print(error)  # doctest: +ELLIPSIS
A 'cancelled' event from the fine-tune process lacks steps and has unknown step: ...
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Union

from .errors import MedSegDiffError

if TYPE_CHECKING:
    from .finetune import FinetuneResult
    from .trainer import TrainProgress

MISMATCH = "the plugin and the training core do not match; reinstall them together"


class FinetuneEventError(MedSegDiffError):
    """A line from a fine-tune process that is not one of the events this version reads."""


@dataclass(frozen=True)
class FinetuneEvent:
    """Base of the events; ``kind`` is the value of the line's ``event`` key."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        # NaN and infinities are no JSON: a diverged loss reads as null
        finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}
        return {"event": self.kind, **finite}

    def to_json(self) -> str:
        """The event as one JSON line (no newline)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @staticmethod
    def parse(line: str | bytes) -> FinetuneEvent | None:
        """The event on ``line``; ``None`` for a line that is not a JSON object with an
        ``event`` key (a library printing to stdout); :class:`FinetuneEventError` for a
        line that claims to be an event and is not one of ours."""
        try:
            document = json.loads(line)
        except ValueError:
            return None
        if not isinstance(document, dict) or "event" not in document:
            return None
        return FinetuneEvent.from_dict(document)

    @staticmethod
    def from_dict(document: dict[str, Any]) -> FinetuneEvent:
        """The event a parsed JSON object spells (see :meth:`parse`)."""
        kind = document.get("event")
        event_type = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
        if event_type is None:
            raise FinetuneEventError(f"The fine-tune process sent an unknown event {kind!r}: {MISMATCH}.")
        hints = typing.get_type_hints(event_type)
        expected = {item.name for item in dataclasses.fields(event_type)}
        given = set(document) - {"event"}
        if given != expected:
            problems = []
            if expected - given:
                problems.append("lacks " + ", ".join(sorted(expected - given)))
            if given - expected:
                problems.append("has unknown " + ", ".join(sorted(given - expected)))
            raise FinetuneEventError(
                f"A {kind!r} event from the fine-tune process {' and '.join(problems)}: {MISMATCH}."
            )
        for name in sorted(expected):
            if not _is_a(document[name], hints[name]):
                raise FinetuneEventError(
                    f"A {kind!r} event from the fine-tune process has {name}={document[name]!r}, "
                    f"not a {hints[name]}: {MISMATCH}."
                )
        return event_type(**{name: document[name] for name in expected})


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field's type (an int is a float too; a bool is neither)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_is_a(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint) or hint
    return isinstance(value, origin)


@dataclass(frozen=True)
class FinetuneStarted(FinetuneEvent):
    """The corrections are read and the parent loaded; training begins."""

    kind: ClassVar[str] = "started"
    parent: str
    store: str
    corrections: int
    plan: str  # what the child will be, e.g. "binary, grey, as the parent"


@dataclass(frozen=True)
class FinetuneProgress(FinetuneEvent):
    """A training step is done (reported every half second or so, at every new score of the
    held-out corrections, and at the last step).

    The held-out curve: ``validation_dice`` is the latest score, measured at step
    ``validation_step``; a new ``validation_step`` is a new point of the curve.
    ``best_validation_dice`` and ``best_step`` say which weights would be registered now.
    """

    kind: ClassVar[str] = "progress"
    step: int
    total_steps: int | None  # with a time budget: the trainer's estimate
    loss: float | None
    validation_dice: float | None
    elapsed_s: float
    remaining_s: float | None
    validation_step: int | None = None
    best_validation_dice: float | None = None
    best_step: int | None = None

    def held_out_summary(self) -> str:
        """The held-out curve for a status line: ``", held-out Dice 0.712 (best 0.734 at step
        400)"``; empty before its first point.

        >>> FinetuneProgress(9, None, 0.1, 0.5, 3.0, None, 8, 0.625, 4).held_out_summary()
        ', held-out Dice 0.500 (best 0.625 at step 4)'
        """
        if self.validation_dice is None:
            return ""
        best = self.best_validation_dice
        return f", held-out Dice {self.validation_dice:.3f}" + (
            "" if best is None else f" (best {best:.3f} at step {self.best_step})"
        )

    @classmethod
    def of(cls, progress: TrainProgress) -> FinetuneProgress:
        """The event of a trainer's progress report."""
        remaining = progress.remaining_s
        return cls(
            step=progress.step,
            total_steps=progress.total_steps,
            loss=progress.loss,
            validation_dice=progress.validation_dice,
            elapsed_s=round(progress.elapsed_s, 2),
            remaining_s=None if remaining is None else round(remaining, 2),
            validation_step=progress.validation_step,
            best_validation_dice=progress.best_validation_dice,
            best_step=progress.best_step,
        )


@dataclass(frozen=True)
class FinetuneDone(FinetuneEvent):
    """A new version is registered: its name, its parent, the held-out Dice before and after.

    "After" is the registered weights' score: those of step ``best_step`` (the best held-out
    score of the run), ``stopped_early`` when the run ended because it stopped improving.
    """

    kind: ClassVar[str] = "done"
    version: str
    parent: str
    path: str
    steps: int
    validation_dice_before: float | None  # None with fewer than 3 corrections (none held out)
    validation_dice_after: float | None
    adaptation: dict[str, Any]  # what the child became (Adaptation.to_dict())
    seconds: float | None  # the fine-tune's wall time, and its process's CPU time
    cpu_seconds: float | None
    best_step: int | None = None  # None: nothing held out (the last weights are registered)
    stopped_early: bool = False

    def best_summary(self) -> str:
        """Which weights were registered, for the dialog's last line; empty when nothing was
        held out.

        >>> done = FinetuneDone("v2", "default", "/m/v2", 900, 0.5, 0.7, {}, 60.0, 58.0, 400, True)
        >>> print(done.best_summary().replace("; ", ";\\n"))
        Registered the weights of step 400, its best on the held-out ones;
        it then stopped improving and ended early.
        """
        if self.best_step is None:
            return ""
        ending = "; it then stopped improving and ended early." if self.stopped_early else "."
        return f"Registered the weights of step {self.best_step}, its best on the held-out ones{ending}"


@dataclass(frozen=True)
class FinetuneCancelled(FinetuneEvent):
    """Stopped before registering anything; ``run_dir`` holds the resumable state, if any."""

    kind: ClassVar[str] = "cancelled"
    steps: int
    run_dir: str


@dataclass(frozen=True)
class FinetuneFailed(FinetuneEvent):
    """A user error (one line) ended the process; nothing was registered."""

    kind: ClassVar[str] = "error"
    message: str


EVENT_TYPES: dict[str, type[FinetuneEvent]] = {
    event_type.kind: event_type
    for event_type in (FinetuneStarted, FinetuneProgress, FinetuneDone, FinetuneCancelled, FinetuneFailed)
}
FinetuneEnd = FinetuneDone | FinetuneCancelled | FinetuneFailed


def end_event(result: FinetuneResult, seconds: float | None, cpu_seconds: float | None) -> FinetuneEnd:
    """The last event of a fine-tune that returned ``result``: done, or cancelled."""
    if result.version is None:
        return FinetuneCancelled(steps=result.steps, run_dir=str(result.run_dir))
    return FinetuneDone(
        version=result.version.name,
        parent=result.parent,
        path=str(result.version.path),
        steps=result.steps,
        validation_dice_before=result.validation_dice_before,
        validation_dice_after=result.validation_dice_after,
        adaptation={} if result.adaptation is None else result.adaptation.to_dict(),
        seconds=None if seconds is None else round(seconds, 1),
        cpu_seconds=None if cpu_seconds is None else round(cpu_seconds, 1),
        best_step=result.best_step,
        stopped_early=result.stopped_early,
    )
