"""The one reading rule: how a file on disk becomes the 2D slices a model segments.

``predict``, ``evaluate``, ``train``, fine-tuning's original data and the napari plugin's
reader all go through :func:`read_slices` (the plugin through the same readers), so one
file is read one way everywhere:

- a 2D file is one image;
- a 3D array whose last axis has 3 or 4 entries is one RGB(A) image (any format);
- another 3D TIFF is a stack of slices along its first axis (napari's convention);
- a 3D NIfTI is a stack of slices along its last axis (NIfTI's slice axis, z);
- anything else is refused with the shape it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, InvalidImageError, InvalidMaskError
from .io import file_suffix, load_nifti, read_array, read_mask

# NIfTI volumes are cut into 2D slices along their last axis (the usual slice axis, z).
NIFTI_SLICE_AXIS = -1


@dataclass
class Volume:
    """A file as a list of 2D slices, and how to put per-slice results back together."""

    source: Path
    slices: list[np.ndarray]
    slice_axis: int | None  # None: a single 2D image
    affine: np.ndarray | None = None
    header: object | None = None
    dicom_source: dict[str, Any] | None = None  # DicomSeries.source, for a DICOM SEG

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the array the slices came from."""
        if self.slice_axis is None:
            return tuple(self.slices[0].shape)
        stacked = list(self.slices[0].shape)
        stacked.insert(self.slice_axis, len(self.slices))
        return tuple(stacked)


def read_slices(path: str | Path, mask: bool = False) -> Volume:
    """Read an image (or, with ``mask``, a label map) and cut it into 2D slices by the rule above.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> path = tempfile.mkdtemp() + "/stack.tif"
    >>> tifffile.imwrite(path, np.zeros((5, 40, 30), np.uint8))
    >>> volume = read_slices(path)
    >>> len(volume.slices), volume.slices[0].shape, volume.slice_axis
    (5, (40, 30), 0)
    """
    path = Path(path)
    error_type = InvalidMaskError if mask else InvalidImageError
    if file_suffix(path) in (".nii", ".nii.gz"):
        try:
            data, image = load_nifti(path)
        except FileNotFoundError:
            raise DatasetError(f"File not found: {path}") from None
        except DatasetError:
            raise
        except Exception as error:  # noqa: BLE001 - nibabel raises several types for damaged files
            raise DatasetError(f"Could not read {path}: {str(error) or type(error).__name__}") from None
        while data.ndim > 3 and data.shape[-1] == 1:  # (x, y, z, 1): a volume with one time point
            data = data[..., 0]
        if data.ndim == 2:
            return Volume(path, [data], None, image.affine, image.header)
        if data.ndim != 3:
            raise error_type(f"{path} has shape {data.shape}; only 2D images and 3D volumes are read.")
        axis = NIFTI_SLICE_AXIS % 3
        slices = [np.take(data, z, axis=axis) for z in range(data.shape[axis])]
        return Volume(path, slices, axis, image.affine, image.header)
    data = read_mask(path) if mask else read_array(path)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4)):
        return Volume(path, [data], None)
    if data.ndim == 3 and file_suffix(path) in (".tif", ".tiff"):
        return Volume(path, list(data), 0)
    raise error_type(
        f"{path} has shape {data.shape}; expected a 2D image, an RGB(A) image or (TIFF, NIfTI) a volume."
    )


def read_pair_slices(image_path: str | Path, mask_path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """An image and its mask as matching 2D (image, mask) slices; a mask of another shape is refused."""
    image, mask = read_slices(image_path), read_slices(mask_path, mask=True)
    # compare planes only: RGB(A) images, and RGB masks (whose first channel counts), keep channels last
    if len(image.slices) != len(mask.slices) or any(
        a.shape[:2] != b.shape[:2] for a, b in zip(image.slices, mask.slices, strict=True)
    ):
        raise InvalidMaskError(
            f"The mask {mask_path} has shape {mask.shape} but its image {image_path} has {image.shape}: "
            "a mask must cover its image pixel for pixel."
        )
    return list(zip(image.slices, mask.slices, strict=True))
