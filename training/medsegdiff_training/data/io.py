"""Reading images and masks from disk: PNG, JPEG, GIF, TIFF, NIfTI and DICOM.

Every reader checks the pixel count a file declares before decoding it, so a small file
that declares a huge image (a decompression bomb) is refused instead of filling memory.
The limit (:mod:`.limits`) is ``DEFAULT_MAX_PIXELS`` (Pillow's own decompression-bomb limit), raised
or lowered with the environment variable ``MEDSEGDIFF_MAX_PIXELS``; it counts every
pixel of every channel-less plane, so a volume counts all its voxels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .limits import check_pixels

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


def _reason(error: BaseException) -> str:
    return " ".join((str(error) or type(error).__name__).split())[:300]


def load_nifti(path: Path) -> tuple[np.ndarray, Any]:
    """A NIfTI file's data and its nibabel image (affine, header), size-checked before decoding."""
    import nibabel

    image: Any = nibabel.load(str(path))
    check_pixels(path, tuple(image.header.get_data_shape()))
    return np.asarray(image.dataobj), image


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        if not tiff.series:
            raise DatasetError(f"Could not read {path}: it holds no image.")
        series = tiff.series[0]
        check_pixels(path, tuple(series.shape))
        return np.asarray(series.asarray())


@contextmanager
def _as_dataset_errors(path: str | Path) -> Iterator[None]:
    """Whatever a reader raises, as one :class:`DatasetError` naming ``path``."""
    try:
        yield
    except FileNotFoundError:
        raise DatasetError(f"File not found: {path}") from None
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError(f"Not enough memory to read {path}.") from None
    except Exception as error:  # noqa: BLE001 - every reader has its own error types
        raise DatasetError(f"Could not read {path}: {_reason(error)}") from None


def _read(path: Path, palette_indices: bool) -> np.ndarray:
    suffix = file_suffix(path)
    if suffix == ".dcm":
        return _read_dicom_file(path)
    with _as_dataset_errors(path):
        if suffix in (".tif", ".tiff"):
            return _read_tiff(path)
        if suffix in (".nii", ".nii.gz"):
            return load_nifti(path)[0]
        from PIL import Image

        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit, not Pillow's
        try:
            picture: Image.Image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
        with picture:
            check_pixels(path, (picture.size[1], picture.size[0]))
            if picture.mode == "P":
                indices = np.asarray(picture)
                if palette_indices and not _grey_palette(picture.getpalette() or [], indices):
                    return indices
                picture = picture.convert("L")
            elif picture.mode in ("I;16", "I;16B"):
                picture = picture.convert("I")
            return np.asarray(picture)


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
    with _as_dataset_errors(path):  # nibabel raises several types for damaged files
        data, image = load_nifti(Path(path))
        zooms = tuple(float(z) for z in image.header.get_zooms()[: data.ndim])
        affine = np.asarray(image.affine, dtype=float)
    return data, affine, zooms
