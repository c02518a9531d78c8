"""The forward process and the loss against formulas written out here (Ho et al.; Nichol & Dhariwal)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsegdiff_training.config import DiffusionConfig
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss, mask_to_model_space, soft_dice_loss


def test_the_cosine_schedule_is_nichol_and_dhariwals():
    steps, s = 1000, 0.008
    f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    schedule = NoiseSchedule(DiffusionConfig(schedule="cosine"))
    assert schedule.betas.dtype == torch.float64
    assert np.allclose(schedule.betas.numpy(), betas, rtol=1e-10, atol=1e-12)
    assert np.allclose(schedule.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-10)


def test_a_shorter_linear_schedule_follows_the_same_curve():
    schedule = NoiseSchedule(DiffusionConfig(timesteps=100))
    assert np.allclose(schedule.betas.numpy(), np.linspace(1e-3, 0.2, 100), rtol=1e-12)


def test_binary_and_k_class_masks_in_model_space():
    binary = torch.tensor([[[0, 1], [255, 0]]])
    assert torch.equal(mask_to_model_space(binary, 2), torch.tensor([[[[-1.0, 1.0], [1.0, -1.0]]]]))
    # K classes: one-hot channels; labels outside 0..K-1 are clamped into it
    labels = torch.tensor([[[0, 1], [-3, 7]]])
    x0 = mask_to_model_space(labels, 3)
    assert x0.shape == (1, 3, 2, 2)
    expected = torch.tensor([[[1, 0], [1, 0]], [[0, 1], [0, 0]], [[0, 0], [0, 1]]]) * 2.0 - 1
    assert torch.equal(x0[0], expected)
    assert mask_to_model_space(torch.zeros(1, 2, 2, dtype=torch.long), 4).shape == (1, 4, 2, 2)


def test_soft_dice_leaves_the_background_channel_out():
    truth = mask_to_model_space(torch.tensor([[[0, 1], [1, 0]]]), 3)  # no pixel of class 2
    wrong_background = truth.clone()
    wrong_background[:, 0] = -truth[:, 0]
    assert soft_dice_loss(wrong_background, truth).item() == pytest.approx(
        soft_dice_loss(truth, truth).item()
    )
    two = truth[:, :2]  # background + one class as one-hot
    flipped = two.clone()
    flipped[:, 0] = -two[:, 0]
    assert soft_dice_loss(flipped, two).item() == pytest.approx(soft_dice_loss(two, two).item())


def test_epsilon_output_is_the_noise_itself():
    schedule = NoiseSchedule(DiffusionConfig(prediction="epsilon"))
    output, x_t, t = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.tensor([5, 500])
    assert schedule.noise_from_output(output, x_t, t) is output


def test_timesteps_cover_0_to_t_minus_1_and_repeat_with_a_seed():
    schedule = NoiseSchedule(DiffusionConfig())
    draws = schedule.sample_timesteps(100_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert draws.min() == 0 and draws.max() == 999
    again = schedule.sample_timesteps(100_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


@pytest.mark.parametrize(("floor", "low"), [(0.5, 500), (0.4996, 500), (0.9999, 999)])
def test_a_timestep_floor_draws_the_noisy_end_only(floor, low):
    schedule = NoiseSchedule(DiffusionConfig())
    draws = schedule.sample_timesteps(
        20_000, torch.device("cpu"), torch.Generator().manual_seed(0), floor=floor
    )
    assert draws.min() == low and draws.max() == 999
    assert torch.bincount(draws - low).min() > 0  # every timestep from the floor up is drawn


def test_the_loss_draws_its_timesteps_above_the_floor():
    schedule, model = NoiseSchedule(DiffusionConfig()), _Recording()
    x0 = mask_to_model_space((torch.rand(64, 4, 4) > 0.5).long(), 2)
    diffusion_loss(
        model, schedule, torch.randn(64, 1, 4, 4), x0, torch.Generator().manual_seed(0), timestep_floor=0.75
    )
    assert model.t.min() >= 750
    diffusion_loss(model, schedule, torch.randn(64, 1, 4, 4), x0, torch.Generator().manual_seed(0))
    assert model.t.min() < 750  # the paper's draw: all of T


class _Recording(nn.Module):
    """A stand-in network: a fixed function of x_t that remembers what it was given."""

    def forward(self, x_t, t, image):
        self.x_t, self.t = x_t, t
        return 0.5 * x_t + 0.1 * image


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("weight", [None, 0.5])
def test_the_loss_is_paper_eq_7_plus_the_weighted_soft_dice(prediction, weight):
    schedule = NoiseSchedule(DiffusionConfig(prediction=prediction))
    model = _Recording()
    image = torch.randn(3, 1, 8, 8)
    x0 = mask_to_model_space((torch.rand(3, 8, 8) > 0.5).long(), 2)
    extra = {} if weight is None else {"mask_loss_weight": weight}
    loss = diffusion_loss(model, schedule, image, x0, torch.Generator().manual_seed(1), **extra)
    assert model.t.shape == (3,)
    abar = schedule.alphas_cumprod[model.t].float().view(3, 1, 1, 1)
    noise = (model.x_t - abar.sqrt() * x0) / (1 - abar).sqrt()  # what was added, recovered
    output = 0.5 * model.x_t + 0.1 * image
    target = noise if prediction == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    expected = F.mse_loss(output, target)
    if weight:
        x0_hat = (
            (model.x_t - (1 - abar).sqrt() * output) / abar.sqrt()
            if prediction == "epsilon"
            else abar.sqrt() * model.x_t - (1 - abar).sqrt() * output
        )
        p, g = ((x0_hat.clamp(-1, 1) + 1) / 2).flatten(2), ((x0 + 1) / 2).flatten(2)
        dice = (2 * (p * g).sum(2) + 1) / (p.sum(2) + g.sum(2) + 1)
        expected = expected + weight * (1 - dice.mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    # the generator alone decides the draw
    again = diffusion_loss(model, schedule, image, x0, torch.Generator().manual_seed(1), **extra)
    assert again.item() == loss.item()
    other = diffusion_loss(model, schedule, image, x0, torch.Generator().manual_seed(2), **extra)
    assert other.item() != loss.item()
