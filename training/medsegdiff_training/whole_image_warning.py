"""When a whole-image answer is probably poor: the rule, and the signals it reads.

A whole-image run resizes the image to the model's input and segments it at once; that works
when the image looks like the model's training images (for ``default``, nodule-centred
300x300 grey ultrasound crops) and fails quietly on full-size frames of other kinds. The
rule here tells the annotator so, and points at a box prompt. It reads two kinds of signal:

- the **answer**: how much the ensemble members disagree about the object, per unit of
  object (:func:`~.annotation_queue.uncertainty_score`), and how much of the image the
  answer calls object;
- the **image** against the model's training images (:class:`TrainingLook`, recorded in the
  checkpoint's ``training_data.image_look``): its size, its colour, and how far the histogram
  of its normalised intensities is from theirs.

Numpy only (no torch), so the CLI, the benchmarks and the plugin share it. The thresholds of
:data:`DEFAULT_RULE` were chosen on the *training* splits of the six shared datasets with the
shipped ``default`` model at its recommended sampling, and checked on their test splits
(``benchmarks/bench_whole_image_warning.py``; the figures are in ``docs/benchmarks.md``).

Examples
--------
>>> look = TrainingLook(height=(300, 300), width=(300, 300), colour=False)
>>> probabilities = np.zeros((300, 300), np.float32); probabilities[100:200, 100:200] = 1
>>> agreed = np.zeros((300, 300), np.float32)
>>> judge_whole_image(np.zeros((300, 300)), probabilities, agreed, look).poor
False
>>> verdict = judge_whole_image(np.zeros((600, 800)), np.zeros((600, 800)), None, look)
>>> verdict.poor, verdict.reasons
(True, ('the image is 2.3 times the size of its training images',))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .annotation_queue import uncertainty_score  # torch-free

#: Where a checkpoint records what its training images looked like (``training_data`` block).
LOOK_KEY = "image_look"
#: The intensity histogram of an image: bins over [-1, 1] of its grey values normalised as
#: the models' ``percentile`` normalisation does (1st and 99th percentiles to -1 and 1).
HISTOGRAM_BINS = 16
#: An image is "in colour" when its channels differ by more than this share of its range.
COLOUR_THRESHOLD = 0.02
_LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R 601, as the models turn RGB into grey


def colourfulness(image: np.ndarray) -> float:
    """How far an image's colour channels are from grey: the mean absolute deviation of R, G
    and B from their mean, over the image's range (0 for a grey or 2D image)."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        return 0.0
    rgb = array[..., :3].astype(np.float64)
    spread = float(rgb.max() - rgb.min())
    if spread <= 0:
        return 0.0
    return float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean() / spread)


