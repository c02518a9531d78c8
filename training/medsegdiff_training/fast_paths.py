"""Optional fast paths of the network (memory format, compilation, CUDA graphs).

The eager float32 network is the reference: every fast path computes the same function
(tests/training/test_fast_paths.py states each tolerance). What is on by default per
device comes from measurement (see :data:`CUDA_DEFAULTS`):

- ``channels_last``: NHWC tensors, which cuDNN's tensor-core convolutions read without
  transposing;
- ``cuda_graphs``: the sampling step's forward captured once per shape and replayed
  (:class:`~medsegdiff_training.cuda_graphs.GraphedForward`);
- ``compile``: ``torch.compile`` with a mode (``"default"``, ``"reduce-overhead"``,
  ``"max-autotune-no-cudagraphs"``) or ``None``; it fuses GroupNorm + SiLU and the
  elementwise tails, but costs about a minute per input shape on a GPU (issue 16: 70 s),
  so it stays off unless asked for.

Examples
--------
>>> resolve_fast_paths(torch.device("cpu"))
FastPaths(channels_last=False, cuda_graphs=False, compile=None)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from .errors import ConfigError
from .train_config import COMPILE_MODES  # torch-free, for the CLI


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths a Segmenter or the trainer uses (see the module docstring)."""

    channels_last: bool = False
    cuda_graphs: bool = False
    compile: str | None = None

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ConfigError(
                f"Unknown compile mode {self.compile!r}: choose one of {', '.join(COMPILE_MODES)} or None."
            )


# From issue 16's measurements on one H200: the B forward at batch 1 took 16-23 ms eager and
# 8.1-8.7 ms replayed as a CUDA graph; channels_last in eager was slower at batch 32 (133
# against 97 ms); compile paid 70 s per shape. gpu_check.sh measures each again
# (fast_paths_cuda.json) and recommend_defaults.py reads the result.
CUDA_DEFAULTS = FastPaths(channels_last=False, cuda_graphs=True, compile=None)
OTHER_DEFAULTS = FastPaths()


def resolve_fast_paths(
    device: torch.device,
    channels_last: bool | None = None,
    cuda_graphs: bool | None = None,
    compile: str | None = None,
) -> FastPaths:
    """The device's defaults, with every option that is not ``None`` overriding them.

    CUDA graphs exist only on CUDA, and compile's ``reduce-overhead`` mode captures its
    own graphs, so those two turn the explicit graph wrapper off.
    """
    defaults = CUDA_DEFAULTS if device.type == "cuda" else OTHER_DEFAULTS
    chosen = replace(
        defaults,
        **{
            key: value
            for key, value in (("channels_last", channels_last), ("cuda_graphs", cuda_graphs))
            if value is not None
        },
        compile=compile if compile is not None else defaults.compile,
    )
    if device.type != "cuda" or chosen.compile == "reduce-overhead":
        chosen = replace(chosen, cuda_graphs=False)
    return chosen


def cast_floating(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s real floating-point parameters and buffers to ``dtype`` in place.

    Unlike ``model.to(dtype)`` this leaves complex tensors (the FF-Parser's filters) alone.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(dtype)
    return model


def inference_network(model: nn.Module, device: torch.device, precision: str, fast: FastPaths) -> nn.Module:
    """The network a Segmenter samples with: ``model`` itself, or a faster copy of it.

    bf16 on CUDA gets a copy with bfloat16 weights, so autocast does not cast every weight
    again at every step (a few hundred small kernels, which dominate at batch 1); the
    FF-Parser's complex filters stay complex64. ``channels_last`` converts the copy.
    """
    network = model
    if precision == "bf16" and device.type == "cuda":
        network = cast_floating(copy.deepcopy(model), torch.bfloat16)
    if fast.channels_last:
        network = (network if network is not model else copy.deepcopy(model)).to(  # type: ignore[call-overload]
            memory_format=torch.channels_last
        )
    return network.eval()


def compiled(model: nn.Module, fast: FastPaths) -> nn.Module:
    """``torch.compile(model)`` in the chosen mode, or ``model`` when compile is off."""
    if fast.compile is None:
        return model
    return torch.compile(model, mode=fast.compile, dynamic=False)  # type: ignore[return-value]


def to_memory_format(tensor: torch.Tensor, fast: FastPaths) -> torch.Tensor:
    """``tensor`` in channels_last when that fast path is on (4-D tensors only)."""
    if fast.channels_last and tensor.ndim == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor
