"""Box and point prompts: where the model looks on a full-size image, and where its answer goes.

Every shipped model was trained on crops around the object, so a prompt is turned into
such a crop by the model's :class:`CropRule` (recorded in its checkpoint), the crop is
segmented, and the probabilities are put back into the crop's footprint in the full image.
This module holds that geometry in numpy; :mod:`medsegdiff_training.prompted` runs it
through a :class:`~medsegdiff_training.inference.Segmenter`.

Conventions
-----------
- A box is ``(x0, y0, x1, y1)`` in image pixels: x is the column, y the row, ``x1`` and
  ``y1`` exclusive (pixel ``i`` covers ``[i, i + 1)``), as in ``predict --boxes`` files.
- Crops at the image border are padded (with the image's minimum), never shifted, so the
  object keeps its place relative to the crop, as in training.
- Objects get label ids 1..n in prompt order; where crops overlap, the more probable
  object wins (ties go to the earlier prompt).
- A point means a box of the last box size (or the rule's default size) centred on it.
- A prompt is clipped to the image (one wholly outside it is refused), so no crop is larger
  than the image grown by the crop rule's margins, however large the box was drawn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, InvalidImageError
from .validation import check_known_keys

CROP_SHAPES = ("box", "square")
#: No image has a pixel this far out (the reader's pixel limit is far below it): a box
#: coordinate beyond it is a mistake, refused rather than clipped.
MAX_BOX_COORDINATE = 1e9


@dataclass(frozen=True)
class CropRule:
    """How a model's training crops were cut around the object, so prompts cut the same.

    The box is grown by ``margin_px + margin_fraction * size`` on each side (``size`` =
    the box's own height for rows, width for columns). ``shape="box"`` keeps that
    rectangle and resizes it non-uniformly to the model's input; ``shape="square"`` takes a
    square centred on the box, of side ``side_px`` when given, else the grown box's longer
    side. A point prompt without an earlier box becomes a square box of
    ``point_box_fraction`` of the image's shorter side. ``clip_to_box``: a drawn box bounds
    its object's answer (pixels outside it are background; a point's guessed box does not).

    Examples
    --------
    >>> CropRule(margin_px=30, margin_fraction=0.0).window(Box(100, 50, 200, 90))
    CropWindow(top=20, left=70, bottom=120, right=230)
    """

    shape: str = "box"
    margin_fraction: float = 0.1
    margin_px: float = 0.0
    side_px: float | None = None
    point_box_fraction: float = 0.25
    description: str = ""
    clip_to_box: bool = False

    def __post_init__(self) -> None:
        if self.shape not in CROP_SHAPES:
            raise ConfigError(f"A crop rule's shape is 'box' or 'square', got {self.shape!r}.")
        if self.margin_fraction < 0 or self.margin_px < 0:
            raise ConfigError("A crop rule's margins must be zero or positive.")
        if self.side_px is not None and self.side_px < 2:
            raise ConfigError(f"A crop rule's side_px must be at least 2, got {self.side_px}.")
        if not 0 < self.point_box_fraction <= 1:
            raise ConfigError("point_box_fraction is a fraction of the image's shorter side, in (0, 1].")

    def window(self, box: Box) -> CropWindow:
        """The crop (whole pixels, possibly beyond the image) this rule cuts around ``box``."""
        grow_y = self.margin_px + self.margin_fraction * box.height
        grow_x = self.margin_px + self.margin_fraction * box.width
        y0, y1 = box.y0 - grow_y, box.y1 + grow_y
        x0, x1 = box.x0 - grow_x, box.x1 + grow_x
        if self.shape == "square":
            side = self.side_px if self.side_px is not None else max(y1 - y0, x1 - x0)
            cy, cx = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
            y0, y1, x0, x1 = cy - side / 2, cy + side / 2, cx - side / 2, cx + side / 2
        top, left = math.floor(y0 + 1e-6), math.floor(x0 + 1e-6)
        bottom, right = math.ceil(y1 - 1e-6), math.ceil(x1 - 1e-6)
        return CropWindow(top, left, max(bottom, top + 2), max(right, left + 2))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CropRule:
        check_known_keys(values, cls, "crop rule")
        return cls(**values)


#: For models whose checkpoint records no crop rule: the box plus 10 % of its size on
#: each side (the margin of MedSAM-style box-prompt evaluations), resized non-uniformly.
DEFAULT_CROP_RULE = CropRule(
    description="box + 10 % of its size on each side (default for models without a rule)"
)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in image pixels: x = column, y = row, ``x1``/``y1`` exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        values = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(float(v)) for v in values):
            raise InvalidImageError(f"A box needs finite coordinates, got {values}.")
        if max(abs(float(v)) for v in values) > MAX_BOX_COORDINATE:
            raise InvalidImageError(
                f"A box coordinate lies beyond {MAX_BOX_COORDINATE:.0e} pixels, where no image reaches: "
                f"got {', '.join(f'{float(v):g}' for v in values)}."
            )
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise InvalidImageError(
                f"A box needs x1 > x0 and y1 > y0 (x1, y1 exclusive), got x0={self.x0:g}, "
                f"y0={self.y0:g}, x1={self.x1:g}, y1={self.y1:g}."
            )

    @property
    def height(self) -> float:
        return float(self.y1 - self.y0)

    @property
    def width(self) -> float:
        return float(self.x1 - self.x0)

    def overlaps(self, image_shape: tuple[int, int]) -> bool:
        """Whether any part of the box lies over an image of ``(height, width)``."""
        return self.x1 > 0 and self.y1 > 0 and self.x0 < image_shape[1] and self.y0 < image_shape[0]

    def to_list(self) -> list[float]:
        return [float(self.x0), float(self.y0), float(self.x1), float(self.y1)]

    def clipped(self, image_shape: tuple[int, int]) -> Box:
        """The part of the box over an image of ``(height, width)`` (call :meth:`overlaps` first)."""
        height, width = image_shape
        x0, y0 = max(float(self.x0), 0.0), max(float(self.y0), 0.0)
        x1, y1 = min(float(self.x1), float(width)), min(float(self.y1), float(height))
        return self if (x0, y0, x1, y1) == tuple(self.to_list()) else Box(x0, y0, x1, y1)


@dataclass(frozen=True)
class Point:
    """A click at column ``x``, row ``y`` (pixel centres are at ``i + 0.5``)."""

    x: float
    y: float


@dataclass(frozen=True)
class CropWindow:
    """Rows ``top:bottom`` and columns ``left:right`` of the full image (may reach beyond it)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def overlap(self, image_shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(image slices, crop slices) of the part of the window inside the image."""
        height, width = image_shape
        top, left = max(self.top, 0), max(self.left, 0)
        bottom, right = min(self.bottom, height), min(self.right, width)
        if bottom <= top or right <= left:
            raise InvalidImageError(
                f"The crop rows {self.top}:{self.bottom}, columns {self.left}:{self.right} lie "
                f"outside the {height}x{width} image; draw the box over the image."
            )
        image_slices = (slice(top, bottom), slice(left, right))
        crop_slices = (slice(top - self.top, bottom - self.top), slice(left - self.left, right - self.left))
        return image_slices, crop_slices


def resolve_prompts(
    prompts: Sequence[Box | Point],
    image_shape: tuple[int, int],
    rule: CropRule = DEFAULT_CROP_RULE,
    last_box_size: tuple[float, float] | None = None,
) -> list[Box]:
    """Turn boxes and points into boxes, in order; points take the last box's (height, width).

    Each box is clipped to the image; :class:`InvalidImageError` for a prompt that lies
    wholly outside it.

    Examples
    --------
    >>> resolve_prompts([Box(0, 0, 40, 20), Point(100, 100)], (200, 200))[1]
    Box(x0=80.0, y0=90.0, x1=120.0, y1=110.0)
    >>> resolve_prompts([Box(-1e7, 50, 1e7, 60)], (200, 300))[0]
    Box(x0=0.0, y0=50.0, x1=300.0, y1=60.0)
    """
    boxes: list[Box] = []
    size = last_box_size
    for index, prompt in enumerate(prompts, start=1):
        if isinstance(prompt, Point):
            height, width = size or (rule.point_box_fraction * min(image_shape),) * 2
            box = Box(
                prompt.x - width / 2, prompt.y - height / 2, prompt.x + width / 2, prompt.y + height / 2
            )
        else:
            box = prompt
            size = (box.height, box.width)
        if not box.overlaps(image_shape):
            raise InvalidImageError(
                f"Prompt {index} ({box.to_list()}) lies outside the {image_shape[0]}x{image_shape[1]} image."
            )
        boxes.append(box.clipped(image_shape))
    return boxes


def extract_crop(image: np.ndarray, window: CropWindow, fill: float | None = None) -> np.ndarray:
    """The (C, h, w) crop of a (C, H, W) image under ``window``, padded with ``fill``.

    ``fill`` defaults to the image's minimum (label maps pass 0).
    """
    image_slices, crop_slices = window.overlap(image.shape[-2:])
    crop = np.full((image.shape[0], *window.shape), image.min() if fill is None else fill, dtype=image.dtype)
    crop[(slice(None),) + tuple(crop_slices)] = image[(slice(None),) + tuple(image_slices)]
    return crop


#: Training crops: each box edge moves by up to this fraction of the box's size (uniform,
#: per sample per epoch; ``medsegdiff train --jitter``).
DEFAULT_JITTER = 0.1


def jitter_box(box: Box, fraction: float, rng: np.random.Generator) -> Box:
    """``box`` with each edge moved by up to ``fraction`` of the box's size (uniform, independently).

    Edges move by at most ``fraction`` of the width (x0, x1) or height (y0, y1), so for
    ``fraction < 0.5`` the box stays a box. Training crops are jittered so that a model
    learns boxes drawn a little loose or tight, as annotators draw them.

    Examples
    --------
    >>> box = jitter_box(Box(100, 100, 200, 150), 0.1, np.random.default_rng(0))
    >>> bool(90 <= box.x0 <= 110 and 140 <= box.y1 <= 155)
    True
    """
    if not 0 <= fraction < 0.5:
        raise ConfigError(f"The box jitter is a fraction of the box's size in [0, 0.5), got {fraction}.")
    dx0, dy0, dx1, dy1 = rng.uniform(-fraction, fraction, size=4)
    width, height = box.width, box.height
    return Box(box.x0 + dx0 * width, box.y0 + dy0 * height, box.x1 + dx1 * width, box.y1 + dy1 * height)


def loosen_box(
    box: Box, fraction: float, rng: np.random.Generator, image_shape: tuple[int, int] | None = None
) -> Box:
    """``box`` with each edge moved *outward* by a share, uniform in [0, ``fraction``], of its side.

    A loose box as an annotator draws one (benchmarks score prompts with such boxes); kept
    inside an image of ``image_shape`` (height, width) when given.

    Examples
    --------
    >>> loose = loosen_box(Box(100, 100, 200, 150), 0.2, np.random.default_rng(0))
    >>> bool(80 <= loose.x0 <= 100 and 150 <= loose.y1 <= 160)
    True
    """
    if fraction == 0:
        return box
    left, top, right, bottom = rng.uniform(0, fraction, size=4)
    x0, x1 = box.x0 - left * box.width, box.x1 + right * box.width
    y0, y1 = box.y0 - top * box.height, box.y1 + bottom * box.height
    if image_shape is not None:
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, float(image_shape[1])), min(y1, float(image_shape[0]))
    return Box(x0, y0, x1, y1)


def random_box(size: tuple[float, float], image_shape: tuple[int, int], rng: np.random.Generator) -> Box:
    """A box of ``size`` (height, width), at most the image's, placed uniformly inside the image."""
    height, width = min(size[0], image_shape[0]), min(size[1], image_shape[1])
    y0 = rng.uniform(0, image_shape[0] - height)
    x0 = rng.uniform(0, image_shape[1] - width)
    return Box(x0, y0, x0 + width, y0 + height)


def box_channel(box: Box, window: CropWindow, size: tuple[int, int]) -> np.ndarray:
    """The box as the network sees it: (h, w) float32, +1 inside ``box`` and -1 outside.

    ``window`` is the crop resized to ``size`` (h, w); a pixel is inside when its centre is.
    A whole-image run passes the image as both box and window (all +1).

    Examples
    --------
    >>> box_channel(Box(2, 0, 4, 2), CropWindow(0, 0, 4, 8), (2, 4))
    array([[-1.,  1., -1., -1.],
           [-1., -1., -1., -1.]], dtype=float32)
    """
    height, width = size
    rows = window.top + (np.arange(height) + 0.5) * window.shape[0] / height
    columns = window.left + (np.arange(width) + 0.5) * window.shape[1] / width
    inside_rows = (rows >= box.y0) & (rows < box.y1)
    inside_columns = (columns >= box.x0) & (columns < box.x1)
    return np.where(inside_rows[:, None] & inside_columns[None, :], 1.0, -1.0).astype(np.float32)


def resize_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes (half-pixel centres, like torch's ``align_corners=False``)."""
    rows = _interpolation_matrix(array.shape[-2], size[0])
    columns = _interpolation_matrix(array.shape[-1], size[1])
    # two matrix products (a three-operand einsum would loop over all four indices at once)
    return (rows @ array.astype(np.float32) @ columns.T).astype(np.float32)


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, source - 1)
    weight = (position - lower).astype(np.float32)
    matrix = np.zeros((target, source), dtype=np.float32)
    np.add.at(matrix, (np.arange(target), lower), 1 - weight)
    np.add.at(matrix, (np.arange(target), upper), weight)
    return matrix


@dataclass
class PromptedLabels:
    """Objects pasted into the full image.

    ``labels`` (H, W) int32: 0 background, object ``i`` (1-based prompt order) where it won;
    ``probability`` (H, W): the winning object's foreground probability (0 elsewhere);
    ``uncertainty`` (H, W) or ``None``: the largest member spread of any crop covering a pixel.
    """

    labels: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray | None


def paste_objects(
    foreground: Sequence[np.ndarray],
    windows: Sequence[CropWindow],
    image_shape: tuple[int, int],
    threshold: float = 0.5,
    uncertainty: Sequence[np.ndarray] | None = None,
    object_labels: Sequence[np.ndarray] | None = None,
    *,
    into: PromptedLabels | None = None,
    first_id: int = 1,
    clip_boxes: Sequence[Box | None] | None = None,
) -> PromptedLabels:
    """Paste each object's foreground probability (any size; resized to its window) into the image.

    Object ``i`` claims the pixels where its probability exceeds ``threshold`` and beats every
    earlier claim. ``object_labels`` (per object, window-sized) replaces the object id by a
    per-pixel label (multi-class models: the class). ``into`` continues an earlier paste (the
    objects of earlier sampler batches keep their claims), with ids from ``first_id`` on.
    ``clip_boxes[i]`` (when given) bounds object ``i``: it claims no pixel whose centre lies
    outside that box.
    """
    if into is None:
        spread_map = np.zeros(image_shape, dtype=np.float32) if uncertainty is not None else None
        into = PromptedLabels(np.zeros(image_shape, np.int32), np.zeros(image_shape, np.float32), spread_map)
    labels, best, spread = into.labels, into.probability, into.uncertainty
    for index, (probability, window) in enumerate(zip(foreground, windows, strict=True)):
        image_slices, crop_slices = window.overlap(image_shape)
        probability = _fit(probability, window)[crop_slices]
        wins = (probability > threshold) & (probability > best[image_slices])
        bound = clip_boxes[index] if clip_boxes is not None else None
        if bound is not None:
            wins &= _inside(bound, image_slices)
        best[image_slices][wins] = probability[wins]
        value = first_id + index if object_labels is None else object_labels[index][crop_slices][wins]
        labels[image_slices][wins] = value
        if spread is not None and uncertainty is not None:
            np.maximum(
                spread[image_slices], _fit(uncertainty[index], window)[crop_slices], out=spread[image_slices]
            )
    return into


def _inside(box: Box, region: tuple[slice, slice]) -> np.ndarray:
    """Which pixels of the image ``region`` have their centres inside ``box``."""
    rows = np.arange(region[0].start, region[0].stop) + 0.5
    columns = np.arange(region[1].start, region[1].stop) + 0.5
    return ((rows >= box.y0) & (rows < box.y1))[:, None] & ((columns >= box.x0) & (columns < box.x1))[None, :]


def _fit(array: np.ndarray, window: CropWindow) -> np.ndarray:
    return array if array.shape == window.shape else resize_bilinear(array, window.shape)


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a 2D mask's non-zero pixels, or ``None`` for an empty mask."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return None
    return Box(int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)


def boxes_from_mask(mask: np.ndarray) -> list[Box]:
    """One box per 8-connected component of a 2D mask's foreground, in raster order of their first pixel."""
    from scipy import ndimage

    components, _ = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for found in ndimage.find_objects(components):
        if found is not None:
            rows, columns = found
            boxes.append(Box(columns.start, rows.start, columns.stop, rows.stop))
    return boxes


def inscribed_ellipse(boxes: Sequence[Box], image_shape: tuple[int, int]) -> np.ndarray:
    """The no-model baseline: the ellipse inscribed in each box, ids 1..n (later boxes on top)."""
    rows = np.arange(image_shape[0])[:, None] + 0.5
    columns = np.arange(image_shape[1])[None, :] + 0.5
    labels = np.zeros(image_shape, dtype=np.int32)
    for index, box in enumerate(boxes, start=1):
        cy, cx = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
        inside = ((rows - cy) / (box.height / 2)) ** 2 + ((columns - cx) / (box.width / 2)) ** 2 <= 1
        labels[inside] = index
    return labels
