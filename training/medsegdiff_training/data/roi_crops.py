"""Training crops around the object, cut as box prompts cut them (``medsegdiff train --roi-crops``).

A model trained on whole frames sees the object small and squashed; box prompts show it a
crop around the object by the model's :class:`~medsegdiff_training.prompts.CropRule`. So
``--roi-crops`` trains on those crops, drawn by a :class:`CropRecipe`:

- the box: the mask's bounding box (all foreground labels together), or with
  ``per_object`` one 8-connected component's box, drawn afresh for every sample (the
  target is then that object alone: a box prompt asks for one object);
- its edges jittered by up to ``jitter`` of the box's side, outward and inward, as a
  person's loose box would be; with ``exact_share``, that share of the draws keeps the
  exact box (a model that must both trust a tight box and forgive a loose one);
- the crop around it by the rule, whose margin is relative to the box, so the same object
  at any size in pixels gives the same crop; for a model that is told where the box is
  (the box channel), the margin is drawn from ``context`` so that the box's place in the
  crop varies and the channel carries it;
- with ``scale``, the crop first resized to a random share of its size in pixels, as if
  the image had had fewer pixels (objects at many sizes in pixels).

Every draw comes from the run's seed, the item and the epoch, so a resumed run draws the
same. An image with an empty mask gets a random box of a plausible size (that of a random
non-empty mask of the data set, else the rule's point-box size) anywhere in it. The crop
is normalised on its own and resized to the model's input, exactly as a prompt crop is
(:func:`~medsegdiff_training.preprocess.prepare_crop`). The rule and the recipe are
recorded in the trained checkpoint.

Fine-tuning uses :func:`crop_sample` too, around the boxes an exported correction records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig, PreprocessConfig
from ..errors import ConfigError
from ..preprocess import as_channels_first, check_label_map, prepare_crop, resize_labels
from ..prompts import (
    DEFAULT_JITTER,
    Box,
    CropRule,
    CropWindow,
    extract_crop,
    jitter_box,
    mask_box,
    random_box,
)
from ..validation import check_known_keys
from .dataset import Sample, SegmentationDataset, array_names
from .pairs import Pair
from .slices import read_pair_slices


@dataclass(frozen=True)
class CropRecipe:
    """How training crops are drawn around the objects (see the module docstring).

    Examples
    --------
    >>> CropRecipe(per_object=True, jitter=0.2, scale=(0.25, 1.0)).to_dict()["scale"]
    [0.25, 1.0]
    """

    per_object: bool = False
    jitter: float = DEFAULT_JITTER
    exact_share: float = 0.0  # share of the draws that keep the exact box (the rest are jittered)
    context: tuple[float, float] | None = None  # margin fractions drawn per sample (box channel)
    scale: tuple[float, float] | None = None  # share of the crop's pixels kept, drawn log-uniformly
    min_object_pixels: int = 4  # smaller components are not objects of their own (per_object)

    def __post_init__(self) -> None:
        jitter_box(Box(0, 0, 1, 1), self.jitter, np.random.default_rng(0))  # refuses a bad jitter now
        if not (math.isfinite(self.exact_share) and 0 <= self.exact_share <= 1):
            raise ConfigError(f"The share of exact boxes is in [0, 1], got {self.exact_share}.")
        for name, low_limit in (("context", 0.0), ("scale", 1e-3)):
            bounds = getattr(self, name)
            if bounds is None:
                continue
            bounds = tuple(float(b) for b in bounds)
            if (
                len(bounds) != 2
                or not all(math.isfinite(b) for b in bounds)
                or not low_limit <= bounds[0] <= bounds[1]
            ):
                raise ConfigError(
                    f"The crop recipe's {name} is a range (low, high) with {low_limit} <= low <= high."
                )
            object.__setattr__(self, name, bounds)
        if self.scale is not None and self.scale[1] > 1:
            raise ConfigError("The crop recipe's scale keeps a share of the crop's pixels: at most 1.")
        if self.min_object_pixels < 1:
            raise ConfigError("min_object_pixels must be at least 1.")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name in ("context", "scale"):
            values[name] = None if values[name] is None else list(values[name])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CropRecipe:
        check_known_keys(values, cls, "crop recipe")
        return cls(**values)


@dataclass
class _Objects:
    """An item's objects: the component map (0 = background) and one box per component."""

    components: np.ndarray | None  # (H, W) int32, or None when the item is cut around all foreground
    boxes: list[Box]


