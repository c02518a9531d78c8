"""What a finished run leaves in the viewer: the editable Labels layer and the uncertainty map.

:class:`SegmentationRun` is the record of one run (image layer, how it was read, model
version, device, sampler settings, slices; after it ends the Labels layer and the model's
own prediction), kept by the widget as ``last_run`` and, for exporting corrections later,
on the Labels layer as ``metadata["medsegdiff"]``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._export import RUN_KEY
from ._layer_axes import LayerAxes
from ._placement import Placement

UNCERTAINTY_KEY = "medsegdiff_uncertainty"  # metadata flag of the uncertainty layers made here

if TYPE_CHECKING:
    import napari

    from medsegdiff_training.inference import SamplingSettings, SegmentationResult


@dataclass
class SegmentationRun:
    """One press of Segment: what was asked for and, once done, what it made."""

    image_layer: Any
    axes: LayerAxes
    placement: Placement
    model_version: str
    device: str
    settings: SamplingSettings
    slices: list[int]
    labels_layer: Any = None
    uncertainty_layer: Any = None
    prediction: np.ndarray | None = field(default=None, repr=False)  # the model's labels, unedited

    def record(self) -> dict[str, Any]:
        """The run as plain values, for the Labels layer's metadata."""
        return {
            "image_layer": self.image_layer.name,
            "model_version": self.model_version,
            "device": self.device,
            "sampler_settings": self.settings.to_dict(),
            "read_as": self.axes.kind,
            "slice_axis": self.axes.slice_axis if self.axes.kind == "volume" else None,
            "slices": list(self.slices),
            "prediction": self.prediction,
        }


def add_result_layers(viewer: napari.Viewer, run: SegmentationRun, results: list[SegmentationResult]) -> Any:
    """Add ``<image> segmentation`` (and, for an ensemble, ``<image> uncertainty``); return the labels.

    A volume gets one 3D Labels layer with the segmented slices filled in. Both layers take
    the image's own transform, so they line up with it in the world.
    """
    steps = result_layer_steps(viewer, run, results)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def result_layer_steps(
    viewer: napari.Viewer, run: SegmentationRun, results: list[SegmentationResult]
) -> Generator[None, None, Any]:
    """:func:`add_result_layers` one layer at a time: it yields between the layers so that the
    caller can let the viewer draw and answer clicks in between; returns the Labels layer.

    The uncertainty map of an earlier run on the same image is reused (its data replaced)
    rather than a second one added.
    """
    axes, name = run.axes, run.image_layer.name
    labels = np.zeros(axes.labels_shape, dtype=np.uint8)
    ensemble = run.settings.ensemble > 1
    uncertainty = np.zeros(axes.labels_shape, dtype=np.float32) if ensemble else None
    for index, result in zip(run.slices, results, strict=True):
        target = axes.slice_position(index)
        labels[target] = result.labels
        if uncertainty is not None and result.uncertainty is not None:
            uncertainty[target] = result.uncertainty
    run.prediction = labels.copy()
    metadata: dict[str, Any] = {}
    for key in ("nifti_affine", "dicom"):  # written back with the scan's affine / as a SEG of its series
        if key in run.image_layer.metadata:
            metadata[key] = run.image_layer.metadata[key]
    # The uncertainty map under the labels, so that the labels stay on top for editing.
    if uncertainty is not None:
        earlier = _earlier_uncertainty(viewer, f"{name} uncertainty", uncertainty.shape, run)
        if earlier is not None:
            earlier.data = uncertainty
            run.uncertainty_layer = earlier
        else:
            run.uncertainty_layer = viewer.add_image(
                uncertainty,
                name=f"{name} uncertainty",
                colormap="cyan",  # black where the members agree: nothing is added there
                contrast_limits=(0.0, 0.5),  # the spread of probabilities in [0, 1] is at most 0.5
                opacity=0.6,
                blending="additive",
                metadata={UNCERTAINTY_KEY: True},
                **run.placement.layer_kwargs(),
            )
        yield
    run.labels_layer = viewer.add_labels(
        labels,
        name=f"{name} segmentation",
        opacity=0.5,
        metadata={**metadata, RUN_KEY: run.record()},
        **run.placement.layer_kwargs(),
    )
    return run.labels_layer


def _earlier_uncertainty(
    viewer: napari.Viewer, name: str, shape: tuple[int, ...], run: SegmentationRun
) -> Any:
    """The uncertainty layer an earlier run made for this image, if it is still as placed then."""
    for layer in viewer.layers:
        if (
            layer.name == name
            and layer.metadata.get(UNCERTAINTY_KEY)
            and np.shape(layer.data) == shape
            and np.allclose(layer.scale, run.placement.scale)
            and np.allclose(layer.translate, run.placement.translate)
            and np.allclose(layer.affine.affine_matrix, run.placement.affine)
        ):
            return layer
    return None
