"""Reading images and masks from disk: PNG, JPEG, GIF, TIFF and NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")


def file_suffix(path: Path) -> str:
    """The lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def file_stem(path: Path) -> str:
    """The name without its (possibly double) suffix."""
    suffix = file_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def read_array(path: str | Path) -> np.ndarray:
    """Read an image or mask as a numpy array (RGB stays (H, W, 3); NIfTI keeps its axes)."""
    path = Path(path)
    suffix = file_suffix(path)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if suffix in (".nii", ".nii.gz"):
            import nibabel

            return np.asarray(nibabel.load(str(path)).dataobj)
        from PIL import Image

        with Image.open(path) as picture:
            if picture.mode == "P":  # palette (GIF masks): keep the indices' meaning as gray
                picture = picture.convert("L")
            elif picture.mode in ("I;16", "I;16B"):
                picture = picture.convert("I")
            return np.asarray(picture)
    except FileNotFoundError:
        raise DatasetError(f"File not found: {path}") from None
    except Exception as error:  # every reader has its own error types
        raise DatasetError(f"Could not read {path}: {error}") from None


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file: (data, 4x4 affine, voxel spacing)."""
    import nibabel

    image = nibabel.load(str(path))
    zooms = tuple(float(z) for z in image.header.get_zooms()[: image.ndim])
    return np.asarray(image.dataobj), np.asarray(image.affine, dtype=float), zooms
