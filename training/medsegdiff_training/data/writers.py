"""Writing predicted label maps: TIFF, NIfTI (keeping the input's affine) or PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidMaskError
from .io import file_suffix

LABEL_FORMATS = {"tiff": ".tif", "nifti": ".nii.gz", "png": ".png"}


def label_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned integer type that holds every label (the one rule for label files).

    Examples
    --------
    >>> [str(label_dtype(np.array([0, top]))) for top in (1, 255, 256, 65536)]
    ['uint8', 'uint8', 'uint16', 'uint32']
    """
    top = int(labels.max()) if labels.size else 0
    return np.dtype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32)


def write_label_map(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    *,
    affine: np.ndarray | None = None,
    header: object | None = None,
    binary_as_255: bool = True,
) -> Path:
    """Write a 2D label map or a 3D stack of them; the format follows the suffix.

    - ``.tif``/``.tiff``: the labels as they are (uint8/uint16), volumes as a stack.
    - ``.nii``/``.nii.gz``: with ``affine`` (and the input's ``header``, for the voxel
      sizes) so the labels lie exactly on the image in any viewer.
    - ``.png``: 2D only; a binary map is written 0/255 (``binary_as_255``) so it is
      visible, like the DDTI masks; the readers take 0/255 back as binary.

    Examples
    --------
    >>> import tempfile
    >>> labels = np.zeros((20, 30), np.uint8); labels[5:10, 5:10] = 1
    >>> from medsegdiff_training.data.io import read_array
    >>> folder = tempfile.mkdtemp()
    >>> int(read_array(write_label_map(folder + "/a.png", labels)).max())
    255
    >>> read_array(write_label_map(folder + "/a.tif", labels)).shape
    (20, 30)
    """
    path = Path(path)
    labels = np.asarray(labels)
    suffix = file_suffix(path)
    stored = labels.astype(label_dtype(labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, stored, photometric="minisblack", compression="zlib")
    elif suffix in (".nii", ".nii.gz"):
        import nibabel

        image = nibabel.Nifti1Image(
            stored, np.eye(4) if affine is None else np.asarray(affine, float), header=header
        )
        image.set_data_dtype(stored.dtype)
        nibabel.save(image, str(path))
    elif suffix == ".png":
        from PIL import Image

        if stored.ndim != 2:
            raise InvalidMaskError(
                f"PNG holds 2D label maps only, got shape {stored.shape}; write TIFF or NIfTI."
            )
        if stored.dtype == np.uint32:
            raise InvalidMaskError(
                f"PNG holds labels up to 65535, got {int(stored.max())}; write TIFF or NIfTI."
            )
        if binary_as_255 and stored.max(initial=0) <= 1:
            stored = (stored * 255).astype(np.uint8)
        Image.fromarray(stored).save(path)
    else:
        raise InvalidMaskError(f"Cannot write label maps as {suffix!r}: use .tif, .nii.gz or .png.")
    return path
