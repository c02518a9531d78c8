"""Building blocks of the MedSegDiff UNet: time embedding, residual blocks, resampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) timesteps."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    angles = t.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t followed by Linear -> SiLU -> Linear (paper, Section II)."""

    def __init__(self, base_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.base_dim))


class StemConv(nn.Conv2d):
    """3x3 convolution for a network input with few channels.

    PyTorch's CPU convolution falls back to a slow path for single-channel input (measured
    here: about 25 times slower than with two channels at 96x96), so a one-channel input
    is padded with a zero channel and met by a zero weight: same result, fast path. The
    parameters are those of a plain ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels != 1 or x.device.type != "cpu":
            return super().forward(x)
        x = torch.cat([x, torch.zeros_like(x)], dim=1)
        weight = torch.cat([self.weight, torch.zeros_like(self.weight)], dim=1)
        return F.conv2d(x, weight, self.bias, padding=1)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that keeps a bfloat16 input in bfloat16 on CUDA.

    Autocast runs GroupNorm in float32, so every norm of a bf16 network would cast its
    input up and its output back down (a fifth of the GPU time, measured in issue 16).
    PyTorch's CUDA kernel accumulates the statistics in float32 whatever the input dtype,
    so running it on the bf16 tensor keeps the accuracy and drops the round trip. On the
    CPU the autocast behaviour is kept as measured there. Same parameters and state as
    ``nn.GroupNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or not x.is_cuda:
            return super().forward(x)
        weight = None if self.weight is None else self.weight.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        with torch.autocast("cuda", enabled=False):
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """SiLU(GroupNorm(x)), in place on the norm's output when no gradient is recorded.

    The eager reference of the fused GroupNorm + SiLU (``torch.compile`` fuses the two into
    one kernel); in place saves one full-size buffer per block while sampling.
    """
    h = norm(x)
    return F.silu(h, inplace=not torch.is_grad_enabled())


class NormActConv(nn.Module):
    """GroupNorm -> SiLU -> 3x3 conv: one half of a residual block."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm = GroupNorm(groups, in_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(norm_silu(self.norm, x)))


class ResidualBlock(nn.Module):
    """Two (GroupNorm -> SiLU -> conv) blocks; the time embedding is added after the first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        groups: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.block1 = NormActConv(in_channels, out_channels, groups)
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.block2 = NormActConv(out_channels, out_channels, groups, dropout)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time_projection(time_embedding)[:, :, None, None]
        return self.shortcut(x) + self.block2(h)


class ResidualStage(nn.Module):
    """A sequence of residual blocks sharing one time embedding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        blocks: int,
        time_dim: int,
        groups: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResidualBlock(in_channels if i == 0 else out_channels, out_channels, time_dim, groups, dropout)
            for i in range(blocks)
        )

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, time_embedding)
        return x


class Downsample(nn.Module):
    """Stride-2 3x3 convolution; odd sizes round up."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest upsampling to the skip's exact size, then a 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
