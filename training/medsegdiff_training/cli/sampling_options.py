"""The sampling and speed options: how ``predict``, ``evaluate`` and ``simulate-annotation``
sample, and how every command that computes runs the network (``train`` and ``finetune``
take the speed options too).

The choices come from torch-free modules (:mod:`..sampling_defaults`, :mod:`..train_config`);
the :class:`~..inference.Segmenter` is built only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..model_lookup import load_model
from ..sampling_defaults import (
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    RECOMMENDED_ENSEMBLE,
    SAMPLERS,
    SamplingSettings,
)
from ..train_config import COMPILE_MODES, PRECISIONS
from .common import registry_of

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint
    from ..inference import Segmenter


def add_sampling(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """``--model`` and the sampler's options (``--sampler``, ``--steps``, ``--ensemble``, ...)."""
    parser.add_argument(
        "--model",
        default=None,
        metavar="VERSION",
        help="registry version or checkpoint folder (default: the selected version)",
    )
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS)
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the sampler's recommended)"
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=RECOMMENDED_ENSEMBLE,
        help=f"samples per image, averaged, in one batch (default: {RECOMMENDED_ENSEMBLE})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="foreground threshold of binary models"
    )
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per sampler run")
    parser.add_argument(
        "--no-amp",
        action="store_true",
        help="float32 throughout, as --precision fp32 (bf16 autocast is used only on CUDA and on "
        "CPUs with AMX/AVX512-BF16)",
    )


def add_speed(parser: argparse.ArgumentParser, training: bool) -> None:
    """The speed options (precision, memory format, CUDA graphs, compile; loader workers when
    training). Each defaults to None: the device's choice (precision.py, fast_paths.py); the
    eager float32 network is the reference every fast path is tested against."""
    group = parser.add_argument_group(
        "speed",
        "how the network computes: the fast paths give the eager float32 result within rounding",
    )
    group.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="auto (default): per device from measurement: bf16 on CPUs with AMX or AVX512-BF16, "
        "on CUDA the faster of bf16 and float32 as last measured (README, On a GPU), float32 "
        "elsewhere; bf16: bfloat16 autocast (float32 on devices without native bfloat16); "
        "fp32: float32 throughout, TF32 matrix units on CUDA (what --no-amp means)",
    )
    group.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout, which CUDA tensor-core convolutions read without transposing "
        "(matters on CUDA; default: the device's)",
    )
    if not training:
        group.add_argument(
            "--cuda-graphs",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="replay each sampling step as a CUDA graph captured once per input shape (CUDA "
            "only: cuts kernel-launch time at small batches; default: the device's; off with "
            "--compile reduce-overhead, which captures its own)",
        )
    group.add_argument(
        "--compile",
        default=None,
        choices=COMPILE_MODES,
        metavar="MODE",
        help=f"torch.compile the network with MODE, one of {', '.join(COMPILE_MODES)} (without "
        "it: eager): fuses GroupNorm + SiLU and elementwise kernels, but compiles for about a minute "
        "per input shape on a GPU, so it pays only over long runs; slow to compile on a CPU",
    )
    if training:
        group.add_argument(
            "--num-workers",
            type=int,
            default=None,
            metavar="N",
            help="DataLoader worker processes (default: 4 with pinned memory on CUDA, 0 elsewhere: "
            "batches made in the training process)",
        )


def precision_of(args: argparse.Namespace) -> str | None:
    """``--precision``, with ``--no-amp`` meaning ``fp32``; None when neither is given.

    ``--no-amp`` beside ``--precision auto`` or ``bf16`` asks for two things: a user error.
    """
    precision = getattr(args, "precision", None)
    if getattr(args, "no_amp", False):
        if precision not in (None, "fp32"):
            raise ConfigError(
                f"--no-amp means --precision fp32, which contradicts --precision {precision}: "
                "give one of them."
            )
        return "fp32"
    return precision


def segmenter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Segmenter` keywords of the speed options (None keeps the device's default)."""
    return {
        "precision": precision_of(args) or "auto",
        "channels_last": args.channels_last,
        "cuda_graphs": args.cuda_graphs,
        "compile": args.compile,
    }


def segmenter_of(args: argparse.Namespace, checkpoint: Checkpoint) -> Segmenter:
    """The Segmenter that ``predict`` and ``evaluate`` (plain or with boxes) sample with."""
    from ..inference import Segmenter

    return Segmenter(checkpoint, device=args.device, **segmenter_options(args))


def sampling_settings(args: argparse.Namespace) -> SamplingSettings:
    """The sampler's options as :class:`SamplingSettings` (an ensemble of at least 1)."""
    if args.ensemble < 1:
        raise ConfigError("--ensemble must be at least 1.")
    return SamplingSettings(
        sampler=args.sampler,
        steps=args.steps,
        ensemble=args.ensemble,
        seed=args.seed,
        threshold=args.threshold,
    )


def sampler_of(
    args: argparse.Namespace, *, for_boxes: bool = False
) -> tuple[Segmenter, SamplingSettings, str]:
    """(the Segmenter, the sampling settings, the model's name) of ``predict`` / ``evaluate``:
    ``--model`` or the selected version (with ``for_boxes``: the one box prompts use)."""
    settings = sampling_settings(args)
    checkpoint, name = load_model(args.model, registry_of(args), "cpu", for_boxes=for_boxes)
    return segmenter_of(args, checkpoint), settings, name
