"""Training crops around the object, cut as box prompts cut them (``medsegdiff train --roi-crops``).

A model trained on whole frames sees the object small and squashed; box prompts show it a
crop around the object by the model's :class:`~medsegdiff_training.prompts.CropRule`. So
``--roi-crops`` trains on those crops: each training image is cut around its mask's
bounding box (all foreground labels together) by the rule, the box's edges jittered by up
to ``jitter`` (10 %) of its size, drawn afresh for every sample in every epoch from the
run's seed; an image with an empty mask gets a random box of a plausible size (that of a
random non-empty mask of the data set, else the rule's point-box size) anywhere in it.
The crop is normalised on its own and resized to the model's input, exactly as a prompt
crop is (:func:`~medsegdiff_training.preprocess.prepare_crop`). The rule is recorded in
the trained checkpoint's preprocess configuration.

Fine-tuning uses :func:`crop_sample` too, around the boxes an exported correction records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig, PreprocessConfig
from ..preprocess import as_channels_first, check_label_map, prepare_crop, resize_labels
from ..prompts import Box, CropRule, CropWindow, extract_crop, jitter_box, mask_box, random_box
from .dataset import Sample, SegmentationDataset, array_names
from .pairs import Pair
from .slices import read_pair_slices

#: Each box edge moves by up to this fraction of the box's size (uniform, per sample per epoch).
DEFAULT_JITTER = 0.1


def crop_sample(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    window: CropWindow,
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
) -> Sample:
    """A training sample: (C, H, W) ``image`` and (H, W) ``labels`` under ``window``, at the model's size.

    Labels beyond the image's border are background.
    """
    tensor = prepare_crop(image, window, model_config.image_size, preprocess.normalisation)[0]
    cut = extract_crop(labels[None], window, fill=0)[0]
    return Sample(name, tensor, resize_labels(cut, model_config.image_size))


class RoiCropDataset(SegmentationDataset):
    """Full-size images and label maps in memory, cut around the object when an item is taken.

    ``dataset[(index, epoch)]`` draws the jittered crop of that epoch (the trainer asks so:
    :attr:`epoch_keys`); ``dataset[index]`` gives the un-jittered crop (validation).
    ``samples`` hold the full-size (C, H, W) images, as read (not normalised), and their
    (H, W) label maps.

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> labels = np.zeros((300, 400), np.uint8); labels[100:140, 200:260] = 1
    >>> rule = CropRule(margin_px=20, margin_fraction=0)
    >>> data = RoiCropDataset.from_arrays([np.random.rand(300, 400)], [labels], named_config("tiny"),
    ...                                   PreprocessConfig(crop_rule=rule))
    >>> data.window(0)
    CropWindow(top=80, left=180, bottom=160, right=280)
    >>> image, cut = data[(0, 3)]
    >>> image.shape, cut.shape
    (torch.Size([1, 32, 32]), torch.Size([32, 32]))
    """

    epoch_keys = True

    def __init__(
        self,
        samples: Sequence[Sample],
        model_config: ModelConfig,
        preprocess: PreprocessConfig,
        *,
        jitter: float = DEFAULT_JITTER,
        seed: int = 0,
    ) -> None:
        super().__init__(samples)
        self.model_config, self.preprocess = model_config, preprocess
        self.rule: CropRule = preprocess.prompt_crop_rule()
        self.jitter, self.seed = float(jitter), int(seed)
        jitter_box(Box(0, 0, 1, 1), self.jitter, np.random.default_rng(0))  # refuses a bad jitter now
        self.boxes = [mask_box(sample.labels.numpy()) for sample in self.samples]
        self.box_sizes = [(box.height, box.width) for box in self.boxes if box is not None]

    def box(self, index: int, epoch: int | None = None) -> Box:
        """The box item ``index`` is cut around in ``epoch`` (``None``: not jittered)."""
        rng = np.random.default_rng([abs(self.seed), index, 0 if epoch is None else epoch + 1])
        shape = tuple(self.samples[index].labels.shape)
        box = self.boxes[index]
        if box is None:  # no object: a random box of a plausible size anywhere in the image
            size = (
                self.box_sizes[int(rng.integers(len(self.box_sizes)))]
                if self.box_sizes
                else (self.rule.point_box_fraction * min(shape),) * 2
            )
            return random_box(size, (int(shape[0]), int(shape[1])), rng)
        return box if epoch is None else jitter_box(box, self.jitter, rng)

    def window(self, index: int, epoch: int | None = None) -> CropWindow:
        """The crop window of item ``index`` in ``epoch`` (``None``: not jittered)."""
        return self.rule.window(self.box(index, epoch))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        sample = self.samples[index]
        cut = crop_sample(
            sample.name,
            sample.image.numpy(),
            sample.labels.numpy(),
            self.window(index, epoch),
            self.model_config,
            self.preprocess,
        )
        return cut.image, cut.labels

    def digest(self) -> str:
        """A SHA-256 over the full-size data and how it is cut (rule, jitter, seed)."""
        hasher = hashlib.sha256(super().digest().encode())
        recipe: dict[str, Any] = {"rule": self.rule.to_dict(), "jitter": self.jitter, "seed": self.seed}
        hasher.update(json.dumps(recipe, sort_keys=True).encode())
        return hasher.hexdigest()

    def recipe(self) -> dict[str, Any]:
        """What a checkpoint's training metadata records about the crops."""
        return {"crop_rule": self.rule.to_dict(), "jitter": self.jitter, "seed": self.seed}

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        label_maps: Sequence[np.ndarray],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        names: Sequence[str] | None = None,
        *,
        jitter: float = DEFAULT_JITTER,
        seed: int = 0,
    ) -> RoiCropDataset:
        """Build from full-size 2D arrays (each image 2D or RGB, each label map 2D)."""
        names = array_names(images, label_maps, names)
        preprocess = preprocess or PreprocessConfig()
        samples = [
            _full_sample(name, image, labels, model_config)
            for name, image, labels in zip(names, images, label_maps, strict=True)
        ]
        return cls(samples, model_config, preprocess, jitter=jitter, seed=seed)

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Pair],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        *,
        jitter: float = DEFAULT_JITTER,
        seed: int = 0,
    ) -> RoiCropDataset:
        """Read pairs from disk (a volume gives one sample per slice, ``name[z]``)."""
        samples = []
        for pair in pairs:
            slices = read_pair_slices(pair.image, pair.mask)
            for z, (image, labels) in enumerate(slices):
                name = pair.name if len(slices) == 1 else f"{pair.name}[{z}]"
                samples.append(_full_sample(name, image, labels, model_config))
        return cls(samples, model_config, preprocess or PreprocessConfig(), jitter=jitter, seed=seed)


def _full_sample(name: str, image: np.ndarray, labels: np.ndarray, model_config: ModelConfig) -> Sample:
    array = as_channels_first(image, model_config.image_channels)
    label_map = check_label_map(labels, model_config.num_classes, image_shape=array.shape[-2:])
    return Sample(name, torch.from_numpy(array), torch.from_numpy(label_map))
