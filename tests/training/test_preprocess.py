"""Bad input is handled or refused by name: dtypes, non-finite pixels, layouts, masks.

(NaN, volumes, strings, 4D arrays, RGB to gray and 0/255 masks are in test_inference.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.config import named_config
from medsegdiff_training.errors import InvalidImageError, InvalidMaskError
from medsegdiff_training.preprocess import (
    as_channels_first,
    check_label_map,
    normalise_intensity,
    prepare_image,
    resize_labels,
)

TINY = named_config("tiny")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.array([[1.0, np.inf], [0.0, 2.0]]), "NaN or infinite"),
        (np.full((5, 5), -np.inf, dtype=np.float32), "NaN or infinite"),
        (np.empty((4, 4), dtype=object), "numbers"),
        (np.ones((4, 4), dtype=np.complex64), "numbers"),
        (np.ones((1, 8)), "too small"),
        (np.ones(16), "2D image"),
        (np.random.rand(2, 16, 16), "2 channels"),  # a 2-slice stack is neither gray nor RGB
    ],
)
def test_images_that_cannot_be_segmented_are_refused_by_name(image, message):
    with pytest.raises(InvalidImageError, match=message):
        prepare_image(image, TINY)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.int32, np.float16, np.float64])
def test_every_numeric_dtype_becomes_a_float_image_in_minus_one_to_one(dtype):
    values = np.random.default_rng(0).random((40, 30))
    image = (values > 0.5) if dtype is bool else (values * (1 if dtype is np.float16 else 200)).astype(dtype)
    tensor = prepare_image(image, TINY)
    assert tensor.dtype == torch.float32 and tensor.shape == (1, 1, 32, 32)
    assert tensor.min() >= -1 and tensor.max() <= 1 and tensor.std() > 0


def test_channel_layouts_are_read_as_documented():
    rgb_last = np.random.rand(20, 24, 3)
    rgba_last = np.concatenate([rgb_last, np.ones((20, 24, 1))], axis=2)
    assert as_channels_first(rgb_last, 3).shape == (3, 20, 24)
    assert np.array_equal(as_channels_first(rgba_last, 3), as_channels_first(rgb_last, 3))  # alpha dropped
    assert np.allclose(as_channels_first(rgba_last, 1), as_channels_first(rgb_last, 1))
    gray = np.random.rand(20, 24)
    assert np.array_equal(as_channels_first(gray, 3), np.repeat(gray[None], 3, 0).astype(np.float32))
    stack = np.random.rand(4, 20, 24)
    assert np.array_equal(as_channels_first(stack, 4), stack.astype(np.float32))
    # an explicit channel axis wins over the guess
    odd = np.random.rand(3, 20, 3)
    assert as_channels_first(odd, 3, channel_axis=2).shape == (3, 3, 20)
    assert as_channels_first(odd, 3, channel_axis=0).shape == (3, 20, 3)


def test_normalisation_methods_reach_the_mask_range_and_constant_images_are_zero():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 20, (2, 30, 30)).astype(np.float32)
    for method in ("percentile", "minmax", "zscore"):
        out = normalise_intensity(image, method)
        assert out.shape == image.shape and out.min() >= -1 and out.max() <= 1
        assert abs(out.mean()) < 0.1  # symmetric data stays centred
    assert (
        normalise_intensity(image, "minmax").min() == -1 and normalise_intensity(image, "minmax").max() == 1
    )
    for method in ("percentile", "minmax", "zscore"):
        assert not normalise_intensity(np.full((1, 5, 5), 3.0), method).any()


def test_label_maps_resize_by_nearest_neighbour_and_keep_their_labels():
    labels = np.zeros((30, 45), np.int64)
    labels[5:20, 5:25], labels[22:28, 30:40] = 1, 2
    small = resize_labels(labels, (32, 32))
    assert small.shape == (32, 32) and set(small.unique().tolist()) == {0, 1, 2}
    batch = resize_labels(torch.as_tensor(labels)[None].repeat(2, 1, 1), (15, 15))
    assert batch.shape == (2, 15, 15) and batch.dtype == torch.long


def test_binary_masks_from_8_bit_files_soft_maps_and_instance_labels():
    jpeg_like = np.array([[0, 3, 250], [255, 7, 128]], np.uint8)  # compression noise near 0 and 255
    assert check_label_map(jpeg_like, 2).tolist() == [[0, 0, 1], [1, 0, 1]]
    soft = np.array([[0.0, 0.2], [0.7, 1.0]])
    assert check_label_map(soft, 2).tolist() == [[0, 0], [1, 1]]
    instances = np.array([[0, 1], [2, 3]])
    assert check_label_map(instances, 2).tolist() == [[0, 1], [1, 1]]
    assert check_label_map(np.array([[True, False]]), 2).tolist() == [[1, 0]]
    assert check_label_map(np.zeros((3, 3), np.uint8), 2).sum() == 0  # empty masks are data too


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        (np.array([[0, -1]]), 2, "non-negative"),
        (np.array([[0.0, np.nan]]), 2, "NaN"),
        (np.array([[0, 3]]), 3, "label 3 but the model knows 3 classes"),
        (np.array([[0.0, 1.5]]), 3, "fractional"),
        (np.zeros((2, 5, 5)), 2, "must be 2D"),
    ],
)
def test_masks_that_do_not_fit_the_model_are_refused_by_name(labels, num_classes, message):
    with pytest.raises(InvalidMaskError, match=message):
        check_label_map(labels, num_classes)


def test_rgb_mask_files_use_their_first_channel():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1:3, 1:3] = 255
    assert check_label_map(rgb, 2, image_shape=(4, 4)).sum() == 4
