"""Segmenting images with a trained model: samplers, ensembles, uncertainty.

The step generator is the single path for every caller: the napari widget animates its
yields, the CLI shows a progress bar, the evaluator just runs it to the end.

Ensembles run as one batch: ``n`` members share the image (its encoded condition is
computed once). The outputs are the mean mask (foreground or per-class probabilities),
its thresholded / argmax label map and a per-pixel uncertainty map: the standard
deviation of the members' probabilities (binary), or its mean over classes (K classes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import Checkpoint
from .cuda_graphs import GraphedForward
from .device import resolve_device
from .errors import ConfigError
from .fast_paths import compiled, inference_network, resolve_fast_paths, to_memory_format
from .precision import autocast, enable_tf32, resolve_precision
from .preprocess import guess_channel_axis, prepare_image
from .samplers import SamplerStep, run_to_end, sample
from .sampling_defaults import SamplingSettings

__all__ = [
    "SamplingSettings",
    "SegmentationResult",
    "Segmenter",
    "first_member_foreground",
    "model_space_to_probabilities",
]
from .schedule import NoiseSchedule


@dataclass
class SegmentationResult:
    """The outcome of segmenting one 2D image, at the image's own height and width.

    ``probabilities`` is (H, W) foreground probability for a binary model, or (K, H, W)
    class probabilities; ``labels`` is the (H, W) label map; ``uncertainty`` is (H, W) in
    [0, 0.5] (0 = all members agree), or ``None`` for a single sample.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    uncertainty: np.ndarray | None
    settings: dict[str, Any] = field(default_factory=dict)


def model_space_to_probabilities(x0: torch.Tensor) -> torch.Tensor:
    """Masks in [-1, 1] -> probabilities: (B, 1, H, W) foreground, or (B, K, H, W) normalised."""
    probabilities = ((x0.float() + 1) / 2).clamp(0, 1)
    if probabilities.shape[1] > 1:
        probabilities = probabilities / probabilities.sum(1, keepdim=True).clamp_min(1e-6)
    return probabilities


def first_member_foreground(masks: torch.Tensor) -> np.ndarray:
    """A sampler step's masks (B, K, h, w) in model space -> what to show of it: the first
    ensemble member's foreground in [0, 1], (h, w) float32 (a K-class model's: not background).

    Examples
    --------
    >>> x = torch.tensor([[[[-1.0, 0.0], [1.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    >>> first_member_foreground(x)
    array([[0. , 0.5],
           [1. , 1. ]], dtype=float32)
    """
    with torch.inference_mode():
        foreground = model_space_to_probabilities(masks[:1])
        if foreground.shape[1] > 1:  # K classes: everything that is not background
            foreground = 1 - foreground[:, :1]
    return foreground[0, 0].cpu().numpy().astype(np.float32)


