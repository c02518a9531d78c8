"""The precision policy: which arithmetic each device runs, chosen from measurement.

``precision`` is ``"auto"``, ``"bf16"`` (bfloat16 autocast: convolutions, matrix products,
GroupNorm, SiLU and the residual path in bfloat16; the FF-Parser's FFTs and the loss in
float32) or ``"fp32"`` (float32; TF32 matrix units on CUDA). ``"auto"`` picks per device
and per task:

- CPU: bf16 where the CPU computes it natively (AMX or AVX512-BF16), else fp32;
  :data:`ENV_CPU_BF16` overrides the hardware probe (``native`` or ``none``), so that a test
  run covers the other CPU's policy: on a CPU without native bf16, autocast computes the same
  bfloat16 arithmetic in software, only slower;
- CUDA: :data:`CUDA_AUTO`: float32 with TF32, the faster of the two when last measured
  (issue 16, H200, before this module's GroupNorm and bf16-weight fixes: sampling 5.6 ms
  per step fp32 against 9.2 bf16, training 71 against 58 images/s for B).
  ``benchmarks/gpu_check.sh`` measures both again with the fixes and
  ``benchmarks/recommend_defaults.py`` says whether bf16 has become the faster one;
- anything else (MPS): fp32.

Examples
--------
>>> resolve_precision(torch.device("mps"), "auto")
'fp32'
>>> resolve_precision(torch.device("cpu"), "fp32")
'fp32'
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ConfigError
from .train_config import PRECISIONS

TASKS = ("sampling", "training")
# What "auto" means on CUDA, per task: bf16 only where it measured faster than fp32 / TF32.
# fp32 until gpu_check.sh shows the fixed bf16 path faster (recommend_defaults.py reads it).
CUDA_AUTO = {"sampling": "fp32", "training": "fp32"}
# "native" / "none": the CPU's answer to "native bfloat16?" instead of the hardware's (tests, CI)
ENV_CPU_BF16 = "MEDSEGDIFF_CPU_BF16"
CPU_BF16_CHOICES = ("native", "none")


def _cpu_bf16_override() -> bool | None:
    value = os.environ.get(ENV_CPU_BF16, "").strip().lower()
    if not value:
        return None
    if value not in CPU_BF16_CHOICES:
        raise ConfigError(f"{ENV_CPU_BF16} must be one of {', '.join(CPU_BF16_CHOICES)}, not {value!r}.")
    return value == "native"


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
    override = _cpu_bf16_override()
    if override is not None:
        return override
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence getattr
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(device: torch.device, precision: str = "auto", task: str = "sampling") -> str:
    """Turn ``auto``/``bf16``/``fp32`` into ``bf16`` or ``fp32`` for ``device`` and ``task``.

    An explicit ``bf16`` on a device without native bfloat16 falls back to ``fp32``
    (emulated bfloat16 is slower and no more accurate).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
    if not has_fast_bfloat16(device):
        return "fp32"
    if precision == "auto":
        return CUDA_AUTO[task] if device.type == "cuda" else "bf16"
    return precision


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (``nullcontext`` for fp32).

    ``cache=False`` is required while a CUDA graph is being captured.
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def enable_tf32(device: torch.device) -> None:
    """Let float32 matrix products and convolutions use the TF32 tensor cores on CUDA.

    A process-wide PyTorch setting (cuDNN convolutions already default to it); relative
    error about 1e-3, far under the sampling noise of a diffusion model.
    """
    if device.type != "cuda":
        return
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9: the old flags warn
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def precision_label(precision: str) -> str:
    """How results and checkpoints name a resolved precision."""
    return "bfloat16 autocast" if precision == "bf16" else "float32"
