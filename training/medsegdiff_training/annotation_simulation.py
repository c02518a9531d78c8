"""Replaying an annotation queue with expert masks standing in for the annotator.

``medsegdiff simulate-annotation`` and ``benchmarks/bench_annotation_loop.py`` come here.
It drives the same :class:`~medsegdiff_training.annotation_queue.AnnotationQueue`,
:class:`~medsegdiff_training.corrections.CorrectionsStore` and
:func:`~medsegdiff_training.finetune.finetune` as the napari queue widget: each image is
pre-segmented by the queue's current model, the expert mask is "accepted" as the
correction (with the same provenance the widget records), and every ``finetune_every``
accepted images a fine-tune of the current version on the store runs; the queue switches
to the new version when its held-out Dice beats its parent's, as the widget does.

One difference from a person, said plainly: here a fine-tune runs to its end before the
next image, whereas in napari the annotator goes on while it trains (a 3-minute fine-tune
is about the time a person spends on a handful of images), so the switch comes a few
images later there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .annotation_queue import AnnotationQueue, uncertainty_score
from .annotation_session import SESSION_FINETUNE, AnnotationSession, FinetuneRecord, InProcessRunner
from .corrections import CorrectionEntry, CorrectionsStore
from .data.io import read_array, read_mask
from .data.pairs import Pair
from .errors import DatasetError
from .finetune_events import FinetuneProgress
from .finetune_options import FinetuneOptions
from .inference import SamplingSettings, SegmentationResult, Segmenter
from .metrics import score
from .preprocess import check_label_map
from .registry import ModelRegistry
from .trainer import CancelToken, is_cancelled


@dataclass
class SimulationResult:
    """Per-image records, per-fine-tune records, and whether it was cancelled."""

    images: list[dict[str, Any]] = field(default_factory=list)
    finetunes: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    def blocks(self, size: int = 10) -> list[dict[str, Any]]:
        """Means of pre-segmentation Dice and fraction of pixels changed per block of images."""
        rows = []
        for start in range(0, len(self.images), size):
            block = self.images[start : start + size]
            rows.append(
                {
                    "images": f"{start + 1}-{start + len(block)}",
                    "mean_dice": float(np.mean([r["dice"] for r in block])),
                    "mean_fraction_changed": float(np.mean([r["fraction_changed"] for r in block])),
                    "model_versions": sorted({str(r["model_version"]) for r in block}),
                }
            )
        return rows

    def to_dict(self, block_size: int = 10) -> dict[str, Any]:
        return {
            "images": self.images,
            "finetunes": self.finetunes,
            "blocks": self.blocks(block_size),
            "cancelled": self.cancelled,
        }


def expert_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """The expert's label map as the model sees it: a binary model takes every label as the object."""
    mask = np.asarray(mask)
    if num_classes == 2:
        return (mask > 0).astype(np.uint8)
    return check_label_map(mask, num_classes).astype(np.uint8)


