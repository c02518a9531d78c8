"""The forward diffusion process q(x_t | x_0) and the training loss (paper eq. 1, 7)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiffusionConfig


def make_betas(config: DiffusionConfig) -> torch.Tensor:
    """Beta schedule in float64: the DDPM linear one, or the cosine one of Nichol & Dhariwal."""
    steps = config.timesteps
    if config.schedule == "linear":
        # Scaled so that any T gives the same curve as T = 1000 with (1e-4, 0.02).
        scale = 1000.0 / steps
        return torch.linspace(scale * config.beta_start, scale * config.beta_end, steps, dtype=torch.float64)
    s = 0.008
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    alphas_cumprod = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=0.999)


class NoiseSchedule:
    """Cumulative products of the schedule and the operations built on them.

    Examples
    --------
    >>> schedule = NoiseSchedule(DiffusionConfig())
    >>> len(schedule)
    1000
    >>> float(schedule.alphas_cumprod[0]) > 0.999 > float(schedule.alphas_cumprod[-1])
    True
    """

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        self.betas = make_betas(config)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def __len__(self) -> int:
        return self.config.timesteps

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar at integer timesteps ``t``, shaped to broadcast against ``like``."""
        values = self.alphas_cumprod.to(like.device)[t.to(like.device).long()]
        return values.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (paper eq. 1)."""
        abar = self.abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = self.abar(t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def x0_from_output(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output turned into predicted x_0 (for v without dividing by sqrt(abar))."""
        if self.config.prediction == "epsilon":
            return self.predict_x0(x_t, t, output)
        abar = self.abar(t, x_t)
        return abar.sqrt() * x_t - (1 - abar).sqrt() * output

    def training_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network learns to output: eps (paper eq. 7) or v."""
        if self.config.prediction == "epsilon":
            return noise
        abar = self.abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def noise_from_output(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output turned into predicted noise, whatever it was trained on."""
        if self.config.prediction == "epsilon":
            return output
        abar = self.abar(t, x_t)
        return (1 - abar).sqrt() * x_t + abar.sqrt() * output

    def sample_timesteps(
        self,
        batch: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        floor: float = 0.0,
    ) -> torch.Tensor:
        """``batch`` timesteps drawn uniformly from ``floor * T`` to ``T - 1`` (all of them at 0)."""
        low = min(int(math.ceil(floor * len(self))), len(self) - 1)
        return torch.randint(low, len(self), (batch,), device=device, generator=generator)


def mask_to_model_space(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Turn a (B, H, W) integer label map into x_0 in [-1, 1].

    Binary: one channel, foreground = 1, background = -1. K classes: K one-hot channels.
    """
    mask = mask.long()
    if num_classes == 2:
        return (mask > 0).float().unsqueeze(1) * 2 - 1
    one_hot = F.one_hot(mask.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return one_hot.float() * 2 - 1


def soft_dice_loss(x0_hat: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice between predicted and true masks in model space, averaged over images and classes.

    Binary masks have one channel (the foreground); with K one-hot channels the background
    channel 0 is left out. Predictions are clamped to [-1, 1] before they become
    probabilities; the MSE term beside this one keeps a gradient where the clamp has none.
    """
    if x0.shape[1] > 1:
        x0_hat, x0 = x0_hat[:, 1:], x0[:, 1:]
    p = ((x0_hat.float().clamp(-1, 1) + 1) / 2).flatten(2)
    g = ((x0.float() + 1) / 2).flatten(2)
    dice = (2 * (p * g).sum(2) + 1) / (p.sum(2) + g.sum(2) + 1)  # per image and class
    return 1 - dice.mean()


def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    image: torch.Tensor,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    mask_loss_weight: float = 0.0,
    timestep_floor: float = 0.0,
) -> torch.Tensor:
    """The simple MSE of paper eq. 7 for one batch (on v instead of eps when so configured).

    ``mask_loss_weight`` > 0 adds that weight times a soft-Dice loss on the x_0 the output
    implies (our addition, off by default: the paper trains on the MSE alone).
    ``timestep_floor`` > 0 draws t from the noisier end only (see
    :class:`~.train_config.TrainConfig`; the paper draws from all T).
    """
    t = schedule.sample_timesteps(x0.shape[0], x0.device, generator, floor=timestep_floor)
    noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
    x_t = schedule.q_sample(x0, t, noise)
    output = model(x_t, t, image).float()
    loss = F.mse_loss(output, schedule.training_target(x0, t, noise))
    if mask_loss_weight:
        loss = loss + mask_loss_weight * soft_dice_loss(schedule.x0_from_output(output, x_t, t), x0)
    return loss
