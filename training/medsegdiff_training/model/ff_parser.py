"""FF-Parser: a learnable filter in Fourier space (paper, Section II, eq. 4-5)."""

from __future__ import annotations

import torch
from torch import nn


class FFParser(nn.Module):
    """Filter a feature map with a learnable complex map A in frequency space.

    M = FFT2(m); M' = A * M (element-wise, per channel and frequency); m' = IFFT2(M').
    The map is sized for the (height, width) of the level it sits on, for any H x W, using
    the real FFT (``rfft2``), so it has ``height x (width // 2 + 1)`` frequencies.

    Examples
    --------
    >>> parser = FFParser(channels=4, size=(16, 12))
    >>> parser.weight.dtype
    torch.complex64
    >>> parser(torch.randn(2, 4, 16, 12)).shape
    torch.Size([2, 4, 16, 12])
    """

    def __init__(self, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        height, width = size
        self.size = (int(height), int(width))
        # Initialised to the identity filter (A = 1 + 0j): training starts from plain skips.
        self.weight = nn.Parameter(torch.ones(channels, height, width // 2 + 1, dtype=torch.complex64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if tuple(features.shape[-2:]) != self.size:
            raise ValueError(
                f"FF-Parser built for {self.size} got features of size {tuple(features.shape[-2:])}; "
                "resize the image to the model's input size first."
            )
        dtype = features.dtype
        # FFTs of half-precision tensors only work for powers of two: always run in float32.
        with torch.autocast(device_type=features.device.type, enabled=False):
            spectrum = torch.fft.rfft2(features.float(), norm="ortho")  # eq. 4
            spectrum = spectrum * self.weight  # eq. 5: A (x) M
            filtered = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")  # eq. 5: IFFT
        return filtered.to(dtype)
