"""Scoring a model on a folder of image/mask pairs, several images per sampler run.

Metrics are computed at each image's own resolution (the prediction is resized back to
it first), with the conventions of :mod:`medsegdiff_training.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from .data.pairs import Pair
from .data.slices import read_pair_slices
from .inference import SamplingSettings, Segmenter
from .metrics import score, structure_scores, summarise_scores
from .preprocess import check_label_map


@dataclass
class EvaluationReport:
    """Mean metrics over the images and each image's own scores."""

    summary: dict[str, float]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the user should know about the data

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "settings": self.settings,
            "per_image": self.per_image,
            "warnings": self.warnings,
        }


def _slices(pairs: Sequence[Pair]) -> Iterator[tuple[int, str, np.ndarray, np.ndarray]]:
    """(pair index, name, image, mask) 2D slices of every pair, read lazily by the one reading rule."""
    for index, pair in enumerate(pairs):
        slices = read_pair_slices(pair.image, pair.mask)
        for z, (image, mask) in enumerate(slices):
            yield index, (pair.name if len(slices) == 1 else f"{pair.name}[{z}]"), image, mask


def unexpected_mask_values(mask: np.ndarray, num_classes: int) -> list[float] | None:
    """A few of a binary mask's values beyond 0/1, 0/255 or a soft [0, 1] mask; None when it has none.

    Such a mask (0/1/2 instance labels, 0/200, a stray 7) is still thresholded, by the rule
    of :func:`~.preprocess.check_label_map`; this is what a user is told about it.
    """
    if num_classes != 2:
        return None  # K-class label maps are checked strictly by check_label_map
    plane = mask[..., 0] if mask.ndim == 3 else mask
    values = np.unique(plane)
    if set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}:
        return None
    if np.issubdtype(values.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
        return None
    return [float(v) for v in values[:6]]


def evaluate_pairs(
    segmenter: Segmenter,
    pairs: Sequence[Pair],
    settings: SamplingSettings | None = None,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    structures: dict[str, tuple[int, ...]] | None = None,
) -> EvaluationReport:
    """Segment every pair's image (every slice of a volume) and score it against its mask.

    Files are read by the one reading rule (:mod:`.data.slices`), as training reads them:
    a mask whose shape differs from its image's is refused, and binary masks holding
    values other than 0/1 or 0/255 are listed in ``report.warnings``.
    ``progress(done, total)`` counts pairs; ``cancel()`` returning true stops between
    batches (the report then covers the images done so far). ``structures`` (name ->
    classes, e.g. ``{"disc": (1, 2), "cup": (2,)}``) adds ``{name}_dice``, ``{name}_iou`` and
    ``{name}_hd95`` for each union of classes.
    """
    settings = settings or SamplingSettings()
    num_classes = segmenter.config.num_classes
    per_image: list[dict[str, Any]] = []
    odd_masks: list[str] = []
    slices = _slices(pairs)
    done_pairs: set[int] = set()
    while cancel is None or not cancel():
        batch = list(islice(slices, batch_size))
        if not batch:
            break
        truths = []
        for _, name, image, mask in batch:
            odd = unexpected_mask_values(mask, num_classes)
            if odd is not None:
                odd_masks.append(f"{name} ({', '.join(f'{v:g}' for v in odd)})")
            truths.append(check_label_map(mask, num_classes, image_shape=image.shape[:2]))
        images = [image for _, _, image, _ in batch]
        results = segmenter.segment_batch(images, settings, [truth.shape for truth in truths])
        for (pair_index, name, _, _), truth, result in zip(batch, truths, results, strict=True):
            soft = result.probabilities if result.probabilities.ndim == 2 else None
            scores = score(result.labels, truth, num_classes, soft)
            if structures:
                scores.update(structure_scores(result.labels, truth, structures))
            per_image.append({"name": name, **scores})
            done_pairs.add(pair_index)
        if progress is not None:
            progress(len(done_pairs), len(pairs))
    summary = summarise_scores([{k: v for k, v in s.items() if k != "name"} for s in per_image])
    warnings = []
    if odd_masks:
        warnings.append(
            f"{len(odd_masks)} mask(s) hold values other than 0/1 or 0/255, thresholded as a binary "
            f"mask (above 127 if any value is, else above 0): {'; '.join(odd_masks[:5])}"
            + (" ..." if len(odd_masks) > 5 else "")
        )
    return EvaluationReport(summary, per_image, settings.to_dict(), warnings)
