"""The MedSegDiff network, read top to bottom like Section II of the paper.

x_t (the noisy mask) and I (the image) each go through their own encoder (E^x, E^I).
On the middle levels the mask features steer the image features through dynamic
conditional encoding (eq. 3). The sum E^I + E^x enters the last encoding level, and a
convolutional decoder with skip connections, each filtered by an FF-Parser (eq. 4-5),
predicts the noise epsilon (eq. 7 trains it).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import Downsample, GroupNorm, ResidualStage, StemConv, TimeEmbedding, Upsample
from .conditioning import DynamicConditionalEncoding
from .ff_parser import FFParser


class Encoder(nn.Module):
    """One of the two encoders (E^I or E^x): a stem, then a residual stage per level.

    Each level but the last of the network is followed by a stride-2 downsampling.
    """

    def __init__(self, config: ModelConfig, in_channels: int, time_dim: int) -> None:
        super().__init__()
        channels = config.level_channels
        self.stem = StemConv(in_channels, channels[0])
        self.stages = nn.ModuleList(
            ResidualStage(
                channels[level],
                channels[level],
                config.encoder_blocks[level],
                time_dim,
                config.groups,
                config.dropout,
            )
            for level in range(config.dual_levels)
        )
        self.downsamples = nn.ModuleList(
            Downsample(channels[level], channels[level + 1]) for level in range(config.dual_levels)
        )


class Decoder(nn.Module):
    """Upsample, concatenate the (FF-parsed) skip, residual stage; coarsest level first."""

    def __init__(self, config: ModelConfig, time_dim: int) -> None:
        super().__init__()
        channels = config.level_channels
        levels = list(reversed(range(config.dual_levels)))
        self.upsamples = nn.ModuleList(Upsample(channels[lv + 1], channels[lv]) for lv in levels)
        self.stages = nn.ModuleList(
            ResidualStage(
                2 * channels[lv], channels[lv], config.decoder_blocks, time_dim, config.groups, config.dropout
            )
            for lv in levels
        )

    def forward(
        self, h: torch.Tensor, skips: list[torch.Tensor], time_embedding: torch.Tensor
    ) -> torch.Tensor:
        for upsample, stage, skip in zip(self.upsamples, self.stages, reversed(skips), strict=True):
            h = upsample(h, tuple(skip.shape[-2:]))
            h = stage(torch.cat([h, skip], dim=1), time_embedding)
        return h


class MedSegDiffUNet(nn.Module):
    """The MedSegDiff noise predictor eps_theta(x_t, I, t).

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> model = MedSegDiffUNet(named_config("tiny"))
    >>> x_t, image = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    >>> model(x_t, torch.tensor([10, 500]), image).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.level_channels
        time_dim = 4 * config.base_channels
        self.time_embedding = TimeEmbedding(config.base_channels, time_dim)
        self.image_encoder = Encoder(config, config.input_channels, time_dim)
        self.mask_encoder = Encoder(config, config.mask_channels, time_dim)
        self.fusions = nn.ModuleDict(
            {str(level): DynamicConditionalEncoding(channels[level]) for level in config.fused_levels}
        )
        sizes = config.level_sizes()
        self.skip_parsers = nn.ModuleList(
            FFParser(channels[level], sizes[level]) if config.ff_parser else nn.Identity()
            for level in range(config.dual_levels)
        )
        last = config.dual_levels
        # The last encoding level, shared: it takes E^I + E^x.
        self.last_stage = ResidualStage(
            channels[last],
            channels[last],
            config.encoder_blocks[last],
            time_dim,
            config.groups,
            config.dropout,
        )
        self.decoder = Decoder(config, time_dim)
        output = nn.Conv2d(channels[0], config.mask_channels, 3, padding=1)
        # Start by predicting 0 (eps or v), which keeps early training steps stable.
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)  # type: ignore[arg-type]  # bias=True: never None
        self.head = nn.Sequential(GroupNorm(config.groups, channels[0]), nn.SiLU(), output)

    def encode_condition(self, image: torch.Tensor) -> torch.Tensor:
        """The part of E^I that does not depend on t or x_t: computed once per sampling run."""
        expected = (self.config.input_channels, *self.config.image_size)
        if tuple(image.shape[1:]) != expected:
            raise ValueError(
                f"The model expects images of shape (batch, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(image.shape)}; preprocess the image to the model's input size first."
            )
        return self.image_encoder.stem(image)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        image: torch.Tensor | None = None,
        *,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``x_t`` at timestep ``t`` given the image.

        Pass either ``image`` or ``condition`` (from :meth:`encode_condition`, reused
        across sampling steps).
        """
        if condition is None:
            if image is None:
                raise ValueError("forward needs the image or its encoded condition.")
            condition = self.encode_condition(image)
        if condition.shape[0] != x_t.shape[0]:
            condition = condition.expand(x_t.shape[0], *condition.shape[1:])
        time_embedding = self.time_embedding(t.expand(x_t.shape[0]) if t.ndim == 0 else t)
        h_image, h_mask = condition, self.mask_encoder.stem(x_t)
        skips = []
        for level in range(self.config.dual_levels):
            h_image = self.image_encoder.stages[level](h_image, time_embedding)
            h_mask = self.mask_encoder.stages[level](h_mask, time_embedding)
            if str(level) in self.fusions:
                # eq. 3, fused back into the image encoder
                h_image = h_image + self.fusions[str(level)](h_image, h_mask)
            skips.append(self.skip_parsers[level](h_image + h_mask))
            h_image = self.image_encoder.downsamples[level](h_image)
            h_mask = self.mask_encoder.downsamples[level](h_mask)
        h = self.last_stage(h_image + h_mask, time_embedding)  # E^I + E^x
        h = self.decoder(h, skips, time_embedding)
        return self.head(h)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, counting a complex parameter as two real numbers."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)
