"""An annotation session: a queue worked through, image after image, with fine-tunes that keep up.

One object holds the loop that the napari queue widget and ``medsegdiff simulate-annotation``
(and so ``benchmarks/bench_annotation_loop.py``) both run: accept or skip the current image
(each accepted correction written to the store with the queue's provenance), every
``finetune_every`` accepted images a fine-tune of the current model on the store, and
keep-or-switch when it ends: the queue moves to the child only when its held-out Dice beats
its parent's (:func:`~.annotation_queue.switch_to_child`).

The session holds no image and no widget. Its two partners do the rest:

- a **runner** starts the fine-tunes: the widget's runs a ``medsegdiff finetune`` process
  (the annotator goes on meanwhile; its events arrive later), :class:`InProcessRunner`
  runs :func:`~.finetune.finetune` to its end before returning (the simulator's);
- a **screen** hears what happened (:class:`SessionScreen`): the widget shows it and
  re-segments with a new model, the simulator swaps its Segmenter and keeps the records.

No torch here; the in-process runner imports the trainer when it first runs.

Examples
--------
>>> import tempfile
>>> from medsegdiff_training.annotation_queue import AnnotationQueue
>>> from medsegdiff_training.corrections import CorrectionsStore
>>> store = CorrectionsStore(tempfile.mkdtemp())
>>> queue = AnnotationQueue(store.root, ["a.png", "b.png"], key="files:demo")
>>> queue.set_model("v1")
>>> session = AnnotationSession(queue, store, InProcessRunner(), finetune_every=0)
>>> labels = np.zeros((8, 8), np.uint8); labels[2:5, 2:5] = 1
>>> entry, following = session.accept(
...     "a.png", lambda provenance: store.add(np.ones((8, 8)), labels, extra={"queue": provenance}),
...     seconds=4.2, fraction_changed=0.1, model_version="v1")
>>> following, entry.manifest["extra"]["queue"]["seconds"]
('b.png', 4.2)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np  # noqa: F401 - the example's

from .annotation_queue import AnnotationQueue, switch_to_child
from .corrections import CorrectionEntry, CorrectionsStore
from .finetune_events import (
    FinetuneCancelled,
    FinetuneDone,
    FinetuneEvent,
    FinetuneFailed,
    FinetuneProgress,
    end_event,
)
from .finetune_options import FinetuneOptions

if TYPE_CHECKING:
    from .registry import ModelRegistry
    from .trainer import CancelToken

# What the queue widget asks of each fine-tune unless told otherwise: 3 minutes, no step cap.
SESSION_FINETUNE = FinetuneOptions().replace(steps=None, minutes=3.0)


@dataclass(frozen=True)
class FinetuneRecord:
    """One fine-tune of a session: when, from what, what it made, and whether the queue switched.

    ``version`` is ``None`` when the fine-tune was cancelled.
    """

    after_accepted: int
    parent: str
    version: str | None
    steps: int
    seconds: float | None
    cpu_seconds: float | None
    validation_dice_before: float | None
    validation_dice_after: float | None
    switched: bool
    best_step: int | None = None  # the step whose weights the child holds (its best held-out score)
    stopped_early: bool = False

    def scores(self) -> str:
        """ "0.612 → 0.701 (best at step 400)", or why there are none."""
        before, after = self.validation_dice_before, self.validation_dice_after
        if before is None or after is None:
            return "no held-out corrections yet"
        return f"{before:.3f} → {after:.3f}" + (
            "" if self.best_step is None else f" (best at step {self.best_step})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_accepted": self.after_accepted,
            "parent": self.parent,
            "version": self.version,
            "steps": self.steps,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,  # every thread's CPU time
            "validation_dice_before": self.validation_dice_before,
            "validation_dice_after": self.validation_dice_after,
            "switched": self.switched,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
        }


class SessionScreen(Protocol):
    """What a session tells the one who works through it (the widget, the simulator)."""

    def model_switched(self, version: str, reason: str) -> None:
        """The queue pre-segments with ``version`` from now on (the queue has recorded it)."""

    def finetune_started(self, options: FinetuneOptions, accepted: int) -> None:
        """A fine-tune of ``options.parent`` on ``accepted`` corrections has begun."""

    def finetune_progress(self, event: FinetuneProgress, accepted: int) -> None:
        """A step of the running fine-tune."""

    def finetune_ended(self, record: FinetuneRecord) -> None:
        """A fine-tune made a version (kept or switched to) or was cancelled (``version`` None)."""

    def finetune_failed(self, message: str) -> None:
        """A fine-tune stopped on an error; the queue keeps its model."""


class FinetuneRunner(Protocol):
    """Runs a session's fine-tunes and hands their events to ``report`` as they come."""

    def start(self, options: FinetuneOptions, report: Callable[[FinetuneEvent], None]) -> None:
        """Start fine-tuning ``options`` (a runner in the same process may finish first)."""

    def is_running(self) -> bool:
        """Whether a fine-tune it started has not ended yet."""


class InProcessRunner:
    """Runs each fine-tune in this process, to its end, before :meth:`start` returns.

    Errors propagate to the caller (a simulation stops on them); ``cancel`` stops a
    fine-tune as it stops :func:`~.finetune.finetune`.
    """

    def __init__(self, registry: ModelRegistry | None = None, cancel: CancelToken = None) -> None:
        self.registry, self.cancel = registry, cancel

    def start(self, options: FinetuneOptions, report: Callable[[FinetuneEvent], None]) -> None:
        from .finetune import finetune

        started, cpu_started = time.perf_counter(), time.process_time()
        result = finetune(
            options,
            registry=self.registry,
            progress=lambda progress: report(FinetuneProgress.of(progress)),
            cancel=self.cancel,
        )
        report(end_event(result, time.perf_counter() - started, time.process_time() - cpu_started))

    def is_running(self) -> bool:
        return False  # start() returns only once the fine-tune has ended


