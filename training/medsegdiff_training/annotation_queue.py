"""The annotation queue: a dataset's images, their order, and what the annotator has done.

The napari queue widget and ``medsegdiff simulate-annotation`` drive this one object, so
the order, the resume rule and the provenance of every accepted image are the same
whichever way a queue is worked through. No torch here: the queue only keeps state.

The state lives beside the corrections store, append-only like it::

    <store>/queues/<queue id>.jsonl     one JSON event per line

Events: ``created`` (the items), ``visited`` (the annotator reached an item),
``scored`` (a model's uncertainty score for an item), ``accepted`` (the item's
correction went into the store as entry ``entry_id``), ``skipped``, ``order`` (the
annotator changed the order) and ``model`` (the queue switched model version). Replaying
them gives the state, so a crash loses at most the image being edited, and reopening the
same folder (or the same list of files, or the same volume) resumes where the annotator
stopped. A torn last line (a writer killed mid-line) is skipped. A queue of files skips the
pending ones whose file is gone (deleted or renamed: a renamed one joins again under its new
name) and lists them in ``vanished``, so resuming never lands on a missing file; this is not
recorded, so a file that comes back is pending again.

Examples
--------
>>> import tempfile
>>> store = tempfile.mkdtemp()
>>> queue = AnnotationQueue(store, ["a.png", "b.png", "c.png"], key="files:demo")
>>> queue.current
'a.png'
>>> queue.accept("a.png", entry_id="e1", seconds=12.0, fraction_changed=0.02)
'b.png'
>>> AnnotationQueue(store, ["a.png", "b.png", "c.png"], key="files:demo").counts()
{'accepted': 1, 'skipped': 0, 'remaining': 2}
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import append_line
from .data.io import IMAGE_SUFFIXES, file_suffix
from .errors import CorrectionsError, DatasetError

QUEUES = "queues"
ORDERS = ("file", "uncertain")
PENDING, ACCEPTED, SKIPPED = "pending", "accepted", "skipped"
# An object smaller than this share of the image counts as this big in the score, so that a
# few stray uncertain pixels on an empty prediction do not outrank every real object.
MIN_OBJECT_SHARE = 0.01


def uncertainty_score(probabilities: np.ndarray, uncertainty: np.ndarray | None) -> float:
    """How much an ensemble disagrees about an image's object, per unit of object.

    ``sum(uncertainty) / max(sum(foreground probability), 1 % of the pixels)``: the
    members' per-pixel standard deviation (the Segmenter's uncertainty map) summed over
    the image, divided by the predicted object's soft area (``1 - p(background)`` for a
    K-class model). It estimates the share of the object's pixels that the members
    dispute, which is what an annotator has to fix, independent of the object's size (a
    large object has a long boundary, but not a larger share of it in doubt). 0 when all
    members agree; a single sample (no uncertainty map) scores 0.

    Examples
    --------
    >>> p = np.zeros((10, 10)); p[2:6, 2:6] = 1.0
    >>> u = np.zeros((10, 10)); u[2:6, 2] = 0.5
    >>> uncertainty_score(p, u)
    0.125
    """
    if uncertainty is None:
        return 0.0
    probabilities = np.asarray(probabilities, dtype=np.float64)
    foreground = probabilities if probabilities.ndim == 2 else 1.0 - probabilities[0]
    area = max(float(foreground.sum()), MIN_OBJECT_SHARE * foreground.size, 1.0)
    return float(np.asarray(uncertainty, dtype=np.float64).sum() / area)


def switch_to_child(before: float | None, after: float | None) -> bool:
    """The queue's rule: switch when the child's held-out Dice beats its parent's.

    With no held-out corrections yet (fewer than 3), there is nothing to compare: stay.
    """
    return before is not None and after is not None and after > before


def folder_items(folder: str | os.PathLike[str]) -> list[str]:
    """The image files of ``folder`` that the readers take, sorted by name (absolute paths)."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"The folder {root} does not exist (or is not a folder).")
    items = [
        str(path.resolve())
        for path in sorted(root.iterdir())
        if path.is_file() and not path.name.startswith(".") and file_suffix(path) in IMAGE_SUFFIXES
    ]
    if not items:
        raise DatasetError(
            f"{root} holds no image the queue can read ({', '.join(IMAGE_SUFFIXES)}); choose another folder."
        )
    return items