def intensity_histogram(image: np.ndarray) -> np.ndarray:
    """The share of an image's pixels in each of :data:`HISTOGRAM_BINS` bins of its grey values
    normalised to [-1, 1] (RGB(A) through luminance; other channel stacks: the first channel).

    Examples
    --------
    >>> intensity_histogram(np.arange(100.0).reshape(10, 10)).round(2)[:3]  # a ramp: flat, the ends clipped
    array([0.08, 0.06, 0.06])
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3:
        grey = (
            sum(w * array[..., c] for c, w in enumerate(_LUMINANCE))
            if array.shape[-1] in (3, 4)
            else array[..., 0]
        )
    else:
        grey = array
    low, high = np.percentile(grey, (1, 99))
    normalised = np.zeros_like(grey) if high <= low else np.clip((grey - low) / (high - low), 0, 1) * 2 - 1
    counts, _ = np.histogram(normalised, bins=HISTOGRAM_BINS, range=(-1.0, 1.0))
    return counts / max(int(counts.sum()), 1)


@dataclass(frozen=True)
class TrainingLook:
    """What a model's training images looked like: the range of their heights and widths
    (pixels, as the training files were), whether any had colour, and their mean
    :func:`intensity_histogram` (``None`` when not recorded)."""

    height: tuple[int, int]
    width: tuple[int, int]
    colour: bool
    histogram: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "height": list(self.height),
            "width": list(self.width),
            "colour": self.colour,
        }
        if self.histogram is not None:
            document["histogram"] = [round(float(v), 5) for v in self.histogram]
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> TrainingLook:
        height, width, histogram = document["height"], document["width"], document.get("histogram")
        return cls(
            (int(height[0]), int(height[1])),
            (int(width[0]), int(width[1])),
            bool(document["colour"]),
            None if histogram is None else tuple(float(v) for v in histogram),
        )

    @classmethod
    def of_checkpoint(cls, metadata: Mapping[str, Any]) -> TrainingLook | None:
        """The look a checkpoint's metadata records (``training_data.image_look``), or None."""
        look = (metadata.get("training_data") or {}).get(LOOK_KEY)
        if not isinstance(look, Mapping):
            return None
        try:
            return cls.from_dict(look)
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    @classmethod
    def of_images(cls, images: Sequence[np.ndarray]) -> TrainingLook:
        """The look of a set of training images (2D grey or (H, W, 3|4) colour arrays)."""
        shapes = [np.shape(image)[:2] for image in images]
        heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
        histogram = np.mean([intensity_histogram(image) for image in images], axis=0)
        return cls(
            (min(heights), max(heights)),
            (min(widths), max(widths)),
            any(colourfulness(image) > COLOUR_THRESHOLD for image in images),
            tuple(float(v) for v in histogram),
        )


@dataclass(frozen=True)
class AnswerSignals:
    """What the rule reads of one whole-image answer.

    ``disagreement``: the ensemble's uncertainty per unit of object (0 for one sample,
    ``ensemble`` False then); ``object_share``: the share of the image the answer calls
    object; ``size_ratio``: how many times larger (> 1) or smaller (< 1) the image's side is
    than the nearest training size (geometric mean of height and width; 1 inside the
    training range); ``colour``: the image has colour the training images had not;
    ``histogram_distance``: half the L1 distance between the image's and the training
    images' intensity histograms (0 alike, 1 disjoint). The image terms are ``None`` when
    the model records no look.
    """

    disagreement: float
    object_share: float
    size_ratio: float | None
    colour: bool
    histogram_distance: float | None = None
    ensemble: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outside(size: int, span: tuple[int, int]) -> float:
    """``size`` over the nearest end of ``span`` (1 inside it)."""
    low, high = span
    if size < low:
        return size / low
    if size > high:
        return size / high
    return 1.0


