"""Weight surgery: a parent network widened for colour images or for more classes, or resized.

Fine-tuning calls :func:`adapt_model` when the corrections need a model the parent is not
(RGB corrections for a grey parent, label values the parent lacks). The child is the
parent with a wider image stem and/or a wider mask path, initialised so that it starts
where the parent was. What holds exactly at step 0 (before any training step), up to
float32 rounding:

Channels (a 1-channel parent, a 3-channel child). The child's preprocessing is the
parent's normalisation *anchored on the luminance* (``"luminance-percentile"`` for a
``"percentile"`` parent; :func:`~medsegdiff_training.preprocess.normalise_luminance_anchored`):
the three normalised channels are the parent's normalised luminance ``n_L`` plus colour
deviations whose ITU-R 601 weighted sum is zero. The child's image stem is the parent's
stem times (0.299, 0.587, 0.114) per input channel. So for **every** image (grey, RGB or
RGBA), the child on the image computes exactly what the parent computed on the image's
luminance, through preprocessing (the normalisation is applied to the luminance, as the
parent's preprocessing does; resizing is linear and commutes) and the whole network.
A grey image becomes three copies of ``n_L`` and gives the parent's output too. (With
plain per-channel normalisation this could not hold: the luminance of separately
normalised channels is not the normalised luminance unless the channels are positive
affine images of one another.) A 3-channel parent given grey corrections needs no
surgery: preprocessing replicates the grey channel.

Classes (a parent with K_p classes, a child with K_c > K_p). Label values keep their
meaning: the child's classes 0..K_p-1 are the parent's, K_p..K_c-1 are new. The mask
encoder's stem reads only the old classes' channels of x_t (zero weights for new ones),
so every feature of the network is the parent's; the output layer gives the old classes
the parent's output and the new classes zero. Hence for every image, t and x_t:

- K_p > 2 (one-hot parent): ``child(x_t)[:, :K_p] == parent(x_t[:, :K_p])`` and
  ``child(x_t)[:, K_p:] == 0``.
- K_p = 2 (binary parent, one mask channel m = foreground, background = -m): the
  foreground class 1 reads the parent's channel, ``child(x_t)[:, 1] == parent(x_t[:, 1])``;
  the background gets the negated output, ``child(x_t)[:, 0] == -parent(x_t[:, 1])``;
  new classes get 0. Predicted x_0 is linear in (x_t, output) per channel for epsilon and
  v alike, so wherever ``x_t[:, 0] == -x_t[:, 1]`` (the 2-class one-hot encoding of the
  parent's binary x_t) the child's predicted x_0 for classes 0 and 1 is exactly the
  one-hot encoding of the parent's predicted x_0 (-x0, x0).

Not preserved: samplers draw each class channel's noise independently, so a sampled child
label map is not the parent's; the new classes start with no opinion (output 0).

Examples
--------
>>> from medsegdiff_training.config import named_config
>>> from medsegdiff_training.model import MedSegDiffUNet
>>> parent = MedSegDiffUNet(named_config("tiny"))
>>> child = adapt_model(parent, image_channels=3, num_classes=3)
>>> child.config.image_channels, child.config.num_classes
(3, 3)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .adaptation import Adaptation, corrections_profile, plan_adaptation
from .config import ModelConfig, PreprocessConfig
from .errors import ConfigError
from .model import MedSegDiffUNet
from .model.ff_parser import FFParser
from .preprocess import LUMINANCE_ANCHORED, LUMINANCE_WEIGHTS

__all__ = [
    "Adaptation",
    "adapt_model",
    "add_box_channel",
    "adapted_preprocess",
    "corrections_profile",
    "plan_adaptation",
    "resize_input",
]

IMAGE_STEM = "image_encoder.stem"
MASK_STEM = "mask_encoder.stem"
OUTPUT = "head.2"


def adapted_preprocess(preprocess: PreprocessConfig, adaptation: Adaptation) -> PreprocessConfig:
    """The child's preprocessing: a grey parent's normalisation anchored on the luminance."""
    if adaptation.parent_channels == 1 and adaptation.channels == 3:
        method = preprocess.normalisation
        if not method.startswith(LUMINANCE_ANCHORED):
            return dataclasses.replace(preprocess, normalisation=LUMINANCE_ANCHORED + method)
    return preprocess


@torch.no_grad()
def adapt_model(
    parent: MedSegDiffUNet, image_channels: int | None = None, num_classes: int | None = None
) -> MedSegDiffUNet:
    """A new network: ``parent`` with a wider image stem and/or mask path (see module docstring).

    The parent is left untouched; every other weight is copied.
    """
    config = parent.config
    plan = plan_adaptation(config, config.image_channels, config.num_classes, image_channels, num_classes)
    child_config = config.replace(image_channels=plan.channels, num_classes=plan.classes)
    child = MedSegDiffUNet(child_config)
    weights = {name: tensor.clone() for name, tensor in parent.state_dict().items()}
    if plan.channels != plan.parent_channels:
        stem = weights[f"{IMAGE_STEM}.weight"]  # (out, 1 + prompt channels, 3, 3)
        luma = torch.tensor(LUMINANCE_WEIGHTS, dtype=stem.dtype).view(1, 3, 1, 1)
        weights[f"{IMAGE_STEM}.weight"] = torch.cat([stem[:, :1] * luma, stem[:, 1:]], dim=1)
    if plan.classes != plan.parent_classes:
        _widen_mask_path(weights, child.state_dict(), config, child_config)
    child.load_state_dict(weights)
    return child.train(parent.training)


@torch.no_grad()
def add_box_channel(parent: MedSegDiffUNet) -> MedSegDiffUNet:
    """A new network: ``parent`` reading one more input channel, the box, with zero weights.

    At step 0 the child ignores the box and computes exactly what the parent computes on
    the image; training then learns what the box tells. The parent is left untouched.
    """
    if parent.config.prompt_channels:
        raise ConfigError("The model reads the box channel already.")
    child = MedSegDiffUNet(parent.config.replace(prompt_channels=1))
    weights = {name: tensor.clone() for name, tensor in parent.state_dict().items()}
    stem = weights[f"{IMAGE_STEM}.weight"]  # (out, C, 3, 3)
    weights[f"{IMAGE_STEM}.weight"] = torch.cat([stem, torch.zeros_like(stem[:, :1])], dim=1)
    child.load_state_dict(weights)
    return child.train(parent.training)


@torch.no_grad()
def resize_input(parent: MedSegDiffUNet, image_size: tuple[int, int]) -> MedSegDiffUNet:
    """A new network: ``parent`` for another input size (e.g. 128x128 from 96x96).

    Convolutions, norms and the conditioning do not depend on the size; each FF-Parser's
    frequency map does. It is resampled (real and imaginary parts, bilinearly) so that a
    frequency keeps the weight of the same *relative* frequency: the zero frequency stays
    at zero, the highest at the highest, the rows' negative frequencies stay negative
    (shifted to the middle while resampled). Resized to its own size the child is the
    parent exactly. The parent is left untouched.
    """
    height, width = (int(side) for side in image_size)
    child = MedSegDiffUNet(parent.config.replace(image_size=(height, width)))
    weights = {name: tensor.clone() for name, tensor in parent.state_dict().items()}
    for name, module in child.named_modules():
        if isinstance(module, FFParser):
            key = f"{name}.weight"
            weights[key] = _resample_filter(weights[key], tuple(module.weight.shape[-2:]))
    child.load_state_dict(weights)
    return child.train(parent.training)


def _resample_filter(weight: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A (C, H, W//2 + 1) complex rfft2 filter resampled to ``size`` by relative frequency."""
    if tuple(weight.shape[-2:]) == tuple(size):
        return weight
    shifted = torch.fft.fftshift(weight, dim=-2)  # rows: negative, zero, positive frequencies
    parts = torch.stack([shifted.real, shifted.imag], dim=1)  # (C, 2, H, W//2 + 1)
    channels = parts.shape[0]
    resized = F.interpolate(
        parts.reshape(1, channels * 2, *parts.shape[-2:]), size=size, mode="bilinear", align_corners=True
    ).reshape(channels, 2, *size)
    return torch.fft.ifftshift(torch.complex(resized[:, 0], resized[:, 1]), dim=-2)


