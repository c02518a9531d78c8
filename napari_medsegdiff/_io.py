"""Reading NIfTI and TIFF into napari, and writing Labels back.

NIfTI voxel spacing becomes the layer scale and the 4x4 affine goes into the layer's
metadata (``metadata["nifti_affine"]``), so a Labels layer written back gets the same
affine and lines up with the scan in any other viewer: the widget's Labels layers carry it
in their own metadata, and a Labels layer drawn by hand takes it from the NIfTI image it
lies on in the viewer (same shape, overlapping in the world).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _is_nifti(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader: a function for .nii/.nii.gz/.tif/.tiff files, else None."""
    if isinstance(path, list):
        return None
    lower = path.lower()
    if _is_nifti(path) or lower.endswith((".tif", ".tiff")):
        return read
    return None


def read(path: str) -> list[tuple[np.ndarray, dict, str]]:
    """Read through the training core's readers, so the plugin reads a file as the CLI does
    (the same pixel limit, the same errors, the same slice axes)."""
    from medsegdiff_training.data.io import read_array, read_nifti

    if _is_nifti(path):
        data, affine, spacing = read_nifti(path)
        zooms = list(spacing)
        # napari shows axis 0 as the slider; NIfTI stores (x, y, z[, t]): reverse the axes,
        # so that z (or t) comes first and a slice is (y, x).
        data, zooms = data.T, zooms[::-1]
        metadata = {"nifti_affine": affine.tolist(), "source_path": path}
        return [
            (data, {"name": Path(path).name.split(".")[0], "scale": zooms, "metadata": metadata}, "image")
        ]
    data = read_array(path)
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    return [(data, {"name": Path(path).stem, "rgb": rgb}, "image")]


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer for Labels: NIfTI (with the source's affine when known) or TIFF."""
    labels = np.asarray(data)
    if _is_nifti(path):
        import nibabel

        affine = attributes.get("metadata", {}).get("nifti_affine")
        if affine is None:
            affine = scan_affine_under(labels.shape, attributes)
        if affine is None:  # labels not made from a NIfTI scan: the layer's scale and translation
            spatial = min(labels.ndim, 3)
            scale = list(attributes.get("scale", [1.0] * labels.ndim))[::-1][:spatial]
            translate = list(attributes.get("translate", [0.0] * labels.ndim))[::-1][:spatial]
            affine = np.eye(4)
            affine[:spatial, :spatial] = np.diag(scale)
            affine[:spatial, 3] = translate
        array = labels.T  # back to NIfTI's (x, y, z[, t])
        nibabel.save(nibabel.Nifti1Image(array.astype(np.uint16), np.asarray(affine, dtype=float)), path)
        return [path]
    import tifffile

    tifffile.imwrite(path, labels, compression="zlib")
    return [path]


def _grid_box(shape: tuple[int, ...], scale: np.ndarray, translate: np.ndarray) -> np.ndarray:
    """World corners (min, max) of the pixel centres of a layer placed by scale and translation."""
    ends = np.stack([translate, translate + scale * (np.asarray(shape) - 1)])
    return np.sort(ends, axis=0)


def scan_affine_under(shape: tuple[int, ...], attributes: dict) -> list | None:
    """The NIfTI affine of the image a Labels layer of ``shape`` lies on in the current viewer.

    Candidates are the viewer's image layers read from NIfTI (``metadata["nifti_affine"]``)
    with the labels' shape whose extent overlaps the labels' in the world; the one placed
    most like the labels wins (the topmost on a tie). None without a viewer or a candidate.
    """
    try:
        import napari
        from napari.layers import Image
    except ImportError:  # written outside napari
        return None
    viewer = napari.current_viewer()
    if viewer is None:
        return None
    ndim = len(shape)
    scale = np.asarray(attributes.get("scale", [1.0] * ndim), dtype=float)
    translate = np.asarray(attributes.get("translate", [0.0] * ndim), dtype=float)
    box = _grid_box(shape, scale, translate)
    found = []
    for order, layer in enumerate(reversed(list(viewer.layers))):  # topmost first
        affine = layer.metadata.get("nifti_affine") if isinstance(layer, Image) else None
        if affine is None or tuple(np.shape(layer.data)) != tuple(shape) or layer.ndim != ndim:
            continue
        layer_scale, layer_translate = np.asarray(layer.scale), np.asarray(layer.translate)
        other = _grid_box(shape, layer_scale, layer_translate)
        tolerance = 1e-6 * (1 + np.abs(box).max() + np.abs(other).max())
        if np.all(box[0] <= other[1] + tolerance) and np.all(other[0] <= box[1] + tolerance):
            distance = np.abs(layer_scale - scale).sum() + np.abs(layer_translate - translate).sum()
            found.append((distance, order, affine))
    return min(found, key=lambda candidate: candidate[:2])[2] if found else None
