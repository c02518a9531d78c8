"""Shapes and wiring of the network's parts beyond test_network.py: encoders, decoder,
resampling at odd sizes, the cached image condition, every named configuration's size."""

from __future__ import annotations

import math

import pytest
import torch

from medsegdiff_training.config import NAMED_CONFIGS, named_config
from medsegdiff_training.model import MedSegDiffUNet, count_parameters
from medsegdiff_training.model.blocks import Downsample, StemConv, Upsample, sinusoidal_embedding
from medsegdiff_training.model.network import Decoder, Encoder
from medsegdiff_training.summary import describe, parameter_counts


def test_sinusoidal_embedding_matches_its_formula_for_odd_sizes_and_fractional_t():
    t = torch.tensor([0.0, 2.5, 999.0])
    embedding = sinusoidal_embedding(t, 7)
    assert embedding.shape == (3, 7) and torch.all(embedding[:, -1] == 0)  # odd size: zero padded
    frequency = math.exp(-math.log(10000.0) * 1 / 3)
    assert embedding[1, 1].item() == pytest.approx(math.cos(2.5 * frequency), abs=1e-6)
    assert embedding[1, 4].item() == pytest.approx(math.sin(2.5 * frequency), abs=1e-6)


@pytest.mark.parametrize("size", [(9, 9), (10, 7), (33, 20)])
def test_downsampling_rounds_up_and_upsampling_restores_the_skip_size(size):
    x = torch.randn(1, 4, *size, requires_grad=True)
    down = Downsample(4, 8)(x)
    assert down.shape == (1, 8, math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    up = Upsample(8, 4)(down, size)
    assert up.shape == x.shape
    up.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_stem_convolution_gradients_equal_a_plain_convolutions():
    stem = StemConv(1, 6)
    x = torch.randn(2, 1, 9, 12, requires_grad=True)
    stem(x).pow(2).sum().backward()
    stem_grads = (x.grad.clone(), stem.weight.grad.clone())
    x.grad, stem.weight.grad = None, None
    torch.nn.functional.conv2d(x, stem.weight, stem.bias, padding=1).pow(2).sum().backward()
    assert torch.allclose(stem_grads[0], x.grad, atol=1e-5)
    assert torch.allclose(stem_grads[1], stem.weight.grad, atol=1e-5)
    three = StemConv(3, 6)  # more than one channel: the ordinary convolution
    image = torch.randn(1, 3, 8, 8)
    assert torch.equal(three(image), torch.nn.functional.conv2d(image, three.weight, three.bias, padding=1))


def test_encoders_and_decoder_produce_the_configured_levels():
    config = named_config("cpu", image_size=(40, 24))
    channels = [config.base_channels * m for m in config.channel_mults]
    time_dim = 4 * config.base_channels
    encoder = Encoder(config, 1, time_dim)
    assert len(encoder.stages) == config.dual_levels
    assert [len(stage.blocks) for stage in encoder.stages] == list(
        config.encoder_blocks[: config.dual_levels]
    )
    h, embedding = encoder.stem(torch.randn(2, 1, 40, 24)), torch.randn(2, time_dim)
    skips = []
    for stage, downsample in zip(encoder.stages, encoder.downsamples, strict=True):
        h = stage(h, embedding)
        skips.append(h)
        h = downsample(h)
    assert [tuple(s.shape[1:]) for s in skips] == [
        (c, *size) for c, size in zip(channels, config.level_sizes(), strict=True)
    ][: config.dual_levels]
    assert tuple(h.shape[1:]) == (channels[-1], *config.level_sizes()[-1])  # into E^I + E^x
    out = Decoder(config, time_dim)(h, skips, embedding)
    assert out.shape == (2, channels[0], 40, 24)


def test_a_non_square_odd_sized_model_runs_end_to_end_with_gradients():
    config = named_config("tiny", image_size=(27, 18))
    model = MedSegDiffUNet(config)
    assert [tuple(p.weight.shape[1:]) for p in model.skip_parsers] == [
        (h, w // 2 + 1) for h, w in config.level_sizes()[: config.dual_levels]
    ]
    image = torch.randn(2, 1, 27, 18, requires_grad=True)
    out = model(torch.randn(2, 1, 27, 18), torch.tensor([1, 2]), image)
    assert out.shape == (2, 1, 27, 18)
    out.sum().backward()  # the zero-initialised head passes gradients to its own weights
    assert model.head[-1].weight.grad.abs().sum() > 0


def test_the_cached_condition_gives_the_same_noise_as_the_image_and_broadcasts_to_an_ensemble():
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny")).eval()
    with torch.no_grad():
        model.head[-1].weight.normal_(0, 0.1)
    image, x_t, t = torch.randn(1, 1, 32, 32), torch.randn(3, 1, 32, 32), torch.tensor([5, 400, 900])
    with torch.inference_mode():
        condition = model.encode_condition(image)
        direct = model(x_t, t, image.expand(3, -1, -1, -1))
        cached = model(x_t, t, condition=condition)  # batch 1 condition, 3 members
        scalar_t = model(x_t[:1], torch.tensor(5), condition=condition)
    assert torch.allclose(direct, cached, atol=1e-6)
    assert torch.allclose(scalar_t, direct[:1], atol=1e-6)
    with pytest.raises(ValueError, match="image or its encoded condition"):
        model(x_t, t)


def test_every_named_configuration_has_its_parameter_count_and_summary():
    counts = parameter_counts()
    assert set(counts) == set(NAMED_CONFIGS)
    assert counts["tiny"] < counts["cpu"] < counts["S"] < counts["B"] < counts["L"] < counts["++"]
    assert counts["tiny"] == count_parameters(MedSegDiffUNet(named_config("tiny")))
    # the image encoder of the paper's variants follows ResNet34: 3, 4, 6, 3 blocks
    assert all(NAMED_CONFIGS[n].encoder_blocks[:4] == (3, 4, 6, 3) for n in ("S", "B", "L", "++"))
    for name, config in NAMED_CONFIGS.items():
        text = describe(config)
        assert f"parameters: {counts[name]:,}" in text
        assert len([line for line in text.splitlines() if line.strip()[:1].isdigit()]) == len(
            config.channel_mults
        )


@pytest.mark.parametrize("name", ["L", "++"])
def test_the_deepest_variants_run_at_a_reduced_size(name):
    config = named_config(name, image_size=(64, 64), base_channels=8, groups=4)
    assert config.downsamplings == 6 and config.level_sizes()[-1] == (1, 1)
    model = MedSegDiffUNet(config)
    out = model(torch.randn(1, 1, 64, 64), torch.tensor([10]), torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 1, 64, 64)