def _widen_mask_path(
    weights: dict[str, torch.Tensor],
    blank: dict[str, torch.Tensor],
    parent: ModelConfig,
    child: ModelConfig,
) -> None:
    """Mask stem and output layer for more classes, in place in ``weights``."""
    stem = torch.zeros_like(blank[f"{MASK_STEM}.weight"])  # (out, K_c, 3, 3)
    out_weight = torch.zeros_like(blank[f"{OUTPUT}.weight"])  # (K_c, C, 3, 3)
    out_bias = torch.zeros_like(blank[f"{OUTPUT}.bias"])
    old_stem, old_weight, old_bias = (
        weights[f"{MASK_STEM}.weight"],
        weights[f"{OUTPUT}.weight"],
        weights[f"{OUTPUT}.bias"],
    )
    if parent.mask_channels == 1:
        # binary: the one channel is the foreground (class 1); background is its negation
        stem[:, 1:2] = old_stem
        out_weight[1], out_bias[1] = old_weight[0], old_bias[0]
        out_weight[0], out_bias[0] = -old_weight[0], -old_bias[0]
    else:
        old = parent.mask_channels
        stem[:, :old] = old_stem
        out_weight[:old], out_bias[:old] = old_weight, old_bias
    weights[f"{MASK_STEM}.weight"] = stem
    weights[f"{OUTPUT}.weight"], weights[f"{OUTPUT}.bias"] = out_weight, out_bias
