"""MedSegDiff training core: network, samplers, training, registry. Never imports Qt or napari."""

# The one place the version is written: both distributions' builds read it (hatch).
__version__ = "0.1.0"
