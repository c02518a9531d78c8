"""Datasets: folders of image/mask pairs, corrections stores, augmentation.

The names are imported on first use (PEP 562), so that reading a file (``.io``) or finding
pairs (``.pairs``) never loads torch, which only the dataset and augmentation need.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AugmentConfig": ".augment",
    "augment_batch": ".augment",
    "SegmentationDataset": ".dataset",
    "read_array": ".io",
    "read_mask": ".io",
    "Pair": ".pairs",
    "find_pairs": ".pairs",
    "read_split_csv": ".pairs",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
