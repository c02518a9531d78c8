"""The network reads like Section II of the paper: blocks, fusion (eq. 3), FF-Parser (eq. 4-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsegdiff_training.config import NAMED_CONFIGS, named_config
from medsegdiff_training.model import DynamicConditionalEncoding, FFParser, MedSegDiffUNet, count_parameters
from medsegdiff_training.model.blocks import ResidualBlock, StemConv, TimeEmbedding
from medsegdiff_training.summary import describe


def test_residual_block_adds_the_time_embedding_and_passes_gradients():
    block = ResidualBlock(8, 16, time_dim=12, groups=4)
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    t_a, t_b = torch.randn(2, 12), torch.randn(2, 12)
    out = block(x, t_a)
    assert out.shape == (2, 16, 10, 10)
    assert not torch.allclose(out, block(x, t_b))  # the time embedding matters
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())


def test_time_embedding_is_linear_silu_linear_over_sinusoids():
    embedding = TimeEmbedding(16, 64)
    assert [type(m).__name__ for m in embedding.mlp] == ["Linear", "SiLU", "Linear"]
    out = embedding(torch.tensor([0, 500, 999]))
    assert out.shape == (3, 64) and not torch.allclose(out[0], out[2])


def test_fusion_equals_the_papers_formula_computed_directly():
    fusion = DynamicConditionalEncoding(6)
    with torch.no_grad():
        for norm in (fusion.norm_image, fusion.norm_mask):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    m_image, m_mask = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 5, 7)

    def layer_norm(x, norm):  # LN over (C, H, W), per-channel affine
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[:, None, None]

    expected = layer_norm(m_image, fusion.norm_image) * layer_norm(m_mask, fusion.norm_mask) * m_image
    assert torch.allclose(fusion(m_image, m_mask), expected, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (15, 22), (9, 4)])
def test_ff_parser_is_a_trainable_complex_filter_for_any_size(size):
    parser = FFParser(3, size)
    assert parser.weight.dtype == torch.complex64 and parser.weight.requires_grad
    x = torch.randn(2, 3, *size)
    assert torch.allclose(parser(x), x, atol=1e-5)  # starts as the identity
    with torch.no_grad():
        parser.weight[:, 1:, :] *= 0.1  # damp all but the first row of frequencies
    filtered = parser(x)
    assert filtered.shape == x.shape and not torch.allclose(filtered, x, atol=1e-3)
    manual = torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * parser.weight, s=size, norm="ortho")
    assert torch.allclose(filtered, manual, atol=1e-5)
    filtered.pow(2).sum().backward()
    assert parser.weight.grad is not None and parser.weight.grad.abs().sum() > 0


def test_stem_convolution_equals_a_plain_convolution():
    stem = StemConv(1, 8)
    x = torch.randn(2, 1, 11, 13)
    assert torch.allclose(stem(x), F.conv2d(x, stem.weight, stem.bias, padding=1), atol=1e-6)


def test_the_network_predicts_noise_shaped_like_the_mask_and_learns_everywhere():
    model = MedSegDiffUNet(named_config("tiny", num_classes=3, image_channels=3))
    x_t, image = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    out = model(x_t, torch.tensor([3, 900]), image)
    assert out.shape == (2, 3, 32, 32)
    (out - torch.randn_like(out)).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert len(model.fusions) == 2 and sum(p.is_complex() for p in model.parameters()) == 2


def test_the_ablation_switches_remove_fusion_and_ff_parser():
    plain = MedSegDiffUNet(named_config("tiny", dynamic_conditioning=False, ff_parser=False))
    assert len(plain.fusions) == 0 and not any(p.is_complex() for p in plain.parameters())
    assert plain(torch.randn(1, 1, 32, 32), torch.tensor([10]), torch.randn(1, 1, 32, 32)).shape == (
        1,
        1,
        32,
        32,
    )
    assert count_parameters(plain) < count_parameters(MedSegDiffUNet(named_config("tiny")))


def test_the_papers_variants_have_their_downsamplings_and_run_at_a_small_size():
    assert {n: NAMED_CONFIGS[n].downsamplings for n in ("S", "B", "L", "++")} == {
        "S": 4,
        "B": 5,
        "L": 6,
        "++": 6,
    }
    for name in ("S", "B"):
        config = named_config(name, image_size=(64, 48), base_channels=8, groups=4)
        model = MedSegDiffUNet(config)
        out = model(torch.randn(1, 1, 64, 48), torch.tensor([5]), torch.randn(1, 1, 64, 48))
        assert out.shape == (1, 1, 64, 48)
    assert "parameters" in describe(named_config("S")) and "E^I+E^x" in describe(named_config("cpu"))


def test_a_wrong_input_size_is_refused_with_a_clear_message():
    model = MedSegDiffUNet(named_config("tiny"))
    with pytest.raises(ValueError, match="preprocess the image"):
        model(torch.randn(1, 1, 40, 40), torch.tensor([1]), torch.randn(1, 1, 40, 40))
