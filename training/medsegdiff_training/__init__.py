"""MedSegDiff training core: network, samplers, training, registry. Never imports Qt or napari."""

__version__ = "0.1.0"
