"""Augmentation suited to medical images, on whole batches in torch.

Flips, a small random affine (rotation, scale, shift) applied identically to image and
mask, and intensity jitter (gamma, contrast, brightness) on the image only. Grayscale stays
grayscale; a colour image may have its colour scaled around its luminance (``saturation``:
from grey to twice as colourful, the luminance unchanged), so a colour model learns to use
colour without depending on the exact hues of a few images. Written in plain torch (about 50 lines) instead of
pulling in a library: it runs on the batch and on the GPU alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..preprocess import LUMINANCE_WEIGHTS
from ..train_config import AugmentConfig

__all__ = ["AugmentConfig", "augment_batch"]


def augment_batch(
    image: torch.Tensor,
    x0: torch.Tensor,
    config: AugmentConfig = AugmentConfig(),
    generator: torch.Generator | None = None,
    prompt_channels: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (B, C, H, W) images in [-1, 1] and their masks x0 (B, K, H, W) in [-1, 1].

    The last ``prompt_channels`` of the image (the box channel) move with the image and
    stay a clean ±1 map; intensity changes touch only the image's own channels.
    """
    batch, device = image.shape[0], image.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator, device=device) * (high - low) + low

    angle = uniform(-1, 1) * math.radians(config.rotate_degrees)
    scale = 1 + uniform(-1, 1) * config.scale
    flip_x = torch.where(uniform(0, 1) < config.horizontal_flip, -1.0, 1.0)
    flip_y = torch.where(uniform(0, 1) < config.vertical_flip, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = torch.cos(angle) / scale * flip_x
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * flip_x
    theta[:, 1, 1] = torch.cos(angle) / scale * flip_y
    theta[:, 0, 1] *= flip_y
    theta[:, 0, 2] = uniform(-1, 1) * config.shift * 2
    theta[:, 1, 2] = uniform(-1, 1) * config.shift * 2
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # masks: resample then snap back to {-1, 1} so the diffusion target stays a clean mask
    x0 = F.grid_sample(x0, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if x0.shape[1] == 1:
        x0 = torch.where(x0 > 0, 1.0, -1.0)
    else:
        x0 = F.one_hot(x0.argmax(1), x0.shape[1]).permute(0, 3, 1, 2).float() * 2 - 1

    prompt = None
    if prompt_channels:
        image, prompt = image[:, :-prompt_channels], torch.where(image[:, -prompt_channels:] > 0, 1.0, -1.0)
    if image.shape[1] == 3 and config.saturation > 0:
        image = _scale_colour(image, (1 + uniform(-1, 1) * config.saturation).clamp(min=0))
    # intensity, in [0, 1]: gamma, then contrast around the mean, then brightness
    unit = (image + 1) / 2
    gamma = torch.exp(uniform(-1, 1) * config.gamma).view(-1, 1, 1, 1)
    unit = unit.clamp(0, 1) ** gamma
    mean = unit.mean(dim=(1, 2, 3), keepdim=True)
    unit = (unit - mean) * (1 + uniform(-1, 1) * config.contrast).view(-1, 1, 1, 1) + mean
    unit = unit + (uniform(-1, 1) * config.brightness).view(-1, 1, 1, 1)
    image = unit.clamp(0, 1) * 2 - 1
    if prompt is not None:
        image = torch.cat([image, prompt.to(image.dtype)], dim=1)
    return image, x0


def _scale_colour(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images with each one's deviations from its luminance times ``factor``.

    The ITU-R 601 luminance is linear, so it stays what it was (up to clipping to [-1, 1]
    where a factor above 1 pushes a channel past it); factor 0 gives three copies of the
    luminance, which a luminance-anchored child reads as its grey parent did.
    """
    weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    grey = (image * weights).sum(dim=1, keepdim=True)
    return (grey + factor.view(-1, 1, 1, 1) * (image - grey)).clamp(-1, 1)
