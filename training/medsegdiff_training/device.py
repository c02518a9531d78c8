"""Choosing the compute device: ``auto`` picks CUDA, then MPS, then the CPU.

torch is imported by the functions that ask it, not by this module, so that a GUI can offer
``DEVICE_CHOICES`` before torch is loaded.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .errors import DeviceError
from .sampling_defaults import DEVICE_CHOICES

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_CHOICES", "device_availability", "has_fast_bfloat16", "mixed_precision", "resolve_device"]


def device_availability() -> dict[str, str | None]:
    """Map each device choice to ``None`` when usable, else the reason it is not.

    Examples
    --------
    >>> device_availability()["cpu"] is None
    True
    """
    import torch

    reasons: dict[str, str | None] = {"auto": None, "cpu": None}
    reasons["cuda"] = None if torch.cuda.is_available() else "no CUDA GPU visible to PyTorch"
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    reasons["mps"] = None if mps_ok else "no Apple Metal (MPS) device"
    return reasons


def resolve_device(choice: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cuda``/``mps``/``cpu`` into a usable :class:`torch.device`.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(choice, torch.device):
        return choice
    choice = str(choice).lower()
    kind = choice.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise DeviceError(f"Unknown device {choice!r}: choose one of {', '.join(DEVICE_CHOICES)}.")
    reasons = device_availability()
    if kind == "auto":
        for candidate in ("cuda", "mps"):
            if reasons[candidate] is None:
                return torch.device(candidate)
        return torch.device("cpu")
    if reasons[kind] is not None:
        raise DeviceError(f"Device {choice!r} is not available ({reasons[kind]}); use 'cpu' or 'auto'.")
    return torch.device(choice)


def mixed_precision(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled`` and the hardware does it natively.

    The explicit ``bf16`` of :mod:`medsegdiff_training.precision`, kept for callers that
    think in on/off; that module holds the per-device policy (``precision="auto"``).
    """
    from .precision import autocast, resolve_precision  # torch: only when computing

    precision = resolve_precision(device, "bf16") if enabled else "fp32"
    return autocast(device, precision)


def has_fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (see :mod:`medsegdiff_training.precision`)."""
    from .precision import has_fast_bfloat16 as native_bfloat16

    return native_bfloat16(device)