def volume_items(name: str, slices: int) -> list[str]:
    """Item names for the slices of a volume: ``name[0]``, ``name[1]``, …"""
    return [f"{name}[{z}]" for z in range(int(slices))]


@dataclass
class ItemState:
    """What the queue knows about one item."""

    item: str
    status: str = PENDING
    score: float | None = None
    scored_by: str | None = None
    entry_id: str | None = None


class AnnotationQueue:
    """A queue of images to annotate, persisted as an event log beside a corrections store.

    ``items`` are file paths (or volume slice names); ``key`` says what the queue is of
    (a folder, a list of files, a volume) and names its log, so the same ``key`` resumes
    the same queue. Items added since (new files in the folder) join at the end. With
    ``files``, items are file paths, and pending ones whose file is gone are skipped and
    listed in :attr:`vanished` (:meth:`vanished_message` says so).
    """

    def __init__(
        self,
        store_root: str | os.PathLike[str],
        items: Sequence[str],
        *,
        key: str,
        order: str = "file",
        files: bool = False,
    ) -> None:
        if not items:
            raise DatasetError("An annotation queue needs at least one image.")
        if order not in ORDERS:
            raise DatasetError(f"Unknown queue order {order!r}; use one of {', '.join(ORDERS)}.")
        self.key = key
        self.queue_id = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.path = Path(store_root) / QUEUES / f"{self.queue_id}.jsonl"
        self.states: dict[str, ItemState] = {}
        self.order = order
        self.model_version: str | None = None
        self.damaged_lines: list[int] = []
        self._finished: list[str] = []  # accepted or skipped, in the order they were finished
        self._last_visited: str | None = None
        self._back = 0  # how far "previous" has walked back through the finished items
        known = self._replay()
        new_items = [item for item in items if item not in self.states]
        for item in new_items:
            self.states[item] = ItemState(item)
        if not known:
            self.order = order
            self._log({"event": "created", "key": key, "items": list(items), "order": order})
        else:
            if new_items:
                self._log({"event": "created", "key": key, "items": new_items, "order": self.order})
            self.set_order(order)  # the order asked for now wins over the one the queue had
        self.vanished = [i for i, state in self.states.items() if files and state.status == PENDING]
        self.vanished = [item for item in self.vanished if not Path(item).is_file()]
        for item in self.vanished:
            self.states[item].status = SKIPPED  # in memory only: a file that comes back is pending again
        self.current: str | None = self._resume_item()
        if self.current is not None and self.current != self._last_visited:
            self.visit(self.current)

    # -- constructors for the three kinds of queue -----------------------------------------
    @classmethod
    def for_folder(
        cls, folder: str | os.PathLike[str], store_root: str | os.PathLike[str], order: str = "file"
    ) -> AnnotationQueue:
        """A queue over the images of ``folder``; reopening the same folder resumes it."""
        items = folder_items(folder)
        return cls(store_root, items, key=f"folder:{Path(folder).resolve()}", order=order, files=True)

    @classmethod
    def for_files(
        cls, files: Sequence[str | os.PathLike[str]], store_root: str | os.PathLike[str], order: str = "file"
    ) -> AnnotationQueue:
        """A queue over a list of files (kept in the given order); those that are gone are
        skipped and listed in ``vanished``, all of them gone is a :class:`DatasetError`."""
        items = [str(Path(f).resolve()) for f in files]
        if items and not any(Path(item).is_file() for item in items):
            raise DatasetError(f"{items[0]} does not exist; the queue takes existing image files.")
        return cls(store_root, items, key="files:" + "\n".join(sorted(items)), order=order, files=True)

    @classmethod
    def for_volume(
        cls, name: str, slices: int, store_root: str | os.PathLike[str], order: str = "file"
    ) -> AnnotationQueue:
        """A queue over the slices of an opened volume called ``name``."""
        return cls(store_root, volume_items(name, slices), key=f"volume:{name}:{slices}", order=order)

    # -- the state ---------------------------------------------------------------------------
    @property
    def items(self) -> list[str]:
        return list(self.states)

    def counts(self) -> dict[str, int]:
        """How many items are accepted, skipped and remaining (pending)."""
        statuses = [state.status for state in self.states.values()]
        return {
            "accepted": statuses.count(ACCEPTED),
            "skipped": statuses.count(SKIPPED),
            "remaining": statuses.count(PENDING),
        }

    def position(self, item: str | None = None) -> int:
        """The 1-based place of ``item`` (default: the current one) in file order; 0 if none."""
        item = self.current if item is None else item
        return self.items.index(item) + 1 if item in self.states else 0

    def vanished_message(self) -> str | None:
        """One line naming the files of the queue that are gone and skipped; None when none are."""
        if not self.vanished:
            return None
        shown = ", ".join(Path(item).name for item in self.vanished[:5])
        more = f" and {len(self.vanished) - 5} more" if len(self.vanished) > 5 else ""
        return (
            f"{len(self.vanished)} image(s) of the queue are gone (deleted or renamed) and are skipped: "
            f"{shown}{more}"
        )

    def score(self, item: str) -> float | None:
        return self.states[item].score

    def ordered(self) -> list[str]:
        """Every item in the queue's order: file order, or most uncertain first.

        Most uncertain first sorts by the latest score; items not scored yet follow, in
        file order, so an image never waits behind a score nobody has computed.
        """
        items = self.items
        if self.order == "file":
            return items
        scored = [item for item in items if self.states[item].score is not None]
        unscored = [item for item in items if self.states[item].score is None]
        scored.sort(key=lambda item: -float(self.states[item].score or 0.0))
        return scored + unscored

    def pending(self) -> list[str]:
        """The items still to do, in the queue's order."""
        return [item for item in self.ordered() if self.states[item].status == PENDING]

    def next_pending(self, exclude: str | None = None) -> str | None:
        """The first pending item in order (not ``exclude``); ``None`` when all are done."""
        return next((item for item in self.pending() if item != exclude), None)

    def upcoming(self, count: int) -> list[str]:
        """The current item and the next ``count - 1`` pending ones: what to segment ahead."""
        ahead = [self.current] if self.current is not None else []
        ahead += [item for item in self.pending() if item not in ahead]
        return ahead[:count]

    # -- what the annotator does -------------------------------------------------------------
    def visit(self, item: str) -> None:
        """Make ``item`` the current one (recorded, so reopening resumes here)."""
        self._require(item)
        self.current = item
        self._last_visited = item
        self._log({"event": "visited", "item": item})

    def record_score(self, item: str, score: float, model_version: str | None) -> None:
        """Record a model's uncertainty score for ``item`` (see :func:`uncertainty_score`)."""
        self._require(item)
        self._apply({"event": "scored", "item": item, "score": float(score), "model_version": model_version})
        self._log({"event": "scored", "item": item, "score": float(score), "model_version": model_version})

    def accept(self, item: str, *, entry_id: str | None = None, **provenance: Any) -> str | None:
        """``item`` is done (its correction is store entry ``entry_id``); returns the next item."""
        self._require(item)
        event = {"event": "accepted", "item": item, "entry_id": entry_id, **provenance}
        self._apply(event)
        self._log(event)
        return self._advance(item)

    def skip(self, item: str) -> str | None:
        """Leave ``item`` without a correction; returns the next item."""
        self._require(item)
        self._apply({"event": "skipped", "item": item})
        self._log({"event": "skipped", "item": item})
        return self._advance(item)

    def previous(self) -> str | None:
        """Go back to the item finished before the current one (again for the one before).

        Returns ``None`` (and stays) when nothing was finished before.
        """
        if self._back >= len(self._finished):
            return None
        item = self._finished[-1 - self._back]
        self._back += 1
        self.visit(item)
        return item

    def set_order(self, order: str) -> None:
        """Switch between file order and most uncertain first (the current item stays)."""
        if order not in ORDERS:
            raise DatasetError(f"Unknown queue order {order!r}; use one of {', '.join(ORDERS)}.")
        if order != self.order:
            self.order = order
            self._log({"event": "order", "order": order})

    def set_model(self, model_version: str, reason: str = "") -> None:
        """Record that the queue now pre-segments with ``model_version``."""
        self.model_version = model_version
        self._log({"event": "model", "model_version": model_version, "reason": reason})

    def provenance(
        self, item: str, seconds: float | None, fraction_changed: float | None, **extra: Any
    ) -> dict[str, Any]:
        """What a store entry records about the queue it came from (its ``extra["queue"]``).

        The queue, the item's position in file order, the order in use, the seconds the
        annotator spent on the image (``None`` when nobody did: a simulation), the fraction
        of pixels changed from the pre-segmentation and the item's uncertainty score.
        """
        return {
            "queue_id": self.queue_id,
            "queue_key": self.key,
            "item": item,
            "position": self.position(item),
            "order": self.order,
            "seconds": None if seconds is None else round(float(seconds), 3),
            "fraction_changed_from_presegmentation": fraction_changed,
            "uncertainty_score": self.states[item].score if item in self.states else None,
            **extra,
        }

    def events(self) -> list[dict[str, Any]]:
        """Every event of the log, oldest first (damaged lines left out)."""
        return [event for _, event in self._read_log()]

    # -- internals ----------------------------------------------------------------------------
    def _require(self, item: str) -> None:
        if item not in self.states:
            raise DatasetError(f"{item} is not in this queue.")

    def _advance(self, finished: str) -> str | None:
        self._back = 0
        following = self.next_pending(exclude=finished)
        if following is None:
            self.current = None
        else:
            self.visit(following)
        return following

    def _resume_item(self) -> str | None:
        last = self._last_visited
        if last is not None and last in self.states and self.states[last].status == PENDING:
            return last
        return self.next_pending()

    def _apply(self, event: dict[str, Any]) -> None:
        kind, item = event.get("event"), event.get("item")
        if kind == "created":
            for name in event.get("items") or []:
                if isinstance(name, str):
                    self.states.setdefault(name, ItemState(name))
            if event.get("order") in ORDERS:
                self.order = str(event["order"])
            return
        if kind == "order" and event.get("order") in ORDERS:
            self.order = str(event["order"])
            return
        if kind == "model":
            self.model_version = event.get("model_version")
            return
        if not isinstance(item, str) or item not in self.states:
            return
        state = self.states[item]
        if kind == "visited":
            self._last_visited = item
        elif kind == "scored" and isinstance(event.get("score"), (int, float)):
            state.score, state.scored_by = float(event["score"]), event.get("model_version")
        elif kind in ("accepted", "skipped"):
            state.status = ACCEPTED if kind == "accepted" else SKIPPED
            if kind == "accepted":
                state.entry_id = event.get("entry_id")
            if item in self._finished:
                self._finished.remove(item)
            self._finished.append(item)

    def _replay(self) -> bool:
        lines = self._read_log()
        for _, event in lines:
            self._apply(event)
        return bool(lines)

    def _read_log(self) -> list[tuple[int, dict[str, Any]]]:
        if not self.path.is_file():
            return []
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            raise CorrectionsError(
                f"Cannot read the queue state {self.path}: {error.strerror or error}"
            ) from None
        events, damaged = [], []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                damaged.append(number)  # a torn line from a killed writer: that event is lost alone
                continue
            if isinstance(event, dict):
                events.append((number, event))
            else:
                damaged.append(number)
        self.damaged_lines = damaged
        return events

    def _log(self, event: dict[str, Any]) -> None:
        event = {**event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        line = json.dumps(event, sort_keys=True, default=str).encode() + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.path, line)
        except OSError as error:
            raise CorrectionsError(
                f"Could not record the queue's state in {self.path} ({error.strerror or error}); "
                "free some disk space or choose another corrections folder."
            ) from None