def crop_sample(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    window: CropWindow,
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    box: Box | None = None,
    source_size: tuple[int, int] | None = None,
) -> Sample:
    """A training sample: (C, H, W) ``image`` and (H, W) ``labels`` under ``window``, at the model's size.

    Labels beyond the image's border are background. ``box`` (the prompt the crop was cut
    around) becomes the box channel of a model that has one.
    """
    channel_box = box if preprocess.prompt_channels else None
    if preprocess.prompt_channels and box is None:
        raise ConfigError("A model with the box channel needs the box each training crop was cut around.")
    tensor = prepare_crop(
        image,
        window,
        model_config.image_size,
        preprocess.normalisation,
        box=channel_box,
        source_size=source_size,
    )[0]
    cut = extract_crop(labels[None], window, fill=0)[0]
    return Sample(name, tensor, resize_labels(cut, model_config.image_size))


class RoiCropDataset(SegmentationDataset):
    """Full-size images and label maps in memory, cut around an object when an item is taken.

    ``dataset[(index, epoch)]`` draws the crop of that epoch (the trainer asks so:
    :attr:`epoch_keys`); ``dataset[index]`` gives the un-jittered crop around the first
    object at the rule's own margin (validation). ``samples`` hold the full-size (C, H, W)
    images, as read (not normalised), and their (H, W) label maps.

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
        recipe: CropRecipe = CropRecipe(),  # noqa: B008 - frozen, never mutated
        seed: int = 0,
    ) -> None:
        super().__init__(samples)
        self.model_config, self.preprocess = model_config, preprocess
        self.rule: CropRule = preprocess.prompt_crop_rule()
        self.crop_recipe, self.seed = recipe, int(seed)
        if recipe.per_object and model_config.num_classes != 2:
            raise ConfigError("Crops per object (box prompts) need a binary model: one object per box.")
        if recipe.context is not None and not preprocess.prompt_channels:
            raise ConfigError(
                "A varied crop context needs the box channel: without it the network cannot tell "
                "where the box is in the crop."
            )
        self.objects = [self._find_objects(sample.labels.numpy()) for sample in self.samples]
        self.box_sizes = [(box.height, box.width) for found in self.objects for box in found.boxes]

    @property
    def jitter(self) -> float:
        return self.crop_recipe.jitter

    @property
    def boxes(self) -> list[Box | None]:
        """Each item's first object box (all foreground together unless per object), or None."""
        return [found.boxes[0] if found.boxes else None for found in self.objects]

    def _find_objects(self, labels: np.ndarray) -> _Objects:
        if not self.crop_recipe.per_object:
            box = mask_box(labels)
            return _Objects(None, [] if box is None else [box])
        from scipy import ndimage

        components, count = ndimage.label(labels > 0, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        boxes, kept = [], np.zeros(count + 1, dtype=np.int32)
        for number, found in enumerate(ndimage.find_objects(components), start=1):
            if found is not None and sizes[number] >= self.crop_recipe.min_object_pixels:
                rows, columns = found
                boxes.append(Box(columns.start, rows.start, columns.stop, rows.stop))
                kept[number] = len(boxes)
        return _Objects(kept[components], boxes)

    def _rng(self, index: int, epoch: int | None) -> np.random.Generator:
        return np.random.default_rng([abs(self.seed), index, 0 if epoch is None else epoch + 1])

    def draw(
        self, index: int, epoch: int | None = None
    ) -> tuple[int, Box, CropWindow, tuple[int, int] | None]:
        """(object number or 0, box, crop window, source size) of item ``index`` in ``epoch``.

        ``epoch=None``: the first object's exact box at the rule's margin, no scale change.
        """
        rng = self._rng(index, epoch)
        found = self.objects[index]
        if not found.boxes:  # no object: a random box of a plausible size anywhere in the image
            shape = tuple(self.samples[index].labels.shape)
            size = (
                self.box_sizes[int(rng.integers(len(self.box_sizes)))]
                if self.box_sizes
                else (self.rule.point_box_fraction * min(shape),) * 2
            )
            number, box = 0, random_box(size, (int(shape[0]), int(shape[1])), rng)
        elif epoch is None:
            number, box = 1, found.boxes[0]
        else:
            number = int(rng.integers(len(found.boxes))) + 1
            box = found.boxes[number - 1]
            # a recipe without exact boxes draws no coin, so its draws stay those recorded before
            exact = self.crop_recipe.exact_share > 0 and rng.uniform() < self.crop_recipe.exact_share
            if not exact:
                box = jitter_box(box, self.crop_recipe.jitter, rng)
        rule = self.rule
        if epoch is not None and self.crop_recipe.context is not None:
            rule = dataclasses.replace(rule, margin_fraction=float(rng.uniform(*self.crop_recipe.context)))
        window = rule.window(box)
        source_size = None
        if epoch is not None and self.crop_recipe.scale is not None:
            low, high = self.crop_recipe.scale
            share = math.exp(rng.uniform(math.log(low), math.log(high)))
            if share < 0.99:
                source_size = (max(4, round(window.shape[0] * share)), max(4, round(window.shape[1] * share)))
        return number, box, window, source_size

    def box(self, index: int, epoch: int | None = None) -> Box:
        """The box item ``index`` is cut around in ``epoch`` (``None``: not jittered)."""
        return self.draw(index, epoch)[1]

    def window(self, index: int, epoch: int | None = None) -> CropWindow:
        """The crop window of item ``index`` in ``epoch`` (``None``: not jittered)."""
        return self.draw(index, epoch)[2]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        sample = self.samples[index]
        number, box, window, source_size = self.draw(index, epoch)
        labels = sample.labels.numpy()
        components = self.objects[index].components
        if components is not None:  # the prompted object alone; others in the crop are background
            labels = (components == number).astype(labels.dtype) if number else np.zeros_like(labels)
        cut = crop_sample(
            sample.name,
            sample.image.numpy(),
            labels,
            window,
            self.model_config,
            self.preprocess,
            box=box,
            source_size=source_size,
        )
        return cut.image, cut.labels

    def object_samples(self, index: int) -> list[Sample]:
        """Item ``index`` cut around each of its objects in turn, un-jittered, at the rule's own
        margin, each crop's target that object alone (per object): how held-out corrections
        are scored as box prompts. No object: no crop."""
        sample, found = self.samples[index], self.objects[index]
        labels = sample.labels.numpy()
        crops = []
        for number, box in enumerate(found.boxes, start=1):
            target = labels if found.components is None else (found.components == number).astype(labels.dtype)
            crops.append(
                crop_sample(
                    f"{sample.name}:object{number}",
                    sample.image.numpy(),
                    target,
                    self.rule.window(box),
                    self.model_config,
                    self.preprocess,
                    box=box,
                )  # fmt: skip
            )
        return crops

    def digest(self) -> str:
        """A SHA-256 over the full-size data and how it is cut (rule, recipe, seed)."""
        hasher = hashlib.sha256(super().digest().encode())
        hasher.update(json.dumps(self.recipe(), sort_keys=True).encode())
        return hasher.hexdigest()

    def recipe(self) -> dict[str, Any]:
        """What a checkpoint's training metadata records about the crops."""
        return {
            "crop_rule": self.rule.to_dict(),
            "prompt_encoding": self.preprocess.prompt_encoding,
            **self.crop_recipe.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        label_maps: Sequence[np.ndarray],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        names: Sequence[str] | None = None,
        *,
        recipe: CropRecipe = CropRecipe(),  # noqa: B008 - frozen, never mutated
        seed: int = 0,
    ) -> RoiCropDataset:
        """Build from full-size 2D arrays (each image 2D or RGB, each label map 2D)."""
        names = array_names(images, label_maps, names)
        preprocess = preprocess or PreprocessConfig()
        samples = [
            _full_sample(name, image, labels, model_config)
            for name, image, labels in zip(names, images, label_maps, strict=True)
        ]
        return cls(samples, model_config, preprocess, recipe=recipe, seed=seed)

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Pair],
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        *,
        recipe: CropRecipe = CropRecipe(),  # noqa: B008 - frozen, never mutated
        seed: int = 0,
    ) -> RoiCropDataset:
        """Read pairs from disk (a volume gives one sample per slice, ``name[z]``)."""
        samples = []
        for pair in pairs:
            slices = read_pair_slices(pair.image, pair.mask)
            for z, (image, labels) in enumerate(slices):
                name = pair.name if len(slices) == 1 else f"{pair.name}[{z}]"
                samples.append(_full_sample(name, image, labels, model_config))
        return cls(samples, model_config, preprocess or PreprocessConfig(), recipe=recipe, seed=seed)


def _full_sample(name: str, image: np.ndarray, labels: np.ndarray, model_config: ModelConfig) -> Sample:
    array = as_channels_first(image, model_config.image_channels)
    label_map = check_label_map(labels, model_config.num_classes, image_shape=array.shape[-2:])
    return Sample(name, torch.from_numpy(array), torch.from_numpy(label_map))
