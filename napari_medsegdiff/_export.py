"""Exporting a corrected Labels layer to the corrections store (the training package writes it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari.layers

    from medsegdiff_training.corrections import CorrectionEntry, CorrectionsStore

RUN_KEY = "medsegdiff"  # labels_layer.metadata[RUN_KEY]: what the segmentation run recorded


class ExportError(ValueError):
    """The layers cannot be exported as they are; the message says what to do."""


def corrections_store(root: str | Path | None = None) -> CorrectionsStore:
    from medsegdiff_training.corrections import CorrectionsStore

    return CorrectionsStore(root)


def export_correction(
    store: CorrectionsStore,
    image_layer: napari.layers.Image,
    labels_layer: napari.layers.Labels,
    *,
    allow_empty: bool = False,
) -> CorrectionEntry:
    """Append the image, the corrected labels and the model's first prediction as one entry.

    A volume is exported whole (the store keeps only its labelled slices for training), so
    the entry can be reopened exactly as the annotator saw it.
    """
    run: dict[str, Any] = dict(labels_layer.metadata.get(RUN_KEY, {}))
    image = np.asarray(image_layer.data)
    labels = np.asarray(labels_layer.data)
    spatial = image.shape[:-1] if image_layer.rgb else image.shape
    if labels.shape != tuple(spatial) and labels.shape != tuple(spatial[-2:]):
        raise ExportError(
            f"The labels layer '{labels_layer.name}' has shape {labels.shape} but the image "
            f"'{image_layer.name}' has {tuple(spatial)}: pick the labels made for this image."
        )
    if labels.shape != tuple(spatial):  # a 2D+channel stack: the labels cover one 2D image
        image = np.moveaxis(image, 0, -1)
    source = getattr(getattr(image_layer, "source", None), "path", None)
    return store.add(
        image,
        labels,
        run.get("prediction"),
        source_path=str(source) if source else None,
        image_layer=image_layer.name,
        labels_layer=labels_layer.name,
        scale=[float(s) for s in labels_layer.scale],
        translate=[float(t) for t in labels_layer.translate],
        affine=np.asarray(labels_layer.affine.affine_matrix).tolist(),
        model_version=run.get("model_version"),
        sampler_settings=run.get("sampler_settings"),
        allow_empty=allow_empty,
    )
