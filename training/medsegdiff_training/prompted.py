"""Segmenting the objects that box and point prompts point at, on a full-size image.

Each prompt becomes a crop by the model's crop rule (:mod:`medsegdiff_training.prompts`);
the crops go through the sampler in batches of ``batch_size`` objects, times the ensemble
(object ``i``'s members adjacent, in prompt order); each object's mean probability is pasted
back into its crop's footprint before the next batch is cut. Binary models give label ids
1..n in prompt order. Multi-class models label each object's pixels with their class
(1..K-1), an object's foreground being ``1 - P(background) > threshold``; there, overlaps
go to the object with the lower background probability, and object ids are not kept.

Memory is bounded whatever the number of prompts: the image, three image-sized maps
(labels int32, probability and uncertainty float32: 12 bytes a pixel) and one batch
(``batch_size * ensemble`` crops at the model's input size through the network, and that
batch's objects at their crops' sizes, each crop at most the image grown by the crop rule's
margins, since every box is clipped to the image). Cancelling stops between two batches.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import Cancelled, ConfigError, InvalidImageError
from .inference import SamplingSettings, SegmentationResult, Segmenter
from .preprocess import as_channels_first, prepare_crop
from .prompt_records import box_record
from .prompts import Box, CropRule, CropWindow, Point, PromptedLabels, paste_objects, resolve_prompts
from .samplers import SamplerStep, run_to_end

#: Objects per sampler run (times the ensemble) unless the caller says otherwise (the CLI's
#: ``--batch-size``); what bounds a prompted run's memory.
DEFAULT_PROMPT_BATCH = 8


@dataclass
class PromptedSegmentation:
    """The objects of one image: a full-size label map and what each object came from.

    ``labels`` (H, W) int32; ``probability`` (H, W) the winning object's probability;
    ``uncertainty`` (H, W) or ``None``; ``boxes`` (clipped to the image) and ``windows``
    per object, in prompt order; ``objects`` each object's own result at its crop's size,
    kept only when asked for (``keep_objects``: their memory grows with the prompts);
    ``label_meaning`` ``"objects"`` (a binary model: label i = the i-th prompt's object) or
    ``"classes"`` (a multi-class model: each pixel labelled with its class, ids not kept).
    """

    labels: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray | None
    boxes: list[Box]
    windows: list[CropWindow]
    objects: list[SegmentationResult]
    crop_rule: CropRule
    settings: dict[str, Any] = field(default_factory=dict)
    label_meaning: str = "objects"

    def prompts_record(self, slice_index: int = 0) -> dict[str, Any]:
        """What a corrections manifest line records about the prompts (JSON-ready): the
        boxes as the store reads them (:func:`~.prompt_records.box_record`), on ``slice_index``."""
        return {
            "boxes": [box_record(box, slice_index) for box in self.boxes],
            "crop_rule": self.crop_rule.to_dict(),
            "labels": self.label_meaning,
        }


def prepare_crops(
    segmenter: Segmenter, image: np.ndarray, boxes: Sequence[Box], rule: CropRule
) -> tuple[torch.Tensor, list[CropWindow]]:
    """Cut, normalise and resize one crop per box of a (C, H, W) image: ((N, C, h, w), windows).

    Each crop is normalised on its own, as each training crop was.
    """
    windows = [rule.window(box) for box in boxes]
    preprocess = segmenter.checkpoint.preprocess
    crops = [
        prepare_crop(
            image,
            window,
            segmenter.config.image_size,
            preprocess.normalisation,
            box=box if preprocess.prompt_channels else None,
        )
        for box, window in zip(boxes, windows, strict=True)
    ]
    return torch.cat(crops).to(segmenter.device), windows


def prompted_steps(
    segmenter: Segmenter,
    image: np.ndarray,
    prompts: Sequence[Box | Point],
    settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, never mutated
    *,
    channel_axis: int | None = None,
    crop_rule: CropRule | None = None,
    last_box_size: tuple[float, float] | None = None,
    batch_size: int = DEFAULT_PROMPT_BATCH,
    cancel: Callable[[], bool] | None = None,
    keep_objects: bool = False,
) -> Generator[SamplerStep, None, PromptedSegmentation]:
    """Segment the prompted objects of one 2D image step by step, ``batch_size`` objects a batch.

    ``crop_rule`` defaults to the checkpoint's (or the documented default). Yields each
    step of each batch (x_t of shape (objects in the batch * ensemble, K, h, w)); returns a
    :class:`PromptedSegmentation`. ``cancel()`` true between two batches raises
    :class:`~.errors.Cancelled`. Memory: see the module docstring (one batch at a time).
    """
    if batch_size < 1:
        raise ConfigError(f"The prompt batch size must be at least 1, got {batch_size}.")
    rule = crop_rule or segmenter.checkpoint.preprocess.prompt_crop_rule()
    channels_first = as_channels_first(image, segmenter.config.image_channels, channel_axis)
    image_shape = (int(channels_first.shape[1]), int(channels_first.shape[2]))
    boxes = resolve_prompts(prompts, image_shape, rule, last_box_size)
    if not boxes:
        raise InvalidImageError("No prompts: give at least one box or point, or segment the whole image.")
    # a drawn box bounds its object when the rule says so; a point's guessed box never does
    clip = [
        box if rule.clip_to_box and isinstance(prompt, Box) else None
        for prompt, box in zip(prompts, boxes, strict=True)
    ]
    pasted: PromptedLabels | None = None
    windows: list[CropWindow] = []
    objects: list[SegmentationResult] = []
    for start in range(0, len(boxes), batch_size):
        if start and cancel is not None and cancel():
            raise Cancelled(f"Stopped after {start} of the {len(boxes)} prompted objects.")
        prepared, batch_windows = prepare_crops(
            segmenter, channels_first, boxes[start : start + batch_size], rule
        )
        final = yield from segmenter.denoise(prepared, settings)
        del prepared
        found = _summarise_objects(segmenter, final, settings, batch_windows)
        batch_clip = clip[start : start + batch_size]
        pasted = _paste(segmenter, found, batch_windows, image_shape, settings, pasted, start + 1, batch_clip)
        windows += batch_windows
        objects += found if keep_objects else []
    assert pasted is not None
    return PromptedSegmentation(
        pasted.labels,
        pasted.probability,
        pasted.uncertainty,
        boxes,
        windows,
        objects,
        rule,
        settings.to_dict(),
        "objects" if segmenter.config.num_classes == 2 else "classes",
    )


def _summarise_objects(
    segmenter: Segmenter, final: torch.Tensor, settings: SamplingSettings, windows: list[CropWindow]
) -> list[SegmentationResult]:
    members = settings.ensemble
    return [
        segmenter.summarise(final[i * members : (i + 1) * members], settings, window.shape)[0]
        for i, window in enumerate(windows)
    ]


def _paste(
    segmenter: Segmenter,
    objects: list[SegmentationResult],
    windows: list[CropWindow],
    image_shape: tuple[int, int],
    settings: SamplingSettings,
    into: PromptedLabels | None,
    first_id: int,
    clip_boxes: list[Box | None],
) -> PromptedLabels:
    """One batch's objects into the full-size maps (``into``: the earlier batches'), each kept
    inside its clip box where it has one."""
    if segmenter.config.num_classes == 2:
        foreground = [result.probabilities for result in objects]
        object_labels = None
    else:
        foreground = [1 - result.probabilities[0] for result in objects]
        object_labels = [result.probabilities[1:].argmax(0) + 1 for result in objects]
    spreads = [result.uncertainty for result in objects]
    return paste_objects(
        foreground,
        windows,
        image_shape,
        settings.threshold,
        uncertainty=None if settings.ensemble < 2 else spreads,  # type: ignore[arg-type]
        object_labels=object_labels,
        into=into,
        first_id=first_id,
        clip_boxes=clip_boxes,
    )


def segment_prompts(
    segmenter: Segmenter,
    image: np.ndarray,
    prompts: Sequence[Box | Point],
    settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, never mutated
    *,
    channel_axis: int | None = None,
    crop_rule: CropRule | None = None,
    on_step: Callable[[SamplerStep], None] | None = None,
    batch_size: int = DEFAULT_PROMPT_BATCH,
    cancel: Callable[[], bool] | None = None,
    keep_objects: bool = False,
) -> PromptedSegmentation:
    """Segment the objects that ``prompts`` point at; label ids 1..n in prompt order.

    ``batch_size`` objects go through the sampler at a time (memory: see the module
    docstring); ``cancel()`` true between two batches raises :class:`~.errors.Cancelled`;
    ``keep_objects`` keeps each object's own result in ``objects``.

    Examples
    --------
    >>> from medsegdiff_training.checkpoint import Checkpoint
    >>> from medsegdiff_training.config import named_config, DiffusionConfig, PreprocessConfig
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> network = MedSegDiffUNet(named_config("tiny"))  # untrained: the masks are noise
    >>> checkpoint = Checkpoint(network, network.config, DiffusionConfig(), PreprocessConfig())
    >>> segmenter = Segmenter(checkpoint, device="cpu")
    >>> result = segment_prompts(segmenter, np.random.rand(300, 500), [Box(10, 20, 110, 90)],
    ...                          SamplingSettings(steps=2))
    >>> result.labels.shape, set(np.unique(result.labels)) <= {0, 1}
    ((300, 500), True)
    """
    steps = prompted_steps(
        segmenter,
        image,
        prompts,
        settings,
        channel_axis=channel_axis,
        crop_rule=crop_rule,
        batch_size=batch_size,
        cancel=cancel,
        keep_objects=keep_objects,
    )
    return run_to_end(steps, on_step)
