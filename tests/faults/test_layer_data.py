"""The arrays a napari layer can hold, as the plugin hands them to the core: segmented or refused."""

from __future__ import annotations

import numpy as np
import pytest

from medsegdiff_training.config import named_config
from medsegdiff_training.errors import InvalidImageError
from medsegdiff_training.preprocess import prepare_image

ODD_LAYERS = {
    "complex": np.ones((40, 40), np.complex64),
    "object": np.full((40, 40), None, object),
    "text": np.full((40, 40), "a"),
    "nan": np.full((40, 40), np.nan),
    "inf": np.full((40, 40), -np.inf, np.float32),
    "beyond-float32": np.full((40, 40), 1e308),
    "half-beyond-float32": np.where(np.eye(40, dtype=bool), 1e300, 0.0),
    "one-pixel": np.ones((1, 1)),
    "empty": np.ones((0, 40)),
    "1d": np.ones(40),
    "4d": np.ones((2, 2, 40, 40)),
    "volume-like": np.ones((8, 40, 40)),
}
FINE_LAYERS = {
    "bool": np.eye(40, dtype=bool),
    "float16": np.eye(40, dtype=np.float16),
    "uint64-huge": np.full((40, 40), 2**63, np.uint64),
    "int8-negative": np.full((40, 40), -128, np.int8),
    "float64-large": np.eye(40) * 1e30,
    "constant": np.zeros((40, 40)),
}


@pytest.mark.parametrize("kind", list(ODD_LAYERS))
def test_an_odd_layer_is_refused_with_a_named_error(kind):
    with pytest.raises(InvalidImageError):  # warnings are errors here: no RuntimeWarning either
        prepare_image(ODD_LAYERS[kind], named_config("tiny"))


@pytest.mark.parametrize("kind", list(FINE_LAYERS))
def test_an_unusual_but_valid_layer_gives_finite_network_input(kind):
    tensor = prepare_image(FINE_LAYERS[kind], named_config("tiny"))
    assert tensor.shape == (1, 1, 32, 32) and bool(tensor.isfinite().all())
