"""The order a training run takes its samples in: endless shuffled batches, resumable.

:func:`~medsegdiff_training.trainer.train` draws its batches here, in its own thread or from
DataLoader workers; the order is the same either way, and a resumed run continues it.
"""

from __future__ import annotations

from typing import Any

import torch

from .data.dataset import SegmentationDataset
from .distributed import process_rank, world_size


class Order:
    """Endless shuffled indices; under DDP each rank gets its own share of every epoch."""

    def __init__(self, dataset: SegmentationDataset, seed: int, epoch: int = 0, position: int = 0) -> None:
        self.dataset, self.seed = dataset, seed
        self.epoch, self.position, self.order = epoch, position, self._order(epoch)

    def _order(self, epoch: int) -> list[int]:
        sampler: torch.utils.data.DistributedSampler[int]
        sampler = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=world_size(), rank=process_rank(), shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def take(self, count: int) -> list[Any]:
        """The next ``count`` item keys: indices, or (index, epoch) for a data set with ``epoch_keys``
        (whose items change every epoch, e.g. jittered crops, the same in a resumed run)."""
        epoch_keys = bool(getattr(self.dataset, "epoch_keys", False))
        keys: list[Any] = []
        while len(keys) < count:
            if self.position >= len(self.order):
                self.epoch, self.position = self.epoch + 1, 0
                self.order = self._order(self.epoch)
            index = self.order[self.position]
            keys.append((index, self.epoch) if epoch_keys else index)
            self.position += 1
        return keys


class IndexBatches:
    """The batch sampler of the worker DataLoader: the same index lists, from a given state."""

    def __init__(self, order: Order, batch_size: int) -> None:
        self.order, self.batch_size = order, batch_size

    def __iter__(self):
        while True:
            yield self.order.take(self.batch_size)


class Batches:
    """Endless shuffled batches, stacked in this thread or by DataLoader workers.

    With workers the batches come prefetched (in pinned memory on CUDA, so the copy to
    the GPU overlaps compute); the order, and so a resumed run, is the same either way:
    the workers draw from a copy of the order that starts where training stands.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        batch_size: int,
        seed: int,
        workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.workers, self.pin_memory = workers, pin_memory
        self.consumed = Order(dataset, seed)
        self._loader: Any = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.workers == 0:
            indices = self.consumed.take(self.batch_size)
            images, labels = zip(*(self.dataset[i] for i in indices), strict=True)
            return torch.stack(images), torch.stack(labels)
        if self._loader is None:
            start = Order(self.dataset, self.seed, self.consumed.epoch, self.consumed.position)
            self._loader = iter(
                torch.utils.data.DataLoader(
                    self.dataset,
                    batch_sampler=IndexBatches(start, self.batch_size),
                    num_workers=self.workers,
                    pin_memory=self.pin_memory,
                    prefetch_factor=4,
                    # its own seed source: drawing from the global RNG would change the noise
                    generator=torch.Generator().manual_seed(self.seed),
                )
            )
        self.consumed.take(self.batch_size)
        images, labels = next(self._loader)
        return images, labels

    def close(self) -> None:
        """Stop the workers (they hold a copy of the data set)."""
        self._loader = None

    def state(self) -> dict[str, int]:
        return {"epoch": self.consumed.epoch, "position": self.consumed.position}

    def restore(self, state: dict[str, int]) -> None:
        self.close()
        self.consumed = Order(self.dataset, self.seed, int(state["epoch"]), int(state["position"]))
