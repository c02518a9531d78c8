"""Propagating one box through a volume: each slice is prompted by the previous slice's mask.

From the starting slice the object is segmented slice by slice, first towards higher
indices, then towards lower ones; each slice's box is the bounding box of the neighbouring
slice's mask (the crop rule then adds the model's margin around it). A direction stops
where the mask vanishes or at the volume's end. Cancelling is checked between slices.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from .errors import Cancelled
from .prompts import Box, mask_box

# (2D image, boxes) -> (H, W) label map; e.g. ``lambda image, boxes: segment_prompts(...).labels``
SliceSegmenter = Callable[[np.ndarray, list[Box]], np.ndarray]


def propagation_steps(
    volume_slice: Callable[[int], np.ndarray],
    slices: int,
    start: int,
    box: Box,
    segment: SliceSegmenter,
) -> Generator[int, None, dict[int, np.ndarray]]:
    """:func:`propagate_box` as a generator: yields each slice index once it is segmented.

    Stopping the iteration between yields stops the propagation (a GUI worker's cancel).
    """
    if not 0 <= start < slices:
        raise ValueError(f"The starting slice {start} is outside the volume's {slices} slices.")
    masks: dict[int, np.ndarray] = {}
    for direction in (1, -1):
        index, current = start, box
        if direction == -1:
            index, current = start - 1, mask_box(masks[start])
        while 0 <= index < slices and current is not None:
            if index not in masks:
                masks[index] = np.asarray(segment(volume_slice(index), [current])) > 0
                yield index
            current = mask_box(masks[index])
            index += direction
    return masks


def propagate_box(
    volume_slice: Callable[[int], np.ndarray],
    slices: int,
    start: int,
    box: Box,
    segment: SliceSegmenter,
    progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict[int, np.ndarray]:
    """Segment the object in ``box`` on slice ``start`` and follow it through the volume.

    ``volume_slice(i)`` returns slice ``i`` (read lazily); returns {slice index: boolean
    mask} for every slice segmented, the empty one that stopped a direction included.
    ``progress(slice_index)`` is called after each slice; ``cancel()`` returning true raises
    :class:`~medsegdiff_training.errors.Cancelled` before the next slice.

    Examples
    --------
    >>> volume = np.zeros((5, 20, 20)); volume[1:4, 5:10, 5:10] = 1
    >>> masks = propagate_box(lambda i: volume[i], 5, 2, Box(5, 5, 10, 10),
    ...                       lambda image, boxes: (image > 0.5).astype(int))
    >>> sorted(i for i, m in masks.items() if m.any())
    [1, 2, 3]
    """
    steps = propagation_steps(volume_slice, slices, start, box, segment)
    while True:
        if cancel is not None and cancel():
            steps.close()
            raise Cancelled("Propagation was cancelled.")
        try:
            index = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(index)
