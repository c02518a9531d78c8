"""Scoring a model on a folder of image/mask pairs, several images per sampler run.

Metrics are computed at each image's own resolution (the prediction is resized back to
it first), with the conventions of :mod:`medsegdiff_training.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .data.io import read_array, read_mask
from .data.pairs import Pair
from .inference import SamplingSettings, Segmenter
from .metrics import score, summarise_scores
from .preprocess import check_label_map


@dataclass
class EvaluationReport:
    """Mean metrics over the images and each image's own scores."""

    summary: dict[str, float]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "settings": self.settings, "per_image": self.per_image}


def evaluate_pairs(
    segmenter: Segmenter,
    pairs: Sequence[Pair],
    settings: SamplingSettings | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> EvaluationReport:
    """Segment every pair's image and score it against its mask.

    ``progress(done, total)`` is called after each batch; ``cancel()`` returning true stops
    between batches (the report then covers the images done so far).
    """
    settings = settings or SamplingSettings()
    num_classes = segmenter.config.num_classes
    per_image: list[dict[str, Any]] = []
    for start in range(0, len(pairs), batch_size):
        if cancel is not None and cancel():
            break
        batch = pairs[start : start + batch_size]
        images = [read_array(p.image) for p in batch]
        truths = [check_label_map(read_mask(p.mask), num_classes) for p in batch]
        results = segmenter.segment_batch(images, settings, [truth.shape for truth in truths])
        for pair, truth, result in zip(batch, truths, results, strict=True):
            soft = result.probabilities if result.probabilities.ndim == 2 else None
            per_image.append({"name": pair.name, **score(result.labels, truth, num_classes, soft)})
        if progress is not None:
            progress(min(start + batch_size, len(pairs)), len(pairs))
    summary = summarise_scores([{k: v for k, v in s.items() if k != "name"} for s in per_image])
    return EvaluationReport(summary, per_image, settings.to_dict())
