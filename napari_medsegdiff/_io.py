"""Reading NIfTI and TIFF into napari, and writing Labels back.

NIfTI voxel spacing becomes the layer scale and the 4x4 affine goes into the layer's
metadata (``metadata["nifti_affine"]``), so a Labels layer written back gets the same
affine and lines up with the scan in any other viewer.
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
