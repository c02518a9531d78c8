"""Turning a sampler's steps into what the viewer shows.

The worker function runs off the GUI thread and yields one :class:`Frame` per denoising
step; :class:`StepStack` collects the frames on the GUI thread into the animated layer's
stack (all steps along a leading axis, so napari's dims slider replays the denoising).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._layer_axes import LayerAxes

if TYPE_CHECKING:
    from medsegdiff_training.inference import SamplingSettings, SegmentationResult, Segmenter


@dataclass
class Frame:
    """One step for the display: the current x_t and predicted x_0 as foreground maps in [0, 1]."""

    slice_index: int
    step: int
    total_steps: int
    t: int
    x_t: np.ndarray
    predicted_x0: np.ndarray


def _foreground(masks: Any, size: tuple[int, int]) -> np.ndarray:
    """Model-space masks (B, K, h, w) -> the first member's foreground in [0, 1] at ``size``."""
    import torch

    from medsegdiff_training.inference import model_space_to_probabilities
    from medsegdiff_training.preprocess import resize

    with torch.inference_mode():
        foreground = model_space_to_probabilities(masks[:1])
        if foreground.shape[1] > 1:  # K classes: everything that is not background
            foreground = 1 - foreground[:, :1]
        foreground = resize(foreground, size)
    return foreground[0, 0].cpu().numpy().astype(np.float32)


def segment_layer(
    segmenter: Segmenter,
    data: np.ndarray,
    axes: LayerAxes,
    settings: SamplingSettings,
    slice_indices: list[int],
) -> Generator[Frame, None, list[SegmentationResult]]:
    """Segment the chosen slices of a layer's data step by step (runs in a worker thread)."""
    results = []
    for slice_index in slice_indices:
        image = axes.image(data, slice_index)
        steps = segmenter.steps(image, settings, channel_axis=axes.channel_axis)
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                results.append(stop.value)
                break
            yield Frame(
                slice_index,
                step.index,
                step.total,
                step.t,
                _foreground(step.x_t, axes.image_shape),
                _foreground(step.predicted_x0, axes.image_shape),
            )
    return results


class StepStack:
    """The frames of the run so far, for the animated layer (``x_t`` or ``predicted x0``)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.slice_index: int | None = None

    def add(self, frame: Frame, show_x0: bool) -> np.ndarray:
        if frame.slice_index != self.slice_index:  # a new slice of a volume starts a new animation
            self.frames, self.slice_index = [], frame.slice_index
        self.frames.append(frame.predicted_x0 if show_x0 else frame.x_t)
        return np.stack(self.frames)
