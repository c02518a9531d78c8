"""The annotation session: accept/skip, "fine-tune every N", keep or switch on held-out Dice.

The runner here is a process-like one whose fine-tunes end when the test says so (as the
widget's process does, while the annotator goes on); the in-process runner with real
fine-tunes is exercised by test_annotation_simulation.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.annotation_queue import AnnotationQueue
from medsegdiff_training.annotation_session import SESSION_FINETUNE, AnnotationSession, FinetuneRecord
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.finetune_events import (
    FinetuneCancelled,
    FinetuneDone,
    FinetuneEvent,
    FinetuneFailed,
    FinetuneProgress,
)
from medsegdiff_training.finetune_options import FinetuneOptions

ITEMS = [f"img{index}.png" for index in range(6)]


class LaterRunner:
    """Starts nothing real: keeps each request and its ``report`` until the test ends it."""

    def __init__(self) -> None:
        self.started: list[tuple[FinetuneOptions, Callable[[FinetuneEvent], None]]] = []
        self.running = False

    def start(self, options: FinetuneOptions, report: Callable[[FinetuneEvent], None]) -> None:
        self.started.append((options, report))
        self.running = True

    def is_running(self) -> bool:
        return self.running

    def end(self, event: FinetuneEvent) -> None:
        self.running = False
        self.started[-1][1](event)


class Screen:
    """Writes down what the session tells it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def model_switched(self, version: str, reason: str) -> None:
        self.seen.append(("switched", version))

    def finetune_started(self, options: FinetuneOptions, accepted: int) -> None:
        self.seen.append(("started", accepted))

    def finetune_progress(self, event: FinetuneProgress, accepted: int) -> None:
        self.seen.append(("progress", event.step))

    def finetune_ended(self, record: FinetuneRecord) -> None:
        self.seen.append(("ended", record))

    def finetune_failed(self, message: str) -> None:
        self.seen.append(("failed", message))


@pytest.fixture
def session(tmp_path: Path) -> AnnotationSession:
    store = CorrectionsStore(tmp_path / "store")
    queue = AnnotationQueue(store.root, ITEMS, key="files:session-test")
    queue.set_model("v1", "start")
    return AnnotationSession(queue, store, LaterRunner(), Screen(), finetune_every=2)


def accept_current(session: AnnotationSession, seconds: float | None = 3.0) -> str | None:
    item = session.queue.current
    labels = np.zeros((16, 16), np.uint8)
    labels[4:9, 4:9] = 1

    def write(provenance: dict):
        return session.store.add(np.ones((16, 16)), labels, labels, extra={"queue": provenance})

    _, following = session.accept(
        item, write, seconds=seconds, fraction_changed=0.0, model_version=session.model_version
    )
    return following


def done(version: str, before: float | None, after: float | None) -> FinetuneDone:
    return FinetuneDone(
        version=version, parent="v1", path="", steps=5, validation_dice_before=before,
        validation_dice_after=after, adaptation={}, seconds=1.0, cpu_seconds=1.0,
    )  # fmt: skip


def test_an_accepted_image_is_stored_with_the_queues_provenance_and_the_queue_moves_on(session):
    following = accept_current(session, seconds=4.56789)
    assert following == ITEMS[1] and session.queue.current == ITEMS[1]
    entry = session.store.entries()[0]
    provenance = entry.manifest["extra"]["queue"]
    assert provenance["item"] == ITEMS[0] and provenance["seconds"] == 4.568
    assert session.queue.states[ITEMS[0]].entry_id == entry.id
    accepted = [e for e in session.queue.events() if e["event"] == "accepted"][0]
    assert accepted["seconds"] == 4.568 and accepted["model_version"] == "v1"


def test_a_failed_write_records_nothing_and_keeps_the_image(session):
    def fail(_: dict):
        raise OSError("disk full")

    with pytest.raises(OSError):
        session.accept(ITEMS[0], fail, seconds=1.0, fraction_changed=0.0, model_version="v1")
    assert session.queue.current == ITEMS[0] and session.queue.counts()["accepted"] == 0


def test_every_n_accepted_starts_a_finetune_of_the_current_model_on_the_store(session):
    runner: LaterRunner = session.runner
    session.finetune = SESSION_FINETUNE.replace(minutes=1.5, device="cpu")
    accept_current(session)
    assert runner.started == []
    accept_current(session)
    ((options, _),) = runner.started
    assert options.parent == "v1" and options.store == session.store.root
    assert options.config.minutes == 1.5 and options.config.steps is None and options.config.device == "cpu"
    # the queue's fine-tunes keep their best held-out weights and learn the objects' crops (issue 29)
    assert options.config.keep_best and options.object_crops and options.config.lr_schedule == "constant"
    assert options.config.best_margin == 0.005  # a better held-out score beats the best by half a point
    assert session.screen.seen == [("started", 2)]
    # skipped images do not count; a fine-tune still running is not started twice
    session.skip(session.queue.current)
    accept_current(session)
    accept_current(session)
    assert len(runner.started) == 1


def test_a_child_that_beats_its_parent_is_used_from_now_on(session):
    runner: LaterRunner = session.runner
    accept_current(session)
    accept_current(session)
    runner.started[-1][1](FinetuneProgress(1, 10, 0.5, None, 0.1, 1.0))
    runner.end(done("v2", 0.5, 0.75))
    assert session.model_version == "v2"
    model_events = [e for e in session.queue.events() if e["event"] == "model"]
    assert model_events[-1]["model_version"] == "v2"
    assert model_events[-1]["reason"] == "fine-tuned on 2 corrections, held-out Dice 0.500 → 0.750"
    record = session.records[-1]
    assert record.switched and record.to_dict()["after_accepted"] == 2
    assert session.screen.seen[1:] == [("progress", 1), ("switched", "v2"), ("ended", record)]
    # the next fine-tune starts from the child
    accept_current(session)
    accept_current(session)
    assert runner.started[-1][0].parent == "v2"


@pytest.mark.parametrize(("before", "after"), [(0.75, 0.5), (0.5, 0.5), (None, None)])
def test_a_child_that_does_not_beat_its_parent_is_kept_aside(session, before, after):
    accept_current(session)
    accept_current(session)
    session.runner.end(done("v2", before, after))
    assert session.model_version == "v1" and not session.records[-1].switched
    assert ("switched", "v2") not in session.screen.seen


def test_a_failed_or_cancelled_finetune_keeps_the_model_and_says_so(session):
    runner: LaterRunner = session.runner
    accept_current(session)
    accept_current(session)
    runner.end(FinetuneFailed("The parent's checkpoint is damaged."))
    assert session.model_version == "v1"
    assert session.screen.seen[-1] == ("failed", "The parent's checkpoint is damaged.")
    accept_current(session)
    accept_current(session)
    runner.end(FinetuneCancelled(steps=3, run_dir="runs/ft"))
    assert session.model_version == "v1" and session.records[-1].version is None


def test_the_last_image_starts_a_finetune_only_when_asked(tmp_path):
    for after_last, expected in ((True, 1), (False, 0)):
        store = CorrectionsStore(tmp_path / f"store-{after_last}")
        queue = AnnotationQueue(store.root, ITEMS[:2], key="files:last")
        queue.set_model("v1")
        session = AnnotationSession(
            queue, store, LaterRunner(), finetune_every=2, finetune_after_last=after_last
        )
        accept_current(session)
        assert accept_current(session) is None  # the queue is done
        assert len(session.runner.started) == expected


def test_no_finetune_without_a_cadence(session):
    session.finetune_every = 0
    accept_current(session)
    accept_current(session)
    assert session.runner.started == []
