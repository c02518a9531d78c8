"""DICOM in napari: series as Image layers, Labels made from them saved as DICOM SEG.

Reading and writing live in the core (:mod:`medsegdiff_training.data.dicom` and
:mod:`~medsegdiff_training.data.dicom_seg`); this module only maps a series' spacing and
orientation to the layer's ``scale`` and ``affine`` and keeps the source's identifying
header in ``metadata["dicom"]``, which the segmentation's Labels layer inherits and the SEG
writer needs to reference the series.

The world is patient space in millimetres, with its axes ordered and signed so that a
volume's slice, row and column directions are the world's axes 0, 1 and 2 up to a small
rotation: an axial series is seen in (superior, posterior, left), a coronal one in
(posterior, inferior, left), a sagittal one in (left, inferior, posterior), each in its own
plane on the slider as in any DICOM viewer, and series of one plane overlay exactly. (napari
slices a layer only along axes that its transform keeps apart; a patient-space world in one
fixed order would turn coronal and sagittal series into views it cannot slice.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._export import RUN_KEY

DICOM_KEY = "dicom"  # layer.metadata[DICOM_KEY]: DicomSeries.source of the series shown


def get_dicom_reader(path: str | list[str]) -> Any:
    """npe2 reader: a function for a DICOM file or a folder holding DICOM files, else None."""
    if isinstance(path, list):
        return None
    from medsegdiff_training.data.dicom import is_dicom_path

    return read_dicom_layers if is_dicom_path(path) else None


def read_dicom_layers(path: str) -> list[tuple[np.ndarray, dict, str]]:
    """One Image layer per series (a folder with several series gives several layers)."""
    from medsegdiff_training.data.dicom import read_dicom

    layers = []
    for series in read_dicom(path):
        attributes: dict[str, Any] = {
            "name": series.name,
            "scale": series.spacing,
            "rgb": series.rgb,
            "metadata": {DICOM_KEY: series.source, "source_path": str(path)},
        }
        if series.kind == "volume":
            # scale carries the spacing; the affine the directions and the first voxel's place.
            attributes["affine"] = volume_affine(series.direction, series.origin)
        layers.append((series.image, attributes, "image"))
    return layers


def volume_affine(direction: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """The layer affine (4x4) of a volume: its patient directions (columns, (z, y, x) rows)
    and first voxel, in the world frame of its plane (see the module docstring)."""
    world_axis = [int(np.argmax(np.abs(direction[:, axis]))) for axis in range(3)]
    if sorted(world_axis) != [0, 1, 2]:  # about 45 degrees oblique: no plane dominates
        world_axis = [0, 1, 2]
    frame = np.zeros((3, 3))  # patient (z, y, x) -> world
    for axis, patient_axis in enumerate(world_axis):
        frame[axis, patient_axis] = 1.0 if direction[patient_axis, axis] >= 0 else -1.0
    affine = np.eye(4)
    affine[:3, :3] = frame @ direction
    affine[:3, 3] = frame @ origin
    return affine


def write_dicom_seg(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer: a Labels layer made from a DICOM series as a DICOM SEG beside it.

    Segment names are the classes of the model that made the labels (from the run recorded
    in ``metadata["medsegdiff"]``); labels edited since the model's prediction are marked
    semi-automatic.
    """
    from medsegdiff_training.data.dicom_seg import write_dicom_seg as write
    from medsegdiff_training.errors import DicomError

    metadata = attributes.get("metadata") or {}
    source = metadata.get(DICOM_KEY)
    if source is None:
        raise DicomError(
            f"Cannot save {attributes.get('name', 'this layer')!r} as DICOM SEG: it was not segmented from a "
            "DICOM series opened with napari-medsegdiff. Save it as .nii.gz or .tif instead."
        )
    labels = np.asarray(data)
    run = metadata.get(RUN_KEY) or {}
    version = str(run.get("model_version", ""))
    names = _class_names_of(version)
    prediction = run.get("prediction")
    edited = prediction is not None and not np.array_equal(np.asarray(prediction), labels)
    from . import __version__

    written = write(
        path, labels, source, names, model_version=version, edited=edited, software_version=__version__
    )
    return [str(written)]


def _class_names_of(version: str) -> list[str]:
    """The model's class names, from its registry entry (the SEG writer names the rest)."""
    if not version:
        return []
    from medsegdiff_training.data.dicom_seg import class_names
    from medsegdiff_training.errors import MedSegDiffError
    from medsegdiff_training.registry import ModelRegistry

    try:
        entry = ModelRegistry().get(version)
    except MedSegDiffError:
        return []
    return class_names(Path(entry.path), int(entry.model.get("num_classes", 2)))
