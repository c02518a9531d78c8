"""The worker side of a run: a layer's slices through the sampler, one :class:`Frame` per step.

:func:`segment_layer` runs off the GUI thread (napari's ``create_worker``); the frames it
yields go to :class:`._animation.StepAnimation` on the GUI thread, and the results it returns
to :func:`._result_layers.add_result_layers`. A :class:`Stage` says what the worker is doing
between frames (loading the model), for the widget's progress line. Whole-image results come
with the core's verdict on whether they are probably poor
(:mod:`medsegdiff_training.whole_image_warning`), judged here, off the GUI thread. Each run
first sets its worker thread's torch threads from the thread policy
(:func:`._cpu_share.use_sampling_threads`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._cpu_share import use_sampling_threads
from ._layer_axes import LayerAxes

if TYPE_CHECKING:
    from medsegdiff_training.inference import SamplingSettings, SegmentationResult, Segmenter
    from medsegdiff_training.prompted import PromptedSegmentation
    from medsegdiff_training.whole_image_warning import WholeImageVerdict


@dataclass(frozen=True)
class Stage:
    """What the worker is doing now, in words (e.g. loading the model)."""

    text: str


@dataclass
class WholeImageResults:
    """A whole-image run's results, one per slice, and the verdict on each (same order)."""

    results: list[SegmentationResult]
    verdicts: list[WholeImageVerdict]

    def poor(self) -> list[int]:
        """The positions (in ``results``) of the answers that are probably poor."""
        return [index for index, verdict in enumerate(self.verdicts) if verdict.poor]


@dataclass
class Frame:
    """One step for the display: x_t and the predicted x_0 as foreground maps in [0, 1].

    The maps are at the model's resolution (the animation layer stretches them over the
    image), so a frame stays small whatever the image's size.
    """

    slice_index: int
    step: int
    total_steps: int
    t: int
    x_t: np.ndarray
    predicted_x0: np.ndarray
    window: tuple[int, int, int, int] | None = (
        None  # prompted runs: the first prompt's crop (top, left, bottom, right)
    )
    batch: int = 0  # prompted runs: which sampler batch of objects, of ``batches``
    batches: int = 1


def segment_layer(
    segmenter: Segmenter,
    data: Any,
    axes: LayerAxes,
    settings: SamplingSettings,
    slice_indices: list[int],
) -> Generator[Frame, None, WholeImageResults]:
    """Segment the chosen slices of a layer's data step by step (runs in a worker thread).

    ``data`` is the layer's array as it is (a lazy array is read one slice at a time here,
    never on the GUI thread). Stopping the iteration between two frames stops the run.
    Each answer is judged against the model's training images
    (:func:`~medsegdiff_training.whole_image_warning.judge_whole_image`).
    """
    from medsegdiff_training.whole_image_warning import TrainingLook, judge_whole_image

    use_sampling_threads()
    look = TrainingLook.of_checkpoint(segmenter.checkpoint.metadata)
    results, verdicts = [], []
    for slice_index in slice_indices:
        image = axes.image(data, slice_index)
        steps = segmenter.steps(image, settings, channel_axis=axes.channel_axis)
        result = yield from _frames(steps, slice_index)
        channels_last = np.moveaxis(image, 0, -1) if axes.kind == "channels" else image
        verdicts.append(judge_whole_image(channels_last, result.probabilities, result.uncertainty, look))
        results.append(result)
    return WholeImageResults(results, verdicts)


def _frames(
    steps: Generator[Any, None, Any], slice_index: int, windows: list[Any] | None = None
) -> Generator[Frame, None, Any]:
    """A sampler's steps as display frames; returns what the steps return.

    ``windows``: a prompted run's crop per sampler batch (the batch's first prompt's); a
    batch starts where the step index starts again.
    """
    from medsegdiff_training.inference import first_member_foreground  # the worker has torch by now

    batch, last_index = 0, -1
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        batch += step.index <= last_index
        last_index = step.index
        window = windows[min(batch, len(windows) - 1)] if windows else None
        yield Frame(
            slice_index,
            step.index,
            step.total,
            step.t,
            first_member_foreground(step.x_t),
            first_member_foreground(step.predicted_x0),
            window,
            batch,
            len(windows) if windows else 1,
        )


def segment_prompts_in_layer(
    segmenter: Segmenter,
    data: Any,
    axes: LayerAxes,
    settings: SamplingSettings,
    slice_index: int,
    prompts: list[Any],
    last_box_size: tuple[float, float] | None = None,
) -> Generator[Frame, None, PromptedSegmentation]:
    """Segment the prompted objects of one 2D image (or volume slice), a sampler batch at a time.

    The frames show each batch's first prompt's first ensemble member, placed over its crop.
    """
    from medsegdiff_training.prompted import DEFAULT_PROMPT_BATCH, prompted_steps
    from medsegdiff_training.prompts import resolve_prompts

    use_sampling_threads()
    image = axes.image(data, slice_index)
    rule = segmenter.checkpoint.preprocess.prompt_crop_rule()
    boxes = resolve_prompts(prompts, axes.image_shape, rule, last_box_size)
    firsts = [rule.window(box) for box in boxes[::DEFAULT_PROMPT_BATCH]]
    windows = [(first.top, first.left, first.bottom, first.right) for first in firsts]
    steps = prompted_steps(segmenter, image, boxes, settings, channel_axis=axes.channel_axis, crop_rule=rule)
    return (yield from _frames(steps, slice_index, windows))


def propagate_in_layer(
    segmenter: Segmenter, data: Any, axes: LayerAxes, settings: SamplingSettings, start: int, prompt: Any
) -> Generator[int, None, dict[int, np.ndarray]]:
    """Follow one prompt's object from slice ``start`` through a volume layer; yields slice indices."""
    from medsegdiff_training.prompted import segment_prompts
    from medsegdiff_training.prompts import resolve_prompts
    from medsegdiff_training.propagation import propagation_steps

    use_sampling_threads()
    rule = segmenter.checkpoint.preprocess.prompt_crop_rule()
    box = resolve_prompts([prompt], axes.image_shape, rule)[0]

    def segment(image: np.ndarray, boxes: list[Any]) -> np.ndarray:
        return segment_prompts(segmenter, image, boxes, settings, crop_rule=rule).labels

    return (
        yield from propagation_steps(lambda index: axes.image(data, index), axes.slices, start, box, segment)
    )
