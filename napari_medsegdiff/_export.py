"""Exporting a corrected Labels layer to the corrections store (the training package writes it).

No Qt here: this module picks the layers, checks them, and hands arrays and the manifest
fields to :meth:`medsegdiff_training.corrections.CorrectionsStore.add`.

A volume is exported whole, not only its corrected slices: the entry then reopens exactly
as the annotator saw it (same shape, scale and affine, so a slice index in the manifest or
in a later review means the same slice), and the store already trains only on the slices
that hold labels. Exporting slices would make every entry a different, partial image.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsegdiff_training.errors import InvalidMaskError  # no torch: errors.py imports nothing

if TYPE_CHECKING:
    import napari.layers

    from medsegdiff_training.corrections import CorrectionEntry, CorrectionsStore

RUN_KEY = "medsegdiff"  # labels_layer.metadata[RUN_KEY]: what the segmentation run recorded


class ExportError(InvalidMaskError):
    """The layers cannot be exported as they are; the message says what to do."""


def corrections_store(root: str | Path | None = None) -> CorrectionsStore:
    """The store at ``root`` (None: the default in the user's data folder); imports torch."""
    from medsegdiff_training.corrections import CorrectionsStore

    return CorrectionsStore(root)


def run_record(labels_layer: napari.layers.Labels) -> dict[str, Any]:
    """What the segmentation widget recorded on a Labels layer it made (empty if none)."""
    record = labels_layer.metadata.get(RUN_KEY)
    return dict(record) if isinstance(record, dict) else {}


def pair_for_export(
    layers: Iterable[Any], selected: Any, chosen_image: Any
) -> tuple[napari.layers.Image, napari.layers.Labels]:
    """The image layer and Labels layer that "Export correction" takes.

    The Labels layer is the selected one; without a selected Labels layer, the newest one
    the model made for ``chosen_image``. The image is the one that Labels layer was made
    from (its run record names it), else ``chosen_image`` (the segmentation widget's image),
    so a correction is never paired with a different image of the same shape.
    """
    from napari.layers import Image, Labels

    layers = list(layers)
    images = {layer.name: layer for layer in layers if isinstance(layer, Image)}
    labels_layer = selected if isinstance(selected, Labels) else None
    if labels_layer is None and chosen_image is not None:
        made_for_image = [
            layer
            for layer in layers
            if isinstance(layer, Labels) and run_record(layer).get("image_layer") == chosen_image.name
        ]
        labels_layer = made_for_image[-1] if made_for_image else None
    if labels_layer is None:
        raise ExportError(
            "There is no Labels layer to export: select the corrected Labels layer in the layer list "
            "(or segment the image first)."
        )
    image_layer = images.get(str(run_record(labels_layer).get("image_layer")), chosen_image)
    if image_layer is None:
        raise ExportError(
            f"There is no image layer to export with '{labels_layer.name}': choose its image in the "
            "widget's Image layer list."
        )
    return image_layer, labels_layer


def _image_for(image_layer: napari.layers.Image, labels_layer: napari.layers.Labels) -> np.ndarray:
    """The image array the labels cover pixel for pixel; ExportError when they do not."""
    if image_layer.multiscale:
        raise ExportError(
            f"'{image_layer.name}' is a multiscale (pyramid) image; export works on single-scale images. "
            "Open the full-resolution image as its own layer and export with that."
        )
    image = np.asarray(image_layer.data)
    labels_shape = tuple(np.shape(labels_layer.data))
    spatial = image.shape[:-1] if image_layer.rgb else image.shape
    if labels_shape == tuple(spatial):
        return image
    if image.ndim == 3 and not image_layer.rgb and labels_shape == image.shape[1:] and image.shape[0] <= 4:
        return image  # a 2D image with its channels on axis 0: the store keeps it so
    raise ExportError(
        f"The labels layer '{labels_layer.name}' has shape {labels_shape} but the image "
        f"'{image_layer.name}' has {tuple(spatial)}: select the Labels layer made for this image "
        "(or choose the matching image in the widget)."
    )


def check_export(image_layer: napari.layers.Image, labels_layer: napari.layers.Labels) -> bool:
    """Raise ExportError if the pair cannot be exported; return whether the labels are empty."""
    _image_for(image_layer, labels_layer)
    return not np.asarray(labels_layer.data).any()


def export_correction(
    store: CorrectionsStore,
    image_layer: napari.layers.Image,
    labels_layer: napari.layers.Labels,
    *,
    allow_empty: bool = False,
    extra: dict[str, Any] | None = None,
) -> CorrectionEntry:
    """Append the image, the corrected labels and the model's first prediction as one entry.

    The manifest line gets the image's source file (when it was opened from one), both
    layer names, the Labels layer's scale, translate and affine, and the model version
    and sampler settings of the run that made the labels; the store computes the fraction
    of pixels changed. A volume is exported whole (see the module docstring). ``extra``
    goes into the manifest line as it is (the queue widget's provenance).
    """
    run = run_record(labels_layer)
    image = _image_for(image_layer, labels_layer)
    labels = np.asarray(labels_layer.data)
    prediction = run.get("prediction")
    if prediction is not None and np.shape(prediction) != labels.shape:
        prediction = None  # the layer's data was replaced by something else: no fair comparison
    source = getattr(getattr(image_layer, "source", None), "path", None)
    prompts = {}
    if run.get("boxes"):  # a prompted run: the boxes and the crop rule go with the correction
        keys = ("prompts", "boxes", "crop_rule", "labels")  # labels: "objects" (ids 1..n) or "classes"
        prompts = {"prompts": {key: run[key] for key in keys if key in run}}
    return store.add(
        image,
        labels,
        prediction,
        source_path=str(source) if source else None,
        image_layer=image_layer.name,
        labels_layer=labels_layer.name,
        scale=[float(s) for s in labels_layer.scale],
        translate=[float(t) for t in labels_layer.translate],
        affine=np.asarray(labels_layer.affine.affine_matrix).tolist(),
        model_version=run.get("model_version"),
        sampler_settings=run.get("sampler_settings"),
        allow_empty=allow_empty,
        extra={**prompts, **(extra or {})} or None,
    )
