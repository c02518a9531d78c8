"""Choosing the compute device: ``auto`` picks CUDA, then MPS, then the CPU."""

from __future__ import annotations

import contextlib

import torch

from .errors import DeviceError
from .sampling_defaults import DEVICE_CHOICES

__all__ = ["DEVICE_CHOICES", "device_availability", "has_fast_bfloat16", "mixed_precision", "resolve_device"]


def device_availability() -> dict[str, str | None]:
    """Map each device choice to ``None`` when usable, else the reason it is not.

    Examples
    --------
    >>> device_availability()["cpu"] is None
    True
    """
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


def has_fast_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA; CPUs with AMX or AVX512-BF16).

    On other CPUs bfloat16 is emulated and slower than float32, so mixed precision stays off.

    Examples
    --------
    >>> has_fast_bfloat16(torch.device("mps"))
    False
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence getattr
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def mixed_precision(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled`` and the hardware does it natively.

    Convolutions and matrix products run in bfloat16; losses, norms and the FF-Parser's FFTs
    stay in float32 (PyTorch's autocast lists, and the FF-Parser turns autocast off).
    """
    if enabled and has_fast_bfloat16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
