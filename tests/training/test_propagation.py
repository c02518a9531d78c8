"""Propagating a box through a volume: it follows the object and stops where the object ends."""

from __future__ import annotations

import numpy as np
import pytest

from medsegdiff_training.errors import Cancelled
from medsegdiff_training.prompts import DEFAULT_CROP_RULE, Box, extract_crop, mask_box
from medsegdiff_training.propagation import propagate_box


def blob_volume() -> tuple[np.ndarray, np.ndarray]:
    """A 40-slice volume with an ellipsoid on slices 12..28 and a second blob elsewhere."""
    z, y, x = np.mgrid[:40, :120, :160]
    blob = ((z - 20) / 8.5) ** 2 + ((y - 50) / 25) ** 2 + ((x - 60) / 30) ** 2 <= 1
    other = ((z - 20) / 15) ** 2 + ((y - 60) / 15) ** 2 + ((x - 140) / 12) ** 2 <= 1
    return (blob | other).astype(np.float32), blob


def threshold_in_crop(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """A stand-in model: bright pixels inside the prompt's crop window."""
    labels = np.zeros(image.shape, np.int32)
    for index, box in enumerate(boxes, start=1):
        window = DEFAULT_CROP_RULE.window(box)
        image_slices, crop_slices = window.overlap(image.shape)
        crop = extract_crop(image[None], window)[0][crop_slices]
        labels[image_slices][crop > 0.5] = index
    return labels


def test_propagation_follows_the_blob_both_ways_and_stops_where_it_ends():
    volume, blob = blob_volume()
    start_box = mask_box(blob[20])
    seen = []
    masks = propagate_box(lambda i: volume[i], 40, 20, start_box, threshold_in_crop, progress=seen.append)
    found = sorted(i for i, mask in masks.items() if mask.any())
    assert found == [i for i in range(40) if blob[i].any()]  # 12..28
    assert seen[:10] == list(range(20, 30)) and seen[10:] == list(range(19, 10, -1))
    for index in found:
        assert np.array_equal(masks[index], blob[index])  # the other blob is never reached
    assert set(masks) == set(range(11, 30))  # one empty slice ends each direction


def test_propagation_reaches_the_volume_ends_and_cancels_between_slices():
    volume = np.zeros((6, 30, 30), np.float32)
    volume[:, 10:20, 10:20] = 1
    masks = propagate_box(lambda i: volume[i], 6, 0, Box(10, 10, 20, 20), threshold_in_crop)
    assert sorted(masks) == list(range(6)) and all(m.any() for m in masks.values())
    done = []
    with pytest.raises(Cancelled):
        propagate_box(
            lambda i: volume[i], 6, 2, Box(10, 10, 20, 20), threshold_in_crop,
            progress=done.append, cancel=lambda: len(done) >= 3,
        )  # fmt: skip
    assert done == [2, 3, 4]
