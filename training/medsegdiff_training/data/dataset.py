"""In-memory training data at the model's input size."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ModelConfig, PreprocessConfig
from ..errors import DatasetError
from ..preprocess import check_label_map, prepare_image, resize_labels
from .pairs import Pair
from .slices import NIFTI_SLICE_AXIS, read_pair_slices

__all__ = ["NIFTI_SLICE_AXIS", "Sample", "SegmentationDataset", "whole_sample"]


@dataclass
class Sample:
    """One 2D training example at the model's size."""

    name: str
    image: torch.Tensor  # (C, H, W) float, normalised
    labels: torch.Tensor  # (H, W) long


def array_names(
    images: Sequence[object], label_maps: Sequence[object], names: Sequence[str] | None
) -> list[str]:
    """The samples' names (``item0``, ``item1``... when not given); one per image and label map."""
    names = list(names) if names is not None else [f"item{i}" for i in range(len(images))]
    if not len(names) == len(images) == len(label_maps):
        raise DatasetError(
            f"Got {len(images)} images, {len(label_maps)} label maps and {len(names)} names: "
            "give one label map and one name per image."
        )
    return names


class SegmentationDataset(torch.utils.data.Dataset):
    """Images and label maps preprocessed once and kept in memory.

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> data = SegmentationDataset.from_arrays([np.random.rand(40, 40)], [np.eye(40)], named_config("tiny"))
    >>> data[0][0].shape, data[0][1].shape
    (torch.Size([1, 32, 32]), torch.Size([32, 32]))
    """

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        return sample.image, sample.labels

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def digest(self) -> str:
        """A SHA-256 over every image and label map: names the data a model was trained on."""
        hasher = hashlib.sha256()
        for sample in self.samples:
            hasher.update(sample.name.encode())
            hasher.update(sample.image.numpy().tobytes())
            hasher.update(sample.labels.numpy().astype(np.int16).tobytes())
        return hasher.hexdigest()

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        label_maps: Sequence[np.ndarray],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        names: Sequence[str] | None = None,
    ) -> SegmentationDataset:
        """Build from 2D arrays (each image 2D or RGB, each label map 2D)."""
        names = array_names(images, label_maps, names)
        samples = []
        for name, image, labels in zip(names, images, label_maps, strict=True):
            samples.append(whole_sample(name, image, labels, model_config, preprocess))
        return cls(samples)

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Pair],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
    ) -> SegmentationDataset:
        """Read pairs from disk by the one reading rule (:func:`.slices.read_slices`): a volume
        gives one sample per slice (``name[z]``); a mask of another shape is refused."""
        samples = []
        for pair in pairs:
            slices = read_pair_slices(pair.image, pair.mask)
            for z, (image, labels) in enumerate(slices):
                name = pair.name if len(slices) == 1 else f"{pair.name}[{z}]"
                samples.append(whole_sample(name, image, labels, model_config, preprocess))
        return cls(samples)


def whole_sample(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    model_config: ModelConfig,
    preprocess: PreprocessConfig | None,
) -> Sample:
    """One training sample: the whole 2D image resized to the model's input."""
    tensor = prepare_image(image, model_config, preprocess)[0]
    label_map = check_label_map(labels, model_config.num_classes, image_shape=np.asarray(image).shape[:2])
    return Sample(name, tensor, resize_labels(label_map, model_config.image_size))
