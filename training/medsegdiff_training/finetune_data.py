"""What a fine-tune trains and scores on: the corrections split, read, and cut around objects.

:func:`~medsegdiff_training.finetune.finetune` comes here for its data:

- :func:`split_entries` holds some corrections out, by a rule of their place in the store
  alone, so a store that grows keeps holding out what it held out: no correction a parent
  was trained on is ever held out to judge its child (its score would flatter the parent);
- :func:`correction_data` reads the rest as the training data: each correction as the whole
  frame (or, exported from a prompted run, one crop per recorded box) **and** cut around each
  of its objects by the parent's crop rule, with the box jittered afresh every epoch
  (:class:`~.data.roi_crops.RoiCropDataset`), half of every epoch each; so a full frame
  whose object is a few pixels at the model's input still teaches the object's edge, and every
  correction teaches box prompts too. The held-out corrections are scored the same two
  ways: whole, and one un-jittered crop per object;
- with ``mix_original``, the parent's own training data makes the other half of every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig, PreprocessConfig
from .corrections import CorrectionEntry, CorrectionsStore, prompt_boxes
from .data.dataset import SegmentationDataset
from .data.mixed import MixedDataset
from .data.pairs import find_pairs
from .data.roi_crops import CropRecipe, RoiCropDataset
from .errors import ConfigError
from .prompts import DEFAULT_JITTER

MIN_ENTRIES_FOR_VALIDATION = 3
DEFAULT_VALIDATION_FRACTION = 0.2
_GOLDEN = (math.sqrt(5) - 1) / 2  # seeds shift the held-out places by it: well spread


def held_out_places(count: int, fraction: float, seed: int = 0) -> list[int]:
    """Which of ``count`` entries (in id order) are held out: a ``fraction`` of them, evenly spread.

    Place ``k`` is held out when ``k * fraction + offset`` passes a whole number before
    ``k + 1``; the answer for ``k`` never depends on ``count``, so a growing store keeps its
    split (the seed picks the offset). At least one (the last, when no place of the rule is
    there yet: a later store holds out places after it) and never all (the first is then
    trained on).

    >>> held_out_places(20, 0.2), held_out_places(9, 0.2), held_out_places(3, 0.2)
    ([2, 7, 12, 17], [2, 7], [2])
    """
    offset = (0.5 + seed * _GOLDEN) % 1.0
    held = [
        k for k in range(count) if math.floor((k + 1) * fraction + offset) > math.floor(k * fraction + offset)
    ]
    if not held:
        held = [count - 1]
    return held[1:] if len(held) == count else held


def split_entries(
    entries: list[CorrectionEntry], validation_fraction: float | None = None, seed: int = 0
) -> tuple[list[CorrectionEntry], list[CorrectionEntry]]:
    """(train, validation) entries; validation only when there are at least 3 entries.

    ``validation_fraction`` ``None`` is :data:`DEFAULT_VALIDATION_FRACTION` (a fifth:
    one of 3-7 corrections, two of 8-12, four of 20); a number holds out that fraction
    (at least one; 0: none). Entries are taken in id order (an id begins with the time of
    its export) and held out by :func:`held_out_places`: an entry held out once stays held
    out as the store grows, and one trained on is never held out later.
    """
    if validation_fraction is not None and not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
    if len(entries) < MIN_ENTRIES_FOR_VALIDATION or validation_fraction == 0:
        return list(entries), []
    ordered = sorted(entries, key=lambda entry: entry.id)
    fraction = DEFAULT_VALIDATION_FRACTION if validation_fraction is None else validation_fraction
    held_out = set(held_out_places(len(ordered), fraction, seed))
    return (
        [e for i, e in enumerate(ordered) if i not in held_out],
        [e for i, e in enumerate(ordered) if i in held_out],
    )


def object_crop_recipe(
    metadata: dict[str, Any], model_config: ModelConfig, preprocess: PreprocessConfig
) -> CropRecipe:
    """How a fine-tune cuts its corrections around their objects: as the parent's own crops
    were cut when it recorded them (jitter, its share of exact boxes, and the context a
    box-channel model saw), one object per crop for a binary model, around all foreground
    otherwise."""
    recorded = ((metadata.get("training") or {}).get("roi_crops")) or {}
    jitter = recorded.get("jitter", DEFAULT_JITTER)
    exact = recorded.get("exact_share", 0.0)
    context = recorded.get("context") if preprocess.prompt_channels else None
    return CropRecipe(
        per_object=model_config.num_classes == 2,
        jitter=float(jitter) if isinstance(jitter, (int, float)) else DEFAULT_JITTER,
        exact_share=float(exact) if isinstance(exact, (int, float)) and 0 <= exact <= 1 else 0.0,
        context=tuple(context) if isinstance(context, list) and len(context) == 2 else None,
    )


@dataclass
class CorrectionData:
    """A fine-tune's data: what it trains on and what it scores (``None``: none held out)."""

    train: SegmentationDataset
    validation: SegmentationDataset | None
    prompt_crops: int  # training samples cut around recorded prompt boxes
    object_crops: int  # training corrections also cut around their objects (0: none)


