"""Rules written once: the label file dtype, the version, the channel-axis guess."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.io import read_array
from medsegdiff_training.data.writers import write_label_map
from medsegdiff_training.errors import InvalidImageError, InvalidMaskError
from medsegdiff_training.preprocess import as_channels_first, guess_channel_axis


def test_label_files_and_corrections_store_large_labels_alike(tmp_path):
    labels = np.zeros((8, 8), np.int64)
    labels[2:4, 2:4] = 70_000  # beyond uint16: once written modulo 65536 by the label writer
    assert int(read_array(write_label_map(tmp_path / "a.tif", labels)).max()) == 70_000
    with pytest.raises(InvalidMaskError, match="PNG holds labels up to 65535"):
        write_label_map(tmp_path / "a.png", labels)
    store = CorrectionsStore(tmp_path / "store")
    entry = store.add(np.random.rand(8, 8), labels)
    assert int(store.read(entry)[1].max()) == 70_000


def test_the_version_is_written_once(repository_root):
    import medsegdiff_training
    import napari_medsegdiff

    for pyproject in ("pyproject.toml", "training/pyproject.toml"):
        text = (repository_root / pyproject).read_text()
        assert re.search(r'^dynamic = \["version"\]', text, re.M) and not re.search(r"^version =", text, re.M)
    assert napari_medsegdiff.__version__ == medsegdiff_training.__version__


def test_the_channel_axis_guess_is_the_one_preprocess_uses():
    stack = np.random.rand(2, 20, 30)
    assert guess_channel_axis(stack.shape) == 0 and as_channels_first(stack, 2).shape == (2, 20, 30)
    rgb = np.random.rand(20, 30, 3)
    assert guess_channel_axis(rgb.shape) == 2 and as_channels_first(rgb, 3).shape == (3, 20, 30)
    with pytest.raises(InvalidImageError, match="looks like a volume"):
        as_channels_first(np.random.rand(20, 30, 40), 1)
