"""Colour augmentation: each image's colour scaled around its luminance, the luminance kept."""

from __future__ import annotations

import pytest
import torch

from medsegdiff_training.data.augment import augment_batch
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.preprocess import LUMINANCE_WEIGHTS
from medsegdiff_training.train_config import AugmentConfig, TrainConfig

COLOUR_ONLY = AugmentConfig(
    horizontal_flip=0, rotate_degrees=0, scale=0, shift=0, gamma=0, contrast=0, brightness=0, saturation=1.0
)


def luminance(image: torch.Tensor) -> torch.Tensor:
    return (image * torch.tensor(LUMINANCE_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1)


def test_colour_is_scaled_around_the_luminance_which_stays():
    generator = torch.Generator().manual_seed(0)
    grey = torch.rand(8, 1, 16, 16, generator=generator) * 0.6 - 0.3
    colour = (torch.rand(8, 3, 16, 16, generator=generator) - 0.5) * 0.4
    colour -= luminance(colour)[:, None]  # deviations of zero luminance: no clipping below
    image = grey + colour
    x0 = torch.ones(8, 1, 16, 16)
    augmented, mask = augment_batch(image, x0, COLOUR_ONLY, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mask, x0)
    assert torch.allclose(luminance(augmented), luminance(image), atol=1e-5)
    # each image's colour is its own multiple of the original colour, from 0 (grey) to 2
    factors = []
    for before, after in zip(
        image - luminance(image)[:, None], augmented - luminance(augmented)[:, None], strict=True
    ):
        factor = float((after * before).sum() / (before * before).sum())
        assert torch.allclose(after, factor * before, atol=1e-5)
        factors.append(factor)
    assert all(0 <= f <= 2 for f in factors) and max(factors) - min(factors) > 0.3


def test_grey_images_and_grey_models_are_left_alone():
    grey = torch.rand(4, 1, 16, 16) * 2 - 1
    x0 = torch.ones(4, 1, 16, 16)
    three = grey.repeat(1, 3, 1, 1)  # a grey image in a colour model: three equal channels
    augmented, _ = augment_batch(three, x0, COLOUR_ONLY, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(augmented, three, atol=1e-5)
    one, _ = augment_batch(grey, x0, COLOUR_ONLY, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(one, grey, atol=1e-5)


def test_no_saturation_draws_nothing_more():
    """saturation 0 (train's default) augments exactly as before colour augmentation existed."""
    image, x0 = torch.rand(4, 3, 16, 16) * 2 - 1, torch.ones(4, 1, 16, 16)
    plain = augment_batch(image, x0, AugmentConfig(), generator=torch.Generator().manual_seed(5))[0]
    again = augment_batch(
        image, x0, AugmentConfig(saturation=0.0), generator=torch.Generator().manual_seed(5)
    )[0]
    assert torch.equal(plain, again)


@pytest.mark.parametrize("saturation", [-0.1, 1.5])
def test_a_saturation_out_of_range_is_refused(saturation):
    with pytest.raises(ConfigError, match="augment.saturation must be from 0 to 1"):
        TrainConfig(augment=AugmentConfig(saturation=saturation))
