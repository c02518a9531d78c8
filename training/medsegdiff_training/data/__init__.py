"""Datasets: folders of image/mask pairs, corrections stores, augmentation."""

from .augment import AugmentConfig, augment_batch
from .dataset import SegmentationDataset
from .io import read_array, read_mask
from .pairs import Pair, find_pairs, read_split_csv

__all__ = [
    "AugmentConfig",
    "Pair",
    "SegmentationDataset",
    "augment_batch",
    "find_pairs",
    "read_array",
    "read_mask",
    "read_split_csv",
]