def answer_signals(
    image: np.ndarray,
    probabilities: np.ndarray,
    uncertainty: np.ndarray | None,
    look: TrainingLook | None,
) -> AnswerSignals:
    """The signals of one 2D image's answer (the :class:`~.inference.SegmentationResult`'s
    ``probabilities`` and ``uncertainty``; ``image`` as the user gave it, channels last)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    foreground = probabilities if probabilities.ndim == 2 else 1.0 - probabilities[0]
    height, width = foreground.shape
    ratio, colour, distance = None, False, None
    if look is not None:
        ratio = float(np.sqrt(_outside(height, look.height) * _outside(width, look.width)))
        colour = not look.colour and colourfulness(image) > COLOUR_THRESHOLD
        if look.histogram is not None:
            distance = float(0.5 * np.abs(intensity_histogram(image) - np.asarray(look.histogram)).sum())
    return AnswerSignals(
        disagreement=uncertainty_score(foreground, uncertainty),
        object_share=float((foreground > 0.5).mean()),
        size_ratio=ratio,
        colour=colour,
        histogram_distance=distance,
        ensemble=uncertainty is not None,
    )


@dataclass(frozen=True)
class WarningRule:
    """When to call a whole-image answer probably poor (any one suffices):

    - the ensemble disagrees about more than ``disagreement`` of the object;
    - the answer calls less than ``min_object_share`` or more than ``max_object_share`` of
      the image object;
    - the image's intensity histogram is further than ``histogram_distance`` from the
      training images';
    - its side is over ``size_factor`` times larger or smaller than theirs, and the ensemble
      disagrees about at least ``size_disagreement`` (0: the size alone; ``None``: never);
    - it has colour where they were grey, and the ensemble disagrees about at least
      ``colour_disagreement`` (0: the colour alone; ``None``: never).
    """

    disagreement: float
    min_object_share: float
    max_object_share: float
    histogram_distance: float
    size_factor: float
    size_disagreement: float | None
    colour_disagreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WholeImageVerdict:
    """Whether a whole-image answer is probably poor, and why (plain words)."""

    poor: bool
    reasons: tuple[str, ...]
    signals: AnswerSignals

    def message(self, model: str = "the model") -> str:
        """One line for the annotator: what is wrong, and what to do instead."""
        if not self.poor:
            return ""
        return (
            f"This whole-image answer is probably poor: {'; '.join(self.reasons)}. {model} segments "
            "a whole image well only when it looks like its training images: draw a box around the "
            "object and segment again."
        )


def _above(value: float | None, threshold: float | None) -> bool:
    return value is not None and threshold is not None and value > threshold


def judge_signals(signals: AnswerSignals, rule: WarningRule) -> WholeImageVerdict:
    """Apply ``rule`` to one answer's signals."""
    reasons = []
    disputed = signals.disagreement if signals.ensemble else None
    if _above(disputed, rule.disagreement):
        reasons.append(f"the ensemble disagrees about {100 * signals.disagreement:.0f} % of the object")
    if signals.object_share < rule.min_object_share:
        reasons.append(f"it finds almost no object ({100 * signals.object_share:.1f} % of the image)")
    elif signals.object_share > rule.max_object_share:
        reasons.append(f"it calls {100 * signals.object_share:.0f} % of the image object")
    if _above(signals.histogram_distance, rule.histogram_distance):
        reasons.append("its intensities are unlike those of its training images")
    # without an ensemble the disagreement is unknown: the size or colour alone decides
    agree_enough = (lambda threshold: True) if disputed is None else (lambda threshold: disputed >= threshold)
    ratio = signals.size_ratio
    if (
        ratio is not None
        and rule.size_disagreement is not None
        and not 1 / rule.size_factor <= ratio <= rule.size_factor
        and agree_enough(rule.size_disagreement)
    ):
        reasons.append(f"the image is {ratio:.1f} times the size of its training images")
    if signals.colour and rule.colour_disagreement is not None and agree_enough(rule.colour_disagreement):
        reasons.append("the image has colour where its training images were grey")
    return WholeImageVerdict(bool(reasons), tuple(reasons), signals)


#: The rule the plugin and the CLI apply; chosen on the training splits of the six shared
#: datasets with ``default`` at DDIM 3 x 5: of the rules that warn on at least 95 % of the
#: training images whose whole-image Dice is below 0.5, the one with the fewest warnings on
#: those at 0.8 or above (``benchmarks/results/whole_image_warning.json``).
DEFAULT_RULE = WarningRule(
    disagreement=0.16,
    min_object_share=0.0,
    max_object_share=0.7,
    histogram_distance=0.4,
    size_factor=1.12,
    size_disagreement=0.0,
    colour_disagreement=None,
)


def judge_whole_image(
    image: np.ndarray,
    probabilities: np.ndarray,
    uncertainty: np.ndarray | None,
    look: TrainingLook | None,
    rule: WarningRule = DEFAULT_RULE,
) -> WholeImageVerdict:
    """Whether one whole-image answer is probably poor (:class:`WholeImageVerdict`).

    ``image`` as the user gave it (2D, or channels last); ``probabilities`` and
    ``uncertainty`` from its :class:`~.inference.SegmentationResult`; ``look`` the model's
    training images (:meth:`TrainingLook.of_checkpoint`; ``None``: the image is not compared).
    """
    return judge_signals(answer_signals(image, probabilities, uncertainty, look), rule)
