"""Segmenting the objects that box and point prompts point at, on a full-size image.

Each prompt becomes a crop by the model's crop rule (:mod:`medsegdiff_training.prompts`);
all crops of a run, times the ensemble, go through the sampler as one batch (object ``i``'s
members are adjacent, object 0 first); each object's mean probability is pasted back into
its crop's footprint. Binary models give label ids 1..n in prompt order. Multi-class
models label each object's pixels with their class (1..K-1), an object's foreground being
``1 - P(background) > threshold``; there, overlaps go to the object with the lower
background probability, and object ids are not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import InvalidImageError
from .inference import SamplingSettings, SegmentationResult, Segmenter
from .preprocess import as_channels_first, prepare_crop
from .prompts import Box, CropRule, CropWindow, Point, paste_objects, resolve_prompts
from .samplers import SamplerStep, run_to_end


@dataclass
class PromptedSegmentation:
    """The objects of one image: a full-size label map and what each object came from.

    ``labels`` (H, W) int32; ``probability`` (H, W) the winning object's probability;
    ``uncertainty`` (H, W) or ``None``; ``boxes`` and ``windows`` per object, in prompt
    order; ``objects`` each object's own result at its crop's size.
    """

    labels: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray | None
    boxes: list[Box]
    windows: list[CropWindow]
    objects: list[SegmentationResult]
    crop_rule: CropRule
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label_meaning(self) -> str:
        """``"objects"`` (a binary model: label i = the i-th prompt's object) or ``"classes"``
        (a multi-class model: each pixel labelled with its class, object ids not kept)."""
        return "classes" if self.objects and np.ndim(self.objects[0].probabilities) == 3 else "objects"

    def prompts_record(self) -> dict[str, Any]:
        """What a corrections manifest line records about the prompts (JSON-ready)."""
        return {
            "boxes": [box.to_list() for box in self.boxes],
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
) -> Generator[SamplerStep, None, PromptedSegmentation]:
    """Segment the prompted objects of one 2D image step by step (one sampler batch).

    ``crop_rule`` defaults to the checkpoint's (or the documented default). Yields each
    step (x_t of shape (n_prompts * ensemble, K, h, w)); returns a
    :class:`PromptedSegmentation`.
    """
    rule = crop_rule or segmenter.checkpoint.preprocess.prompt_crop_rule()
    channels_first = as_channels_first(image, segmenter.config.image_channels, channel_axis)
    image_shape = (int(channels_first.shape[1]), int(channels_first.shape[2]))
    boxes = resolve_prompts(prompts, image_shape, rule, last_box_size)
    if not boxes:
        raise InvalidImageError("No prompts: give at least one box or point, or segment the whole image.")
    prepared, windows = prepare_crops(segmenter, channels_first, boxes, rule)
    final = yield from segmenter.denoise(prepared, settings)
    members = settings.ensemble
    objects = [
        segmenter.summarise(final[i * members : (i + 1) * members], settings, window.shape)[0]
        for i, window in enumerate(windows)
    ]
    if segmenter.config.num_classes == 2:
        foreground = [result.probabilities for result in objects]
        object_labels = None
    else:
        foreground = [1 - result.probabilities[0] for result in objects]
        object_labels = [result.probabilities[1:].argmax(0) + 1 for result in objects]
    spreads = [result.uncertainty for result in objects]
    pasted = paste_objects(
        foreground,
        windows,
        image_shape,
        settings.threshold,
        uncertainty=None if members < 2 else spreads,  # type: ignore[arg-type]
        object_labels=object_labels,
    )
    return PromptedSegmentation(
        pasted.labels,
        pasted.probability,
        pasted.uncertainty,
        boxes,
        windows,
        objects,
        rule,
        settings.to_dict(),
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
) -> PromptedSegmentation:
    """Segment the objects that ``prompts`` point at; label ids 1..n in prompt order.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.config import named_config, DiffusionConfig, PreprocessConfig
    >>> from medsegdiff_training.checkpoint import save_checkpoint, load_checkpoint
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> folder = save_checkpoint(tempfile.mkdtemp() + "/m", MedSegDiffUNet(named_config("tiny")),
    ...                          DiffusionConfig(), PreprocessConfig())
    >>> segmenter = Segmenter(load_checkpoint(folder), device="cpu")
    >>> result = segment_prompts(segmenter, np.random.rand(300, 500), [Box(10, 20, 110, 90)],
    ...                          SamplingSettings(steps=2))
    >>> result.labels.shape, set(np.unique(result.labels)) <= {0, 1}
    ((300, 500), True)
    """
    steps = prompted_steps(
        segmenter, image, prompts, settings, channel_axis=channel_axis, crop_rule=crop_rule
    )
    return run_to_end(steps, on_step)
