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

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .annotation_queue import AnnotationQueue, switch_to_child, uncertainty_score
from .corrections import CorrectionsStore
from .data.io import read_array, read_mask
from .data.pairs import Pair
from .errors import DatasetError
from .finetune import DEFAULT_FINETUNE_CONFIG, finetune
from .inference import SamplingSettings, SegmentationResult, Segmenter
from .metrics import score
from .preprocess import check_label_map
from .registry import ModelRegistry
from .trainer import CancelToken, TrainConfig, is_cancelled


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


def simulate_annotation(
    pairs: Sequence[Pair],
    *,
    store: CorrectionsStore,
    registry: ModelRegistry,
    model: str,
    settings: SamplingSettings,
    finetune_every: int = 0,
    finetune_config: TrainConfig | None = None,
    order: str = "file",
    device: str = "auto",
    amp: bool = True,
    speed: Mapping[str, Any] | None = None,
    on_image: Callable[[dict[str, Any]], None] | None = None,
    on_finetune: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken = None,
) -> SimulationResult:
    """Work through ``pairs`` as an annotator would, the expert masks as the corrections.

    Returns a record per image: the pre-segmentation's Dice against the expert mask, the
    fraction of pixels the annotator had to change, the uncertainty score and the model
    version in use; and a record per fine-tune (``finetune_every`` accepted images apart,
    0 = never). ``on_image`` / ``on_finetune`` see each record as it is made; ``cancel``
    stops between images. ``speed`` holds :class:`Segmenter` keywords for pre-segmenting
    (``precision``, ``channels_last``, ``cuda_graphs``, ``compile``); the fine-tunes take
    theirs from ``finetune_config``.
    """
    if finetune_every < 0:
        raise DatasetError(f"--finetune-every must be 0 (never) or more, got {finetune_every}.")
    names = {str(Path(pair.image).resolve()): pair for pair in pairs}
    queue = AnnotationQueue.for_files(list(names), store.root, order=order)
    version = model

    def segmenter_for(name: str) -> Segmenter:
        return Segmenter(registry.load(name, device="cpu"), device=device, amp=amp, **dict(speed or {}))

    segmenter = segmenter_for(version)
    queue.set_model(version, "start")
    cache: dict[str, tuple[SegmentationResult, str]] = {}

    def presegment(item: str) -> SegmentationResult:
        if item not in cache or cache[item][1] != version:
            result = segmenter.segment(read_array(names[item].image), settings)
            queue.record_score(item, uncertainty_score(result.probabilities, result.uncertainty), version)
            cache[item] = (result, version)
        return cache[item][0]

    if order == "uncertain":  # the order needs every score: pre-segment them all first
        for item in queue.pending():
            presegment(item)
        queue.visit(queue.next_pending() or queue.items[0])
    outcome = SimulationResult()
    config = finetune_config or dataclasses.replace(DEFAULT_FINETUNE_CONFIG, steps=None, minutes=3.0)
    while queue.current is not None:
        if is_cancelled(cancel):
            outcome.cancelled = True
            break
        item, pair = queue.current, names[queue.current]
        started = time.perf_counter()
        result = presegment(item)
        seconds = time.perf_counter() - started
        image = read_array(pair.image)
        truth = expert_labels(read_mask(pair.mask), segmenter.config.num_classes)
        if truth.shape != result.labels.shape:
            raise DatasetError(
                f"The mask of {pair.name} has shape {truth.shape} but its image {result.labels.shape}."
            )
        changed = float(np.mean(result.labels != truth))
        entry = store.add(
            image,
            truth,
            result.labels,
            source_path=str(pair.image),
            model_version=version,
            sampler_settings=result.settings,
            allow_empty=True,
            extra={"queue": queue.provenance(item, None, changed, presegmentation_seconds=round(seconds, 3))},
        )
        record = {
            "name": pair.name,
            "position": len(outcome.images) + 1,
            "model_version": version,
            "dice": score(result.labels, truth, segmenter.config.num_classes)["dice"],
            "fraction_changed": changed,
            "uncertainty_score": queue.score(item),
            "entry_id": entry.id,
        }
        outcome.images.append(record)
        if on_image is not None:
            on_image(record)
        queue.accept(
            item, entry_id=entry.id, seconds=seconds, fraction_changed=changed, model_version=version
        )
        accepted = queue.counts()["accepted"]
        if finetune_every and accepted % finetune_every == 0 and queue.current is not None:
            tuned = _finetune_step(store, registry, version, config, cancel, accepted)
            outcome.finetunes.append(tuned)
            if on_finetune is not None:
                on_finetune(tuned)
            if tuned["switched"]:
                version = tuned["version"]
                segmenter = segmenter_for(version)
                queue.set_model(version, f"fine-tuned on {accepted} corrections")
                if order == "uncertain":
                    for pending in queue.pending():
                        presegment(pending)  # re-score what is left with the better model
                    queue.visit(queue.next_pending() or item)
    return outcome


def _finetune_step(
    store: CorrectionsStore,
    registry: ModelRegistry,
    parent: str,
    config: TrainConfig,
    cancel: CancelToken,
    corrections: int,
) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    result = finetune(parent, store, registry=registry, config=config, cancel=cancel)
    before, after = result.validation_dice_before, result.validation_dice_after
    return {
        "after_accepted": corrections,
        "parent": parent,
        "version": None if result.version is None else result.version.name,
        "steps": result.steps,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),  # every thread's CPU time
        "validation_dice_before": before,
        "validation_dice_after": after,
        "switched": result.version is not None and switch_to_child(before, after),
    }
