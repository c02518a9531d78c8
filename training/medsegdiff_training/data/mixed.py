"""Several training datasets as one, each drawn by its weight (``medsegdiff train --dataset ...``).

An epoch has as many items as all datasets together (``N``); dataset ``d`` gets
``weight_d / sum(weights) * N`` of them (largest remainders), cycling through its own items
from a place that moves every epoch, so a small dataset with a large weight repeats its
items (each repeat drawn afresh where the dataset draws per epoch, e.g. jittered crops) and
a large one with a small weight shows a different part each epoch. The trainer shuffles
the epoch. An item without an epoch (validation) is taken round-robin over the datasets,
so the first few validation items cover every dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError
from .dataset import Sample, SegmentationDataset


def shares(lengths: Sequence[int], weights: Sequence[float]) -> list[int]:
    """Items per epoch of each dataset: ``sum(lengths)`` split by weight, largest remainders.

    Examples
    --------
    >>> shares([100, 10], [1, 1]), shares([100, 10], [10, 1])
    ([55, 55], [100, 10])
    """
    total = sum(lengths)
    exact = np.asarray(weights, dtype=float) / float(np.sum(weights)) * total
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[index] += 1
    return [int(count) for count in counts]


class MixedDataset(SegmentationDataset):
    """Datasets with weights, one item space (see the module docstring).

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> tiny = named_config("tiny")
    >>> a = SegmentationDataset.from_arrays([np.random.rand(40, 40)] * 3, [np.eye(40)] * 3, tiny)
    >>> b = SegmentationDataset.from_arrays([np.random.rand(40, 40)], [np.eye(40)], tiny)
    >>> mixed = MixedDataset({"a": a, "b": b}, {"a": 1.0, "b": 1.0})
    >>> len(mixed), mixed.counts
    (4, [2, 2])
    """

    epoch_keys = True

    def __init__(self, datasets: dict[str, SegmentationDataset], weights: dict[str, float]) -> None:
        if not datasets:
            raise DatasetError("There is no training data.")
        empty = [name for name, data in datasets.items() if len(data) == 0]
        if empty:
            raise DatasetError(f"The dataset {empty[0]!r} has no images.")
        self.datasets, self.weights = dict(datasets), {name: float(weights[name]) for name in datasets}
        self.parts = list(self.datasets.values())
        self.counts = shares([len(d) for d in self.parts], [self.weights[n] for n in self.datasets])
        self.starts = np.cumsum([0, *self.counts])
        self.round_robin = _interleave(
            [len(d) for d in self.parts]
        )  # no super().__init__: no samples of its own

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [sample for part in self.parts for sample in part.samples]

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def names(self) -> list[str]:
        return [name for part in self.parts for name in part.names]

    def locate(self, key: int | tuple[int, int]) -> tuple[int, Any]:
        """(dataset number, that dataset's key) of a key of this dataset."""
        if not isinstance(key, tuple):
            return self.round_robin[int(key)]
        index, epoch = int(key[0]), int(key[1])
        part = int(np.searchsorted(self.starts, index, side="right") - 1)
        count, length = self.counts[part], len(self.parts[part])
        position = int(index - self.starts[part]) + epoch * count
        item, lap = position % length, position // length
        inner: Any = (item, lap) if getattr(self.parts[part], "epoch_keys", False) else item
        return part, inner

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        part, inner = self.locate(key)
        return self.parts[part][inner]

    def digest(self) -> str:
        """A SHA-256 over every dataset's digest and weight."""
        recipe = {name: [data.digest(), self.weights[name]] for name, data in self.datasets.items()}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()

    def recipe(self) -> dict[str, Any]:
        """What a checkpoint records: each dataset's images, weight and items per epoch."""
        return {
            name: {"images": len(data), "weight": self.weights[name], "per_epoch": count}
            for (name, data), count in zip(self.datasets.items(), self.counts, strict=True)
        }


def _interleave(lengths: Sequence[int]) -> list[tuple[int, int]]:
    order: list[tuple[int, int]] = []
    for item in range(max(lengths)):
        order.extend((part, item) for part, length in enumerate(lengths) if item < length)
    return order
