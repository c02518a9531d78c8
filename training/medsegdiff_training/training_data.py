"""The data of a training run: which datasets, what is held out, and how items are cut.

``medsegdiff train`` and the scripts that train the shipped models build their data here,
so a run from either reads, splits and crops the same way:

- :func:`split_sources` holds out, per dataset, its validation split or a fraction of its
  training pairs (drawn from the seed); :func:`hold_out_cases` holds out whole cases (a
  patient's slices, a nodule's frames: :data:`CASE_RULES`), as the shipped models were;
- :func:`build_datasets` reads them as whole images resized to the model's input, or as
  crops around the objects (:class:`~.data.roi_crops.RoiCropDataset`) when a crop rule is
  given; several datasets become one :class:`~.data.mixed.MixedDataset` drawn by weight;
- :func:`detect_channels` / :func:`detect_num_classes` read what the masks and images need.

Grey and colour mixed: a 3-channel model takes a grey image as three equal channels
(:func:`~.preprocess.as_channels_first`); with a luminance-anchored normalisation
(``luminance-percentile``) each of them is exactly the normalised grey image, so a grey
image looks to the network as it would to a grey model, and colour images add their
deviations from grey.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ModelConfig, PreprocessConfig
from .data.dataset import SegmentationDataset
from .data.io import read_array, read_mask
from .data.mixed import MixedDataset
from .data.pairs import Pair
from .data.roi_crops import CropRecipe, RoiCropDataset
from .data.sources import DatasetSource
from .errors import ConfigError


@dataclass
class SplitSource:
    """One dataset's training and validation pairs."""

    source: DatasetSource
    train: list[Pair]
    validation: list[Pair]


def split_sources(
    sources: Sequence[DatasetSource],
    val_split: str | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> list[SplitSource]:
    """Each dataset's (train, validation) pairs: its ``val_split``, or ``val_fraction`` of its pairs.

    A dataset too small to give up a validation image keeps all its pairs for training.
    """
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"The validation fraction must be in [0, 1), got {val_fraction}.")
    split = []
    for source in sources:
        pairs = source.pairs()
        if val_split:
            validation = source.pairs(val_split)
            held_out = {pair.name for pair in validation}
            split.append(SplitSource(source, [p for p in pairs if p.name not in held_out], validation))
            continue
        count = round(len(pairs) * val_fraction)
        if count == 0 or len(pairs) - count < 1:
            split.append(SplitSource(source, pairs, []))
            continue
        held = set(np.random.default_rng(seed).permutation(len(pairs))[:count].tolist())
        split.append(
            SplitSource(
                source,
                [p for i, p in enumerate(pairs) if i not in held],
                [p for i, p in enumerate(pairs) if i in held],
            )
        )
    return split


# How an image's name gives its case, so that no case is on both sides of the validation.
CASE_RULES: dict[str, Callable[[str], str]] = {
    "before-first-underscore": lambda name: name.split("_")[0],  # DDTI: CASE_FRAME(NODULE)
    "before-last-underscore": lambda name: name.rsplit("_", 1)[0],  # LGG MRI: CASE_SLICE
}


def hold_out_cases(
    pairs: Sequence[Pair], case_of: Callable[[str], str], images: int = 30, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """(training, validation) pairs: whole cases, in a seeded random order, go to validation
    until it holds at least ``images`` images.

    Examples
    --------
    >>> pairs = [Pair(f"{case}_{frame}", "image", "mask") for case in "abcd" for frame in range(3)]
    >>> train, validation = hold_out_cases(pairs, CASE_RULES["before-first-underscore"], images=4)
    >>> len(train), len(validation), len({pair.name[0] for pair in validation})
    (6, 6, 2)
    """
    cases = sorted({case_of(pair.name) for pair in pairs})
    random.Random(seed).shuffle(cases)
    held_out: set[str] = set()
    for case in cases:
        if sum(case_of(pair.name) in held_out for pair in pairs) >= images:
            break
        held_out.add(case)
    return (
        [pair for pair in pairs if case_of(pair.name) not in held_out],
        [pair for pair in pairs if case_of(pair.name) in held_out],
    )


def build_datasets(
    parts: Sequence[SplitSource],
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    recipe: CropRecipe | None = None,
    seed: int = 0,
) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """(training data, validation data or None) of the split datasets.

    With ``recipe`` (and the crop rule in ``preprocess``) items are crops around the objects;
    else whole images. One dataset is used as it is; several are mixed by their weights.
    """

    def read(pairs: list[Pair]) -> SegmentationDataset:
        if recipe is not None:
            return RoiCropDataset.from_pairs(pairs, model_config, preprocess, recipe=recipe, seed=seed)
        return SegmentationDataset.from_pairs(pairs, model_config, preprocess)

    train = {part.source.name: read(part.train) for part in parts}
    validation = {part.source.name: read(part.validation) for part in parts if part.validation}
    weights = {part.source.name: part.source.weight for part in parts}
    if len(parts) == 1:
        only = parts[0].source.name
        return train[only], validation.get(only)
    validation_data = MixedDataset(validation, weights) if validation else None
    return MixedDataset(train, weights), validation_data


def data_record(parts: Sequence[SplitSource], train_data: SegmentationDataset) -> dict[str, Any]:
    """What a checkpoint records about the data: each dataset's source, counts and weight."""
    record: dict[str, Any] = {
        "datasets": [
            {
                **part.source.to_dict(),
                "training_images": len(part.train),
                "validation_images": sorted(p.name for p in part.validation),
            }
            for part in parts
        ]
    }
    if len(parts) == 1:  # where fine-tuning's --mix-original finds the parent's data
        only = parts[0].source.to_dict()
        record["source"] = {key: only[key] for key in ("images", "masks", "split_csv", "split")}
        record["validation_images"] = record["datasets"][0]["validation_images"]
    if isinstance(train_data, MixedDataset):
        record["mix"] = train_data.recipe()
        first = train_data.parts[0]
        if isinstance(first, RoiCropDataset):
            record["roi_crops"] = first.recipe()
    elif isinstance(train_data, RoiCropDataset):
        record["roi_crops"] = train_data.recipe()
    return record


def detect_num_classes(pairs: Sequence[Pair]) -> int:
    """2 for 0/1 or 0/255 masks, else the largest label + 1 (label maps such as 0/1/2)."""
    top = 0
    for pair in pairs:
        mask = read_mask(pair.mask)
        values = np.unique(mask[..., 0] if mask.ndim == 3 else mask)
        if set(values.tolist()) <= {0, 255}:
            continue
        top = max(top, int(values.max()))
    return max(2, top + 1)


def detect_channels(pairs: Sequence[Pair]) -> int:
    """3 when any of the images read is RGB(A) (the first of each dataset is enough), else 1."""
    for pair in pairs:
        image = read_array(pair.image)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            return 3
    return 1
