"""Weight surgery: a widened child starts exactly where its parent was (tolerance 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.preprocess import LUMINANCE_WEIGHTS, luminance, normalise_intensity, prepare_image
from medsegdiff_training.schedule import NoiseSchedule
from medsegdiff_training.surgery import (
    Adaptation,
    adapt_model,
    adapted_preprocess,
    corrections_profile,
    plan_adaptation,
    resize_input,
)

TOLERANCE = 1e-5
TINY = named_config("tiny")


def trained_looking(config=TINY, seed: int = 0) -> MedSegDiffUNet:
    """A tiny network with every weight random (the output layer starts at zero otherwise)."""
    torch.manual_seed(seed)
    model = MedSegDiffUNet(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_complex():
                parameter.add_(0.1 * torch.randn_like(parameter))
            else:
                parameter.normal_(0, 0.3)
    return model


def colour_image(seed: int = 0, height: int = 45, width: int = 60) -> np.ndarray:
    """An RGB uint8 image whose channels are far from equal (a reddish disc, bluish corner)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (height / 3) ** 2
    red = 90 + 150 * disc + rng.normal(0, 20, (height, width))
    green = 60 + 90 * disc + rng.normal(0, 20, (height, width))
    blue = 40 + 80 * (xx > width * 0.7) + rng.normal(0, 20, (height, width))
    return np.stack([red, green, blue], -1).clip(0, 255).astype(np.uint8)


def outputs(model, image, preprocess, x_t, t):
    with torch.no_grad():
        return model(x_t, t, prepare_image(image, model.config, preprocess))


@pytest.mark.parametrize("normalisation", ["percentile", "minmax", "zscore"])
def test_the_rgb_child_computes_the_parents_output_on_the_luminance_of_rgb_and_on_grey(normalisation):
    parent = trained_looking()
    child = adapt_model(parent, image_channels=3)
    parent_pre = PreprocessConfig(normalisation=normalisation)
    child_pre = adapted_preprocess(parent_pre, Adaptation(1, 2, 3, 2))
    assert child.config.image_channels == 3 and child_pre.normalisation == f"luminance-{normalisation}"
    torch.manual_seed(1)
    x_t, t = torch.randn(1, 1, 32, 32), torch.tensor([437])
    rgb = colour_image()
    # the parent turns RGB into its luminance, then normalises; the child gets all three channels
    expected = outputs(parent, rgb, parent_pre, x_t, t)
    assert torch.allclose(outputs(child, rgb, child_pre, x_t, t), expected, atol=TOLERANCE)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], -1)
    assert torch.allclose(outputs(child, rgba, child_pre, x_t, t), expected, atol=TOLERANCE)
    grey = rgb[..., 1]
    assert torch.allclose(
        outputs(child, grey, child_pre, x_t, t), outputs(parent, grey, parent_pre, x_t, t), atol=TOLERANCE
    )
    # and the outputs are not trivially equal: another image gives another output
    assert not torch.allclose(outputs(parent, colour_image(5), parent_pre, x_t, t), expected, atol=1e-3)


def test_the_luminance_anchored_normalisation_keeps_colour_inside_the_range():
    image = np.moveaxis(colour_image(2).astype(np.float32), -1, 0)
    out = normalise_intensity(image, "luminance-percentile")
    anchored = normalise_intensity(luminance(image)[None], "percentile")[0]
    weighted = sum(w * channel for w, channel in zip(LUMINANCE_WEIGHTS, out, strict=True))
    assert np.abs(weighted - anchored).max() < TOLERANCE
    assert out.min() >= -1 and out.max() <= 1
    assert np.abs(out[0] - out[2]).mean() > 0.2  # colour kept, not three grey copies
    grey = np.repeat(image[1:2], 3, axis=0)
    copies = normalise_intensity(grey, "luminance-percentile")
    assert np.allclose(copies, normalise_intensity(grey[:1], "percentile"), atol=TOLERANCE)


@pytest.mark.parametrize("prediction", ["v", "epsilon"])
def test_a_binary_parent_widened_to_three_classes_keeps_its_foreground_and_background(prediction):
    parent = trained_looking()
    child = adapt_model(parent, num_classes=3)
    assert child.config.num_classes == 3 and child.config.mask_channels == 3
    torch.manual_seed(2)
    image, x_t, t = torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32), torch.tensor([900, 35])
    with torch.no_grad():
        old = parent(x_t[:, 1:2], t, image)
        new = child(x_t, t, image)
    assert old.abs().mean() > 0.1  # a real output to compare
    assert torch.allclose(new[:, 1:2], old, atol=TOLERANCE)  # foreground = the parent's channel
    assert torch.allclose(new[:, 0:1], -old, atol=TOLERANCE)  # background = its negation
    assert torch.equal(new[:, 2], torch.zeros_like(new[:, 2]))  # the new class starts at zero
    # where x_t is the 2-class one-hot encoding of the parent's x_t, so is the predicted x_0
    schedule = NoiseSchedule(DiffusionConfig(prediction=prediction))
    one_hot_x_t = torch.cat([-x_t[:, 1:2], x_t[:, 1:2], x_t[:, 2:]], 1)
    with torch.no_grad():
        x0_child = schedule.x0_from_output(child(one_hot_x_t, t, image), one_hot_x_t, t)
        x0_parent = schedule.x0_from_output(old, x_t[:, 1:2], t)
    assert torch.allclose(x0_child[:, 1:2], x0_parent, atol=TOLERANCE)
    assert torch.allclose(x0_child[:, 0:1], -x0_parent, atol=TOLERANCE)


