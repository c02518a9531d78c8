"""The shared research datasets load with the right pair counts (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.config import named_config
from medsegdiff_training.data import SegmentationDataset, find_pairs, read_split_csv

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DDTI, DRISHTI = SHARED / "ddti", SHARED / "drishti_roi"

needs_ddti = pytest.mark.skipif(
    not DDTI.is_dir(), reason=f"the DDTI dataset is not at {DDTI} (see shared/data/README.md)"
)
needs_drishti = pytest.mark.skipif(
    not DRISHTI.is_dir(), reason=f"the Drishti-GS1 dataset is not at {DRISHTI} (see shared/data/README.md)"
)


@needs_ddti
def test_ddti_has_655_pairs_split_523_train_132_test():
    assert len(find_pairs(DDTI / "images", DDTI / "masks")) == 655
    train = find_pairs(DDTI / "images", DDTI / "masks", DDTI / "split.csv", "train")
    test = find_pairs(DDTI / "images", DDTI / "masks", DDTI / "split.csv", "test")
    assert (len(train), len(test)) == (523, 132)
    assert not {p.name for p in train} & {p.name for p in test}
    assert train[0].image.suffix == ".png" and train[0].mask.suffix == ".gif"


@needs_ddti
def test_ddti_gif_masks_load_as_binary_nodules():
    pairs = find_pairs(DDTI / "images", DDTI / "masks", DDTI / "split.csv", "test")[:4]
    data = SegmentationDataset.from_pairs(pairs, named_config("tiny"))
    for image, labels in (data[i] for i in range(len(data))):
        assert image.shape == (1, 32, 32) and set(labels.unique().tolist()) <= {0, 1}
    # nodule-centred crops: the nodule is a sizeable share of every non-empty frame
    fractions = [float(data[i][1].float().mean()) for i in range(len(data))]
    assert max(fractions) > 0.1


@needs_drishti
def test_drishti_has_101_pairs_split_50_training_51_test():
    assert len(find_pairs(DRISHTI / "images", DRISHTI / "masks")) == 101
    assert "name" not in read_split_csv(DRISHTI / "split.csv")  # no header row in this file
    training = find_pairs(DRISHTI / "images", DRISHTI / "masks", DRISHTI / "split.csv", "Training")
    test = find_pairs(DRISHTI / "images", DRISHTI / "masks", DRISHTI / "split.csv", "Test")
    assert (len(training), len(test)) == (50, 51)


@needs_drishti
def test_drishti_loads_as_rgb_images_with_disc_and_cup_labels():
    pairs = find_pairs(DRISHTI / "images", DRISHTI / "masks", DRISHTI / "split.csv", "Training")[:2]
    data = SegmentationDataset.from_pairs(pairs, named_config("tiny", image_channels=3, num_classes=3))
    image, labels = data[0]
    assert image.shape == (3, 32, 32)
    assert set(np.unique(labels.numpy()).tolist()) == {0, 1, 2}


def test_palette_label_maps_read_as_class_numbers_and_grey_palettes_as_grey(tmp_path):
    """Not shared data, but the same readers: colour-coded label maps keep their classes."""
    from PIL import Image

    from medsegdiff_training.data import read_array, read_mask

    labels = np.zeros((10, 10), np.uint8)
    labels[2:5, 2:5], labels[6:8, 6:8] = 1, 2
    coloured = Image.fromarray(labels, mode="P")
    coloured.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    coloured.save(tmp_path / "classes.png")
    assert np.array_equal(read_mask(tmp_path / "classes.png"), labels)
    # read as an image, it is the grey levels the picture shows
    assert set(np.unique(read_array(tmp_path / "classes.png")).tolist()) == {0, 76, 150}
    grey = Image.fromarray((labels > 0).astype(np.uint8), mode="P")
    grey.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    grey.save(tmp_path / "mask.gif")
    assert set(np.unique(read_mask(tmp_path / "mask.gif")).tolist()) == {0, 255}
