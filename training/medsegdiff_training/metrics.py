"""Segmentation metrics: Dice, IoU, HD95 per class, and the official 5-threshold Dice.

Conventions (written down so figures can be compared):

- Dice and IoU of an empty prediction against an empty ground truth are 1 (nothing to
  find, nothing found); an empty one against a non-empty one is 0.
- HD95 is the 95th percentile of the symmetric surface distances in pixels (scaled by
  ``spacing`` when given). Both empty: 0. Exactly one empty: ``nan`` (undefined); means
  skip nans and report how many there were.
- Binary models are scored on the foreground (class 1). K-class models per class
  1..K-1 (background excluded) and as the mean over those classes.
- The official MedSegDiff code reports Dice averaged over thresholds 0.1, 0.3, 0.5, 0.7,
  0.9 of the soft mask: :func:`multi_threshold_dice`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

OFFICIAL_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty.

    Examples
    --------
    >>> dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(prediction, truth).sum() / total)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    union = np.logical_or(prediction, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, truth).sum() / union)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between two boolean masks.

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[5:10, 5:10] = True
    >>> b = np.zeros((20, 20), bool); b[5:10, 7:12] = True
    >>> hd95(a, b)
    2.0
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return float("nan")
    surface_p, surface_t = _surface(prediction), _surface(truth)
    to_truth = ndimage.distance_transform_edt(~surface_t, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    distances = np.concatenate([to_truth[surface_p], to_prediction[surface_t]])
    return float(np.percentile(distances, 95))


def multi_threshold_dice(
    probabilities: np.ndarray, truth: np.ndarray, thresholds=OFFICIAL_THRESHOLDS
) -> float:
    """Dice averaged over thresholds of a soft foreground mask (the official repository's)."""
    return float(np.mean([dice(probabilities > th, truth) for th in thresholds]))


def foreground_masks(
    labels: np.ndarray, truth: np.ndarray, num_classes: int = 2
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(class, predicted mask, true mask) for each foreground class, by the conventions above.

    Binary models: class 1 is every non-zero label. K classes: classes 1..K-1.
    """
    labels, truth = np.asarray(labels), np.asarray(truth)
    if num_classes == 2:
        yield 1, labels > 0, truth > 0
        return
    for k in range(1, num_classes):
        yield k, labels == k, truth == k


def mean_dice(labels: np.ndarray, truth: np.ndarray, num_classes: int = 2) -> float:
    """Dice averaged over the foreground classes: :func:`score`'s ``dice`` without the rest.

    Examples
    --------
    >>> mean_dice(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), num_classes=3)
    0.6666666666666666
    """
    return float(np.mean([dice(p, t) for _, p, t in foreground_masks(labels, truth, num_classes)]))


def score(
    labels: np.ndarray,
    truth: np.ndarray,
    num_classes: int = 2,
    probabilities: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> dict[str, float]:
    """All metrics of one predicted label map against the truth.

    Returns ``dice``, ``iou``, ``hd95`` (means over foreground classes), per-class values
    as ``dice_class1`` ..., and ``dice_5threshold`` for binary models given probabilities.
    """
    labels, truth = np.asarray(labels), np.asarray(truth)
    if labels.shape != truth.shape:
        raise ValueError(f"prediction {labels.shape} and truth {truth.shape} differ in shape.")
    result: dict[str, float] = {}
    classes = []
    for k, p, t in foreground_masks(labels, truth, num_classes):
        classes.append(k)
        result[f"dice_class{k}"] = dice(p, t)
        result[f"iou_class{k}"] = iou(p, t)
        result[f"hd95_class{k}"] = hd95(p, t, spacing)
    for name in ("dice", "iou", "hd95"):
        values = [result[f"{name}_class{k}"] for k in classes]
        finite = [v for v in values if not np.isnan(v)]
        result[name] = float(np.mean(finite)) if finite else float("nan")
    if probabilities is not None and num_classes == 2:
        result["dice_5threshold"] = multi_threshold_dice(probabilities, truth > 0)
    return result


def summarise_scores(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (nans skipped), with ``count`` and ``hd95_undefined``."""
    summary: dict[str, float] = {"count": float(len(scores))}
    if not scores:
        return summary
    for key in scores[0]:
        values = np.array([s[key] for s in scores], dtype=float)
        finite = values[~np.isnan(values)]
        summary[key] = float(finite.mean()) if finite.size else float("nan")
        if key == "hd95":
            summary["hd95_undefined"] = float(np.isnan(values).sum())
    return summary