class _ExpertScreen:
    """The simulator's side of the session: pre-segments with the session's current model,
    reads the expert's masks, and keeps a record of every image and fine-tune."""

    def __init__(
        self,
        names: dict[str, Pair],
        queue: AnnotationQueue,
        segmenter_for: Callable[[str], Segmenter],
        settings: SamplingSettings,
        on_finetune: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.names, self.queue, self.settings = names, queue, settings
        self.segmenter_for, self.on_finetune = segmenter_for, on_finetune
        self.version = str(queue.model_version)
        self.segmenter = segmenter_for(self.version)
        self.cache: dict[str, tuple[SegmentationResult, str]] = {}
        self.outcome = SimulationResult()

    def presegment(self, item: str) -> SegmentationResult:
        """``item`` segmented by the current model (once per model), its score recorded."""
        if item not in self.cache or self.cache[item][1] != self.version:
            result = self.segmenter.segment(read_array(self.names[item].image), self.settings)
            score = uncertainty_score(result.probabilities, result.uncertainty)
            self.queue.record_score(item, score, self.version)
            self.cache[item] = (result, self.version)
        return self.cache[item][0]

    def rescore_pending(self) -> None:
        """Most uncertain first needs every pending image's score by the current model."""
        for item in self.queue.pending():
            self.presegment(item)
        self.queue.visit(self.queue.next_pending() or self.queue.items[0])

    def expert(self, pair: Pair, shape: tuple[int, ...]) -> np.ndarray:
        truth = expert_labels(read_mask(pair.mask), self.segmenter.config.num_classes)
        if truth.shape != shape:
            raise DatasetError(f"The mask of {pair.name} has shape {truth.shape} but its image {shape}.")
        return truth

    def annotate(
        self, item: str, session: AnnotationSession, on_image: Callable[[dict[str, Any]], None] | None
    ) -> None:
        """The expert's turn on ``item``: the mask accepted as the correction, the image recorded."""
        pair = self.names[item]
        started = time.perf_counter()
        result = self.presegment(item)
        seconds = time.perf_counter() - started
        truth = self.expert(pair, result.labels.shape)
        changed = float(np.mean(result.labels != truth))
        record = {
            "name": pair.name,
            "position": len(self.outcome.images) + 1,
            "model_version": self.version,
            "dice": score(result.labels, truth, self.segmenter.config.num_classes)["dice"],
            "fraction_changed": changed,
            "uncertainty_score": self.queue.score(item),
        }

        def write(provenance: dict[str, Any]) -> CorrectionEntry:
            entry = session.store.add(
                read_array(pair.image), truth, result.labels, source_path=str(pair.image),
                model_version=self.version, sampler_settings=result.settings, allow_empty=True,
                extra={"queue": provenance},
            )  # fmt: skip
            self.outcome.images.append({**record, "entry_id": entry.id})
            if on_image is not None:
                on_image(self.outcome.images[-1])  # before the fine-tune this image may start
            return entry

        session.accept(
            item,
            write,
            seconds=None,  # nobody annotated: the expert's mask is the correction
            fraction_changed=changed,
            model_version=self.version,
            presegmentation_seconds=round(seconds, 3),
        )

    # -- SessionScreen ----------------------------------------------------------------------
    def model_switched(self, version: str, reason: str) -> None:
        self.version, self.segmenter = version, self.segmenter_for(version)
        if self.queue.order == "uncertain":
            self.rescore_pending()  # re-score what is left with the better model

    def finetune_ended(self, record: FinetuneRecord) -> None:
        self.outcome.finetunes.append(record.to_dict())
        if self.on_finetune is not None:
            self.on_finetune(record.to_dict())

    def finetune_started(self, options: FinetuneOptions, accepted: int) -> None:
        pass

    def finetune_progress(self, event: FinetuneProgress, accepted: int) -> None:
        pass

    def finetune_failed(self, message: str) -> None:
        pass  # the in-process runner raises instead


def simulate_annotation(
    pairs: Sequence[Pair],
    *,
    store: CorrectionsStore,
    registry: ModelRegistry,
    model: str,
    settings: SamplingSettings,
    finetune_every: int = 0,
    finetune: FinetuneOptions = SESSION_FINETUNE,
    order: str = "file",
    device: str = "auto",
    speed: Mapping[str, Any] | None = None,
    on_image: Callable[[dict[str, Any]], None] | None = None,
    on_finetune: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken = None,
) -> SimulationResult:
    """Work through ``pairs`` as an annotator would, the expert masks as the corrections.

    Returns a record per image: the pre-segmentation's Dice against the expert mask, the
    fraction of pixels the annotator had to change, the uncertainty score and the model
    version in use; and a record per fine-tune (``finetune_every`` accepted images apart,
    0 = never; ``finetune`` the template of each: budget, device, recipe). ``on_image`` /
    ``on_finetune`` see each record as it is made; ``cancel`` stops between images and
    fine-tunes. ``speed`` holds :class:`Segmenter` keywords for pre-segmenting
    (``precision``, ``channels_last``, ``cuda_graphs``, ``compile``). The loop is an
    :class:`~.annotation_session.AnnotationSession`, the one the napari queue widget runs.
    """
    if finetune_every < 0:
        raise DatasetError(f"--finetune-every must be 0 (never) or more, got {finetune_every}.")
    names = {str(Path(pair.image).resolve()): pair for pair in pairs}
    queue = AnnotationQueue.for_files(list(names), store.root, order=order)
    queue.set_model(model, "start")

    def segmenter_for(name: str) -> Segmenter:
        return Segmenter(registry.load(name, device="cpu"), device=device, **dict(speed or {}))

    screen = _ExpertScreen(names, queue, segmenter_for, settings, on_finetune)
    session = AnnotationSession(queue, store, InProcessRunner(registry, cancel), screen)
    session.finetune_every, session.finetune, session.finetune_after_last = finetune_every, finetune, False
    if order == "uncertain":  # the order needs every score: pre-segment them all first
        screen.rescore_pending()
    while queue.current is not None:
        if is_cancelled(cancel):
            screen.outcome.cancelled = True
            break
        screen.annotate(queue.current, session, on_image)
    return screen.outcome
