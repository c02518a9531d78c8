"""Preprocessing values a user would notice, each against a value worked out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.errors import InvalidImageError, InvalidMaskError
from medsegdiff_training.preprocess import (
    as_channels_first,
    check_label_map,
    normalise_intensity,
    resize,
    resize_labels,
)


def test_each_normalisation_maps_a_ramp_as_documented():
    ramp = np.arange(101, dtype=np.float32).reshape(1, 1, 101)
    low, high = np.percentile(ramp, (1, 99))  # 1 and 99
    assert np.allclose(
        normalise_intensity(ramp, "percentile"), np.clip((ramp - low) / (high - low), 0, 1) * 2 - 1
    )
    assert np.allclose(normalise_intensity(ramp, "minmax"), ramp / 100 * 2 - 1)
    z = np.clip((ramp - ramp.mean()) / (3 * ramp.std()), -1, 1)
    assert np.allclose(normalise_intensity(ramp, "zscore"), z)
    for method in ("percentile", "minmax", "zscore"):
        constant = normalise_intensity(np.full((2, 3, 3), 7.0, np.float32), method)
        assert constant.dtype == np.float32 and not constant.any()
    with pytest.raises(ValueError, match="Unknown normalisation 'max'"):
        normalise_intensity(ramp, "max")


def test_channels_are_brought_to_what_the_model_takes():
    rgba = np.zeros((6, 5, 4), np.float32)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 99
    gray = as_channels_first(rgba, 1)
    assert gray.shape == (1, 6, 5) and np.allclose(gray, 0.299 * 10 + 0.587 * 20 + 0.114 * 30)
    assert np.array_equal(as_channels_first(rgba, 3), np.moveaxis(rgba[..., :3], 2, 0))
    plain = np.arange(30, dtype=np.uint8).reshape(6, 5)
    assert np.array_equal(as_channels_first(plain, 3), np.repeat(plain[None], 3, axis=0).astype(np.float32))
    stack = np.random.rand(2, 6, 5)
    assert np.allclose(as_channels_first(stack, 2), stack)  # a short first axis is a channel stack
    assert np.allclose(as_channels_first(np.moveaxis(stack, 0, 2), 2, channel_axis=2), stack)
    assert as_channels_first(np.ones((6, 5), bool), 1).max() == 1.0
    assert as_channels_first(np.zeros((4, 5, 3)), 4).shape == (4, 5, 3)  # 4 planes first: a stack


@pytest.mark.parametrize(
    ("image", "channels", "message"),
    [
        (np.zeros((6, 5), complex), 1, "must hold numbers"),
        (np.zeros((8, 6, 5)), 1, "looks like a volume"),
        (np.zeros((2, 3, 6, 5)), 1, "Expected a 2D image, got 4 dimensions"),
        (np.zeros((1, 5)), 1, "too small"),
        (np.zeros((6, 1)), 1, "too small"),
        (np.array([[np.nan, 1.0], [np.inf, 0.0]]), 1, "has 2 NaN or infinite"),
        (np.zeros((2, 6, 5)), 1, "takes 1-channel images but this one has 2"),
    ],
)
def test_images_that_cannot_be_segmented_are_refused_with_the_reason(image, channels, message):
    with pytest.raises(InvalidImageError, match=message):
        as_channels_first(image, channels)


def test_resize_is_bilinear_with_antialiasing_and_a_no_op_at_size():
    row = torch.tensor([[[[0.0, 1.0]]]])
    assert torch.allclose(resize(row, (1, 4)), torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))
    checkerboard = torch.from_numpy((np.indices((64, 64)).sum(0) % 2).astype(np.float32))[None, None]
    assert torch.allclose(resize(checkerboard, (8, 8)), torch.full((1, 1, 8, 8), 0.5), atol=0.02)
    # an odd factor (63 -> 9, x7): without antialiasing each output pixel would sample one
    # input pixel (0 or 1); averaged over 7 x 7 it is 24/49 or 25/49
    odd = torch.from_numpy((np.indices((63, 63)).sum(0) % 2).astype(np.float32))[None, None]
    assert torch.allclose(resize(odd, (9, 9)), torch.full((1, 1, 9, 9), 0.5), atol=0.05)
    same = torch.rand(1, 1, 8, 8)
    assert resize(same, (8, 8)) is same


def test_label_maps_resize_by_nearest_neighbour():
    labels = np.array([[0, 1], [2, 3]])
    assert torch.equal(resize_labels(labels, (4, 4)), torch.tensor(np.kron(labels, np.ones((2, 2), int))))
    batch = resize_labels(torch.tensor(np.stack([labels, labels + 1])), (4, 4))
    assert batch.shape == (2, 4, 4) and batch.dtype == torch.long and batch[1, 3, 3] == 4


@pytest.mark.parametrize(
    ("mask", "foreground"),
    [
        (np.array([[0, 255], [255, 0]]), [[0, 1], [1, 0]]),  # 8-bit
        (np.array([[3, 250], [128, 127]]), [[0, 1], [1, 0]]),  # JPEG noise: above 127
        (np.array([[0.2, 0.6], [0.5, 1.0]]), [[0, 1], [0, 1]]),  # soft: above 0.5
        (np.array([[0, 1], [2, 127]]), [[0, 1], [1, 1]]),  # instance labels merge
        (np.array([[0.0, 1.0], [1.0, 0.0]]), [[0, 1], [1, 0]]),  # whole floats 0/1
        (np.dstack([[[0, 255], [0, 0]], [[9, 9], [9, 9]], [[9, 9], [9, 9]]]), [[0, 1], [0, 0]]),  # RGB: red
    ],
)
def test_binary_masks_are_foreground_where_documented(mask, foreground):
    checked = check_label_map(mask, 2)
    assert checked.dtype == np.int64 and np.array_equal(checked, foreground)


def test_k_class_label_maps_are_checked():
    labels = np.array([[0, 1], [2, 2]])
    assert np.array_equal(check_label_map(labels, 3, image_shape=(2, 2)), labels)
    for bad, message in (
        (np.array([[0, 3], [1, 2]]), "has label 3 but the model knows 3 classes"),
        (np.array([[0, 0.5], [1, 2]]), "fractional"),
        (np.array([[0, -1], [1, 2]]), "non-negative integers; found -1"),
        (np.array([[0, np.nan], [1, 2]]), "NaN or infinite"),
        (np.zeros((2, 2, 2)), "must be 2D"),
    ):
        with pytest.raises(InvalidMaskError, match=message):
            check_label_map(bad, 3)
    with pytest.raises(InvalidMaskError, match=r"shape \(2, 2\) but the image has \(3, 2\)"):
        check_label_map(labels, 3, image_shape=(3, 2))