def _object_crops(
    store: CorrectionsStore,
    entries: list[CorrectionEntry],
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    recipe: CropRecipe,
    seed: int,
) -> RoiCropDataset | None:
    """The corrections without recorded prompts, full size, cut around their objects when taken."""
    prompted = set(prompt_boxes(entries))
    pairs = [pair for pair in store.training_pairs(entries) if pair[0] not in prompted]
    if not pairs:
        return None
    names, images, labels = zip(*pairs, strict=True)
    return RoiCropDataset.from_arrays(
        list(images), list(labels), model_config, preprocess, list(names), recipe=recipe, seed=seed
    )


def correction_data(
    store: CorrectionsStore,
    train_entries: list[CorrectionEntry],
    validation_entries: list[CorrectionEntry],
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    *,
    recipe: CropRecipe | None,
    original: SegmentationDataset | None = None,
    seed: int = 0,
) -> CorrectionData:
    """The training and held-out data of a fine-tune (see the module docstring).

    ``recipe`` ``None`` uses the corrections whole only (and the held-out ones scored whole);
    ``original`` (the parent's own data) makes half of every epoch when given.
    """
    rule = preprocess.prompt_crop_rule()
    whole = store.as_dataset(model_config, preprocess, train_entries, crop_rule=rule)
    crops = (
        None
        if recipe is None
        else _object_crops(store, train_entries, model_config, preprocess, recipe, seed)
    )
    parts: dict[str, SegmentationDataset] = {"corrections": whole}
    weights = {"corrections": 1.0}
    if crops is not None:
        parts["object crops"], weights = crops, {"corrections": 0.5, "object crops": 0.5}
    if original is not None:
        parts["original"], weights["original"] = original, 1.0
    train = whole if len(parts) == 1 else MixedDataset(parts, weights)
    validation = None
    if validation_entries:
        validation = store.as_dataset(model_config, preprocess, validation_entries, crop_rule=rule)
        held = (
            None
            if recipe is None
            else _object_crops(store, validation_entries, model_config, preprocess, recipe, seed)
        )
        if held is not None:
            cut = [crop for index in range(len(held)) for crop in held.object_samples(index)]
            validation = SegmentationDataset(validation.samples + cut)
    prompt_crops = sum(1 for name in whole.names if ":box" in name)
    return CorrectionData(train, validation, prompt_crops, 0 if crops is None else len(crops))


def parent_mask_loss_weight(metadata: dict[str, Any]) -> float:
    """The soft-Dice weight a checkpoint was trained with (0, the paper's MSE alone, if unknown)."""
    weight = ((metadata.get("training") or {}).get("config") or {}).get("mask_loss_weight", 0.0)
    return float(weight) if isinstance(weight, (int, float)) else 0.0


_GIVE_ORIGINAL_FOLDERS = (
    "To mix in the original data, give the folders of the parent's training images and masks "
    "(--original-images and --original-masks)"
)


def original_data(
    metadata: dict[str, Any],
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    images: Path | None,
    masks: Path | None,
) -> SegmentationDataset:
    """The parent's own training data: given folders, else those its checkpoint names."""
    source = (metadata.get("training") or {}).get("source") or {}
    split_csv, split = None, None
    if images is None or masks is None:
        if not source.get("images") or not source.get("masks"):
            raise ConfigError(f"{_GIVE_ORIGINAL_FOLDERS}: the parent's checkpoint does not name them.")
        images, masks = Path(source["images"]), Path(source["masks"])
        split_csv, split = source.get("split_csv"), source.get("split")
        if not (images.is_dir() and masks.is_dir()):  # e.g. a shipped model trained on another machine
            raise ConfigError(
                f"{_GIVE_ORIGINAL_FOLDERS}: the parent's checkpoint names {images} and {masks}, "
                "which are not on this machine."
            )
    pairs = find_pairs(images, masks, split_csv, split)
    return SegmentationDataset.from_pairs(pairs, model_config, preprocess)