class Segmenter:
    """A loaded model on a device, ready to segment images.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.config import named_config, DiffusionConfig, PreprocessConfig
    >>> from medsegdiff_training.checkpoint import save_checkpoint, load_checkpoint
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> folder = save_checkpoint(tempfile.mkdtemp() + "/m", MedSegDiffUNet(named_config("tiny")),
    ...                          DiffusionConfig(), PreprocessConfig())
    >>> segmenter = Segmenter(load_checkpoint(folder), device="cpu")
    >>> result = segmenter.segment(np.random.rand(50, 40), SamplingSettings(steps=3))
    >>> result.labels.shape
    (50, 40)
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str | torch.device = "auto",
        amp: bool = True,
        *,
        precision: str = "auto",
        channels_last: bool | None = None,
        cuda_graphs: bool | None = None,
        compile: str | None = None,
    ) -> None:
        """``precision``: ``auto`` (per device, :mod:`~medsegdiff_training.precision`),
        ``bf16`` or ``fp32``; ``amp=False`` means ``fp32``. ``channels_last``,
        ``cuda_graphs`` and ``compile`` override the device's fast-path defaults
        (:mod:`~medsegdiff_training.fast_paths`); ``None`` keeps them.
        """
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.device, precision if amp else "fp32", "sampling")
        self.amp = self.precision == "bf16"
        self.fast = resolve_fast_paths(self.device, channels_last, cuda_graphs, compile)
        enable_tf32(self.device)
        base = checkpoint.model.to(self.device).eval()
        self.model = inference_network(base, self.device, self.precision, self.fast)
        # the sampling step: graphed per shape on CUDA, else the (compiled) network itself
        self._forward = GraphedForward(
            compiled(self.model, self.fast), self._step_context, enabled=self.fast.cuda_graphs
        )
        self.schedule = NoiseSchedule(checkpoint.diffusion)

    @property
    def config(self):
        return self.checkpoint.model_config

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def _step_context(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        # no weight-cast cache: a CUDA graph must not capture tensors freed after capture
        stack.enter_context(autocast(self.device, self.precision, cache=False))
        return stack

    def prepare(self, image: np.ndarray, channel_axis: int | None = None) -> torch.Tensor:
        """Check and preprocess one 2D image into a (1, C, H, W) tensor on the device."""
        return prepare_image(image, self.config, self.checkpoint.preprocess, channel_axis).to(self.device)

    def denoise(
        self, prepared: torch.Tensor, settings: SamplingSettings = SamplingSettings()
    ) -> Generator[SamplerStep, None, torch.Tensor]:
        """Sample masks for prepared images (B, C, H, W); ``ensemble`` members each.

        Yields every step (x_t of shape (B * ensemble, K, H, W), members of one image
        adjacent) and returns the final masks in model space with that same layout.
        """
        if settings.ensemble < 1:
            raise ConfigError(f"The ensemble size must be at least 1, got {settings.ensemble}.")
        images = to_memory_format(prepared.repeat_interleave(settings.ensemble, dim=0), self.fast)
        with torch.inference_mode(), self._autocast():
            # E^I's stem depends on neither t nor x_t: once per run, not once per step
            condition = self.model.encode_condition(images)  # type: ignore[operator]

        def network(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # graphed per shape on CUDA, else the (compiled) network; always in inference mode
            output = self._forward(to_memory_format(x_t, self.fast), t, condition)
            return output.float().contiguous()

        generator = None
        if settings.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(settings.seed))
        shape = (images.shape[0], self.config.mask_channels, *self.config.image_size)
        return (
            yield from sample(
                network,
                self.schedule,
                shape,
                sampler=settings.sampler,
                steps=settings.resolved_steps(),
                eta=settings.eta,
                generator=generator,
                device=self.device,
            )
        )

    def steps(
        self,
        image: np.ndarray,
        settings: SamplingSettings = SamplingSettings(),
        channel_axis: int | None = None,
    ) -> Generator[SamplerStep, None, SegmentationResult]:
        """Segment one 2D image step by step; returns a :class:`SegmentationResult`."""
        array = np.asarray(image)
        prepared = self.prepare(array, channel_axis)
        final = yield from self.denoise(prepared, settings)
        height, width = _spatial_shape(array, channel_axis)
        return self.summarise(final, settings, (height, width))[0]

    def segment(
        self,
        image: np.ndarray,
        settings: SamplingSettings = SamplingSettings(),
        channel_axis: int | None = None,
        on_step: Callable[[SamplerStep], None] | None = None,
    ) -> SegmentationResult:
        """Segment one 2D image and return the result (no intermediate steps)."""
        return run_to_end(self.steps(image, settings, channel_axis), on_step)

    def segment_batch(
        self,
        images: Sequence[np.ndarray],
        settings: SamplingSettings = SamplingSettings(),
        output_sizes: Sequence[Sequence[int]] | None = None,
        channel_axis: int | None = None,
        on_step: Callable[[SamplerStep], None] | None = None,
    ) -> list[SegmentationResult]:
        """Segment several 2D images in one sampler run; one result per image, in order.

        Each image is prepared, the batch is denoised at once (``ensemble`` members each)
        and each result is resized to its image's own height and width, or to
        ``output_sizes[i]`` when given (e.g. a ground-truth mask's shape).
        """
        arrays = [np.asarray(image) for image in images]
        if not arrays:
            return []
        if output_sizes is None:
            output_sizes = [_spatial_shape(array, channel_axis) for array in arrays]
        prepared = torch.cat([self.prepare(array, channel_axis) for array in arrays])
        final = run_to_end(self.denoise(prepared, settings), on_step)
        members = settings.ensemble
        return [
            self.summarise(final[index * members : (index + 1) * members], settings, (size[0], size[1]))[0]
            for index, size in enumerate(output_sizes)
        ]

    def summarise(
        self, final: torch.Tensor, settings: SamplingSettings, output_size: tuple[int, int] | None = None
    ) -> list[SegmentationResult]:
        """Turn final masks (B * ensemble, K, h, w) into one result per image."""
        members = settings.ensemble
        probabilities = model_space_to_probabilities(final)
        probabilities = probabilities.view(-1, members, *probabilities.shape[1:])
        mean = probabilities.mean(1)
        spread = probabilities.std(1, unbiased=False).mean(1) if members > 1 else None
        if output_size is not None and tuple(output_size) != tuple(mean.shape[-2:]):
            mean = F.interpolate(mean, size=tuple(output_size), mode="bilinear", align_corners=False)
            if spread is not None:
                spread = F.interpolate(
                    spread[:, None], size=tuple(output_size), mode="bilinear", align_corners=False
                )[:, 0]
        results = []
        for i in range(mean.shape[0]):
            image_mean = mean[i].cpu().numpy()
            if image_mean.shape[0] == 1:
                labels = (image_mean[0] > settings.threshold).astype(np.uint8)
                image_mean = image_mean[0]
            else:
                labels = image_mean.argmax(0).astype(np.uint8)
            results.append(
                SegmentationResult(
                    probabilities=image_mean.astype(np.float32),
                    labels=labels,
                    uncertainty=None if spread is None else spread[i].cpu().numpy().astype(np.float32),
                    settings=settings.to_dict(),
                )
            )
        return results


def _spatial_shape(array: np.ndarray, channel_axis: int | None) -> tuple[int, int]:
    if array.ndim == 2:
        return int(array.shape[0]), int(array.shape[1])
    if channel_axis is None:
        channel_axis = guess_channel_axis(array.shape)
    spatial = [s for axis, s in enumerate(array.shape) if axis != channel_axis % array.ndim]
    return int(spatial[0]), int(spatial[1])
