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
    if _is_nifti(path):
        import nibabel

        image = nibabel.load(path)
        data = np.asarray(image.dataobj)
        zooms = [float(z) for z in image.header.get_zooms()[: data.ndim]]
        # napari shows axis 0 as the slider; NIfTI stores (x, y, z): put z first.
        if data.ndim == 3:
            data, zooms = np.transpose(data, (2, 1, 0)), zooms[::-1]
        elif data.ndim == 2:
            data, zooms = data.T, zooms[::-1]
        metadata = {"nifti_affine": np.asarray(image.affine).tolist(), "source_path": path}
        return [
            (data, {"name": Path(path).name.split(".")[0], "scale": zooms, "metadata": metadata}, "image")
        ]
    import tifffile

    data = tifffile.imread(path)
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    return [(data, {"name": Path(path).stem, "rgb": rgb}, "image")]


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer for Labels: NIfTI (with the source's affine when known) or TIFF."""
    labels = np.asarray(data)
    if _is_nifti(path):
        import nibabel

        affine = attributes.get("metadata", {}).get("nifti_affine")
        if affine is None:
            scale = list(attributes.get("scale", [1.0] * labels.ndim))[::-1]
            affine = np.diag([*scale, *[1.0] * (4 - len(scale))])
        array = np.transpose(labels, (2, 1, 0)) if labels.ndim == 3 else labels.T
        nibabel.save(nibabel.Nifti1Image(array.astype(np.uint16), np.asarray(affine, dtype=float)), path)
        return [path]
    import tifffile

    tifffile.imwrite(path, labels, compression="zlib")
    return [path]
