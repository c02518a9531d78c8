"""Several datasets for one model: where each is, which split, and its share of the training.

A dataset is named by its folder (``images/``, ``masks/`` and an optional ``split.csv``:
the layout of every dataset in ``shared/data``) or by a row of a dataset list file, a CSV::

    name,images,masks,split_csv,split,weight
    busi,busi/images,busi/masks,busi/split.csv,train,1
    ph2,ph2/images,ph2/masks,ph2/split.csv,train,2

whose relative paths are relative to the list file; ``split_csv``, ``split`` and ``weight``
may be empty (no split: every pair; weight 1). A dataset's weight is its share of the
training samples (``weight / sum of weights``), whatever its number of images.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .pairs import Pair, find_pairs

LIST_COLUMNS = ("name", "images", "masks", "split_csv", "split", "weight")
SPLIT_FILE = "split.csv"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset of a multi-dataset run."""

    name: str
    images: Path
    masks: Path
    split_csv: Path | None = None
    split: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise DatasetError(f"The dataset {self.name!r} needs a weight above 0, got {self.weight}.")

    def pairs(self, split: str | None = None) -> list[Pair]:
        """Its image/mask pairs of ``split`` (default: its own), names prefixed ``NAME/``."""
        chosen = split or self.split
        found = find_pairs(self.images, self.masks, self.split_csv if chosen else None, chosen)
        return [Pair(f"{self.name}/{pair.name}", pair.image, pair.mask) for pair in found]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": str(self.images.resolve()),
            "masks": str(self.masks.resolve()),
            "split_csv": None if self.split_csv is None else str(self.split_csv.resolve()),
            "split": self.split,
            "weight": self.weight,
        }


def source_from_folder(folder: str | Path, split: str | None = None, weight: float = 1.0) -> DatasetSource:
    """A dataset folder with ``images/``, ``masks/`` and an optional ``split.csv``.

    A ``split`` needs the folder's split.csv.

    Examples
    --------
    >>> source_from_folder("data/busi", "train").masks.as_posix()
    'data/busi/masks'
    """
    folder = Path(folder)
    split_csv = folder / SPLIT_FILE
    return DatasetSource(
        folder.name or str(folder),
        folder / "images",
        folder / "masks",
        split_csv if split is not None else None,
        split,
        weight,
    )


def read_dataset_list(path: str | Path) -> list[DatasetSource]:
    """The datasets a list file names (see the module docstring); names must be distinct."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"The dataset list {path} does not exist.")
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if any((value or "").strip() for value in row.values())]
    header = set(rows[0]) if rows else set()
    if not rows or not {"name", "images", "masks"} <= header:
        raise DatasetError(f"{path} must be a CSV with at least the columns name, images and masks.")
    unknown = header - set(LIST_COLUMNS)
    if unknown:
        raise DatasetError(f"{path} has unknown columns {sorted(unknown)}; use {', '.join(LIST_COLUMNS)}.")
    sources = []
    for number, row in enumerate(rows, start=2):
        cell = {key: (row.get(key) or "").strip() for key in LIST_COLUMNS}
        try:
            weight = float(cell["weight"]) if cell["weight"] else 1.0
        except ValueError:
            raise DatasetError(
                f"{path}, line {number}: the weight {cell['weight']!r} is not a number."
            ) from None

        def located(text: str) -> Path:
            return Path(text) if Path(text).is_absolute() else path.parent / text

        sources.append(
            DatasetSource(
                cell["name"] or f"dataset{number - 1}",
                located(cell["images"]),
                located(cell["masks"]),
                located(cell["split_csv"]) if cell["split_csv"] else None,
                cell["split"] or None,
                weight,
            )
        )
    check_distinct(sources)
    return sources


def check_distinct(sources: Sequence[DatasetSource]) -> None:
    """Refuse two datasets of one name (their samples' names would collide)."""
    names = [source.name for source in sources]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(f"Two datasets are named {repeated[0]!r}: give each its own name.")
