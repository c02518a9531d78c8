"""Reading images and masks from disk: PNG, JPEG, GIF, TIFF, NIfTI and DICOM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz", ".dcm")


def file_suffix(path: Path) -> str:
    """The lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def file_stem(path: Path) -> str:
    """The name without its (possibly double) suffix."""
    suffix = file_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def read_array(path: str | Path) -> np.ndarray:
    """Read an image or mask as a numpy array (RGB stays (H, W, 3); NIfTI keeps its axes).

    Palette images (GIF, some PNG) are read as the grey levels they show; use
    :func:`read_mask` for masks, where a coloured palette means class numbers.
    """
    return _read(Path(path), palette_indices=False)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask or label map: like :func:`read_array`, except that a palette image
    whose colours are not grey (a colour-coded label map) gives its palette indices,
    which are the class numbers."""
    return _read(Path(path), palette_indices=True)


def _read(path: Path, palette_indices: bool) -> np.ndarray:
    suffix = file_suffix(path)
    if suffix == ".dcm":
        return _read_dicom_file(path)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if suffix in (".nii", ".nii.gz"):
            import nibabel

            image: Any = nibabel.load(str(path))
            return np.asarray(image.dataobj)
        from PIL import Image

        with Image.open(path) as picture:
            if picture.mode == "P":
                indices = np.asarray(picture)
                if palette_indices and not _grey_palette(picture.getpalette() or [], indices):
                    return indices
                picture = picture.convert("L")
            elif picture.mode in ("I;16", "I;16B"):
                picture = picture.convert("I")
            return np.asarray(picture)
    except FileNotFoundError:
        raise DatasetError(f"File not found: {path}") from None
    except Exception as error:  # noqa: BLE001 - every reader has its own error types
        raise DatasetError(f"Could not read {path}: {error}") from None


def _read_dicom_file(path: Path) -> np.ndarray:
    """One DICOM file as its array (modality values; RGB for colour; frames first)."""
    from .dicom import read_dicom

    return read_dicom(path)[0].image


def _grey_palette(palette: list[int], indices: np.ndarray) -> bool:
    colours = np.asarray(palette, dtype=int).reshape(-1, 3)
    used = colours[np.unique(indices)[np.unique(indices) < len(colours)]]
    return bool(np.all(used[:, 0] == used[:, 1]) and np.all(used[:, 1] == used[:, 2]))


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file: (data, 4x4 affine, voxel spacing)."""
    import nibabel

    try:
        image: Any = nibabel.load(str(path))
        data = np.asarray(image.dataobj)
    except FileNotFoundError:
        raise DatasetError(f"File not found: {path}") from None
    except Exception as error:  # noqa: BLE001 - nibabel raises several types for damaged files
        raise DatasetError(f"Could not read {path}: {error}") from None
    zooms = tuple(float(z) for z in image.header.get_zooms()[: data.ndim])
    return data, np.asarray(image.affine, dtype=float), zooms