class AnnotationSession:
    """The annotation loop over ``queue``, its corrections in ``store``, fine-tuned by ``runner``.

    ``finetune_every`` accepted images (0: never) start a fine-tune of the queue's current
    model on the store, unless one is still running; ``finetune`` is its template (budget,
    device, recipe: the parent and the store are filled in). With ``finetune_after_last``
    off, the last image of the queue starts none (a simulation ends there; an annotator may
    go on with another queue). Both settings may change between images.
    """

    def __init__(
        self,
        queue: AnnotationQueue,
        store: CorrectionsStore,
        runner: FinetuneRunner,
        screen: SessionScreen | None = None,
        *,
        finetune_every: int = 0,
        finetune: FinetuneOptions = SESSION_FINETUNE,
        finetune_after_last: bool = True,
    ) -> None:
        self.queue, self.store, self.runner, self.screen = queue, store, runner, screen
        self.finetune_every = finetune_every
        self.finetune = finetune
        self.finetune_after_last = finetune_after_last
        self.records: list[FinetuneRecord] = []

    @property
    def model_version(self) -> str | None:
        """The version that pre-segments the queue's images now."""
        return self.queue.model_version

    def use_model(self, version: str, reason: str) -> None:
        """Pre-segment with ``version`` from now on (recorded in the queue once)."""
        if self.queue.model_version != version:
            self.queue.set_model(version, reason)

    # -- what the annotator does -----------------------------------------------------------
    def accept(
        self,
        item: str,
        write: Callable[[dict[str, Any]], CorrectionEntry],
        *,
        seconds: float | None,
        fraction_changed: float | None,
        model_version: str | None,
        **provenance: Any,
    ) -> tuple[CorrectionEntry, str | None]:
        """Accept ``item``: ``write(queue_provenance)`` stores its correction, the queue moves on.

        ``seconds`` is the annotator's time on the image (``None`` when nobody annotated:
        a simulation), ``fraction_changed`` the share of pixels changed from the
        pre-segmentation, ``model_version`` the version that made it; ``provenance`` goes
        into the entry and the queue's log too. Then a fine-tune starts if one is due.
        Returns the entry and the next item (``None``: the queue is done). If ``write``
        raises, nothing is recorded and the item stays current.
        """
        seconds = None if seconds is None else round(float(seconds), 3)
        entry = write(self.queue.provenance(item, seconds, fraction_changed, **provenance))
        following = self.queue.accept(
            item,
            entry_id=entry.id,
            seconds=seconds,
            fraction_changed=fraction_changed,
            model_version=model_version,
            **provenance,
        )
        self.maybe_finetune()
        return entry, following

    def skip(self, item: str) -> str | None:
        """Leave ``item`` without a correction; returns the next item."""
        return self.queue.skip(item)

    # -- fine-tuning that keeps up ----------------------------------------------------------
    def finetune_due(self) -> bool:
        """Whether the accepted count has just reached a multiple of ``finetune_every``."""
        accepted = self.queue.counts()["accepted"]
        return bool(
            self.finetune_every > 0
            and self.model_version
            and accepted > 0
            and accepted % self.finetune_every == 0
            and not self.runner.is_running()
            and (self.finetune_after_last or self.queue.current is not None)
        )

    def maybe_finetune(self) -> bool:
        """Start a fine-tune of the current model on the store if one is due; whether it did."""
        if not self.finetune_due():
            return False
        accepted = self.queue.counts()["accepted"]
        options = self.finetune.replace(parent=self.model_version, store=self.store.root)
        if self.screen is not None:
            self.screen.finetune_started(options, accepted)
        self.runner.start(options, lambda event: self.on_event(event, accepted))
        return True

    def on_event(self, event: FinetuneEvent, accepted: int) -> None:
        """Route an event of the fine-tune started after ``accepted`` corrections."""
        if isinstance(event, FinetuneProgress):
            if self.screen is not None:
                self.screen.finetune_progress(event, accepted)
        elif isinstance(event, (FinetuneDone, FinetuneCancelled)):
            self.finetuned(event, accepted)
        elif isinstance(event, FinetuneFailed) and self.screen is not None:
            self.screen.finetune_failed(event.message)

    def finetuned(self, event: FinetuneDone | FinetuneCancelled, accepted: int) -> FinetuneRecord:
        """Keep or switch: a child that beats its parent on held-out corrections is used from now on."""
        if isinstance(event, FinetuneDone):
            before, after = event.validation_dice_before, event.validation_dice_after
            record = FinetuneRecord(
                accepted, event.parent, event.version, event.steps, event.seconds, event.cpu_seconds,
                before, after, switch_to_child(before, after), event.best_step, event.stopped_early,
            )  # fmt: skip
        else:
            parent = str(self.model_version)
            record = FinetuneRecord(accepted, parent, None, event.steps, None, None, None, None, False)
        self.records.append(record)
        if record.switched and record.version is not None:
            reason = f"fine-tuned on {accepted} corrections, held-out Dice {record.scores()}"
            self.queue.set_model(record.version, reason)
            if self.screen is not None:
                self.screen.model_switched(record.version, reason)
        if self.screen is not None:
            self.screen.finetune_ended(record)
        return record