def test_a_k_class_parent_keeps_its_classes_and_both_widenings_combine():
    parent = trained_looking(TINY.replace(num_classes=3))
    child = adapt_model(parent, image_channels=3, num_classes=5)
    torch.manual_seed(3)
    grey, x_t, t = torch.randn(1, 1, 32, 32), torch.randn(1, 5, 32, 32), torch.tensor([500])
    with torch.no_grad():
        old = parent(x_t[:, :3], t, grey)
        new = child(x_t, t, grey.repeat(1, 3, 1, 1))  # equal channels: luminance = the grey image
    assert torch.allclose(new[:, :3], old, atol=TOLERANCE)
    assert torch.equal(new[:, 3:], torch.zeros_like(new[:, 3:]))
    assert parent.config.num_classes == 3  # the parent is untouched


def test_the_plan_widens_only_and_says_why_it_cannot_narrow():
    grey_binary = TINY
    assert plan_adaptation(grey_binary, 3, 3).describe() == "3 classes, RGB (the parent: binary, grey)"
    assert plan_adaptation(grey_binary, 1, 2).describe() == "binary, grey, as the parent"
    assert plan_adaptation(grey_binary, 3, 3, channels=1, num_classes=2).changes is False
    rgb_parent = TINY.replace(image_channels=3, num_classes=3)
    assert plan_adaptation(rgb_parent, 1, 2) == Adaptation(3, 3, 3, 3)  # grey data is replicated
    with pytest.raises(ConfigError, match="cannot have fewer"):
        plan_adaptation(rgb_parent, 1, 2, num_classes=2)
    with pytest.raises(ConfigError, match="cannot take"):
        plan_adaptation(rgb_parent, 1, 2, channels=1)
    with pytest.raises(ConfigError, match="RGB"):
        plan_adaptation(grey_binary, 1, 2, channels=2)


def test_the_corrections_say_which_channels_and_classes_they_need(tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    labels = np.zeros((20, 20), np.uint8)
    labels[5:10, 5:10] = 255
    store.add(np.zeros((20, 20), np.uint8), labels)
    assert corrections_profile(store.entries()) == (1, 2)  # 0/255 is binary
    labels[12:15, 12:15] = 2
    labels[labels == 255] = 1
    store.add(np.zeros((3, 20, 20), np.float32), labels)  # a channel-first RGB stack
    assert corrections_profile(store.entries()) == (3, 3)


def relative_frequency_filter(channels: int, height: int, width: int) -> torch.Tensor:
    """A complex rfft2 filter that is a smooth function of the relative frequency."""
    rows = torch.fft.fftfreq(height).view(-1, 1)  # -0.5 .. 0.5 cycles per pixel
    columns = torch.fft.rfftfreq(width).view(1, -1)  # 0 .. 0.5
    scale = torch.linspace(0.5, 1, channels).view(-1, 1, 1)
    real = 1 + scale * torch.cos(2 * rows) * (1 - columns)
    imaginary = scale * rows * columns
    return torch.complex(real, imaginary)


def test_a_resized_network_takes_the_new_size_and_keeps_every_size_free_weight():
    parent = trained_looking()
    before = {name: tensor.clone() for name, tensor in parent.state_dict().items()}
    child = resize_input(parent, (48, 40))
    assert child.config.image_size == (48, 40) and parent.config.image_size == TINY.image_size
    assert all(torch.equal(parent.state_dict()[name], before[name]) for name in before)  # untouched
    filters = [name for name in before if before[name].is_complex()]
    assert filters  # the tiny network has FF-Parsers on its skips
    for name, tensor in child.state_dict().items():
        if name not in filters:
            assert torch.equal(tensor, before[name]), name
    assert [tuple(child.state_dict()[name].shape[-2:]) for name in filters] == [
        (height, width // 2 + 1) for height, width in child.config.level_sizes()[: len(filters)]
    ]
    image = torch.randn(1, child.config.input_channels, 48, 40)
    x_t = torch.randn(1, child.config.mask_channels, 48, 40)
    assert child(x_t, torch.tensor([10]), image).shape == x_t.shape
    same = resize_input(parent, TINY.image_size).state_dict()
    assert same.keys() == before.keys()
    assert all(torch.equal(same[name], before[name]) for name in before)  # its own size: exact


def test_resizing_keeps_each_frequency_filter_a_function_of_relative_frequency():
    """Identity filters stay identity; a smooth filter of relative frequency is the same
    function on the new grid (up to the resampling's error), for larger and smaller sizes."""
    parent = trained_looking()
    with torch.no_grad():
        for name, parameter in parent.named_parameters():
            if parameter.is_complex():
                parameter.copy_(relative_frequency_filter(*parameter.shape[:2], filter_width(parent, name)))
    for size in ((64, 64), (24, 24), (50, 36)):
        child = resize_input(parent, size)
        for name, parameter in child.named_parameters():
            if parameter.is_complex():
                expected = relative_frequency_filter(*parameter.shape[:2], filter_width(child, name))
                assert torch.allclose(parameter, expected, atol=0.1), (size, name)
    ones = trained_looking()
    with torch.no_grad():
        for parameter in ones.parameters():
            if parameter.is_complex():
                parameter.fill_(1)
    for name, parameter in resize_input(ones, (64, 48)).named_parameters():
        if parameter.is_complex():
            assert torch.allclose(parameter, torch.ones_like(parameter)), name


def filter_width(model: MedSegDiffUNet, name: str) -> int:
    """The feature width of the FF-Parser in ``model`` holding parameter ``name``."""
    return model.get_submodule(name.rsplit(".", 1)[0]).size[1]
