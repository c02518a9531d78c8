"""Dynamic conditional encoding (paper, Section II, eq. 3)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import GroupNorm


class DynamicConditionalEncoding(nn.Module):
    """A(m_I, m_x) = (LN(m_I) * LN(m_x)) * m_I, all element-wise (paper eq. 3).

    LN is layer normalisation over (channels, height, width) with a per-channel affine
    (``GroupNorm`` with one group), so it works at any spatial size. The result is added
    back into the image encoder's features by :class:`MedSegDiffUNet`.

    Examples
    --------
    >>> fusion = DynamicConditionalEncoding(channels=8)
    >>> fusion(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)).shape
    torch.Size([1, 8, 4, 4])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_image = GroupNorm(1, channels)
        self.norm_mask = GroupNorm(1, channels)

    def forward(self, image_features: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        return (self.norm_image(image_features) * self.norm_mask(mask_features)) * image_features
