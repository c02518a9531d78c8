"""Segmenting image files into label-map files, as ``medsegdiff predict`` does.

2D images (PNG, JPEG, GIF, TIFF, NIfTI) give a 2D label map. Volumes are segmented slice
by slice: NIfTI along its last axis (the slice axis, as in training), TIFF stacks along
their first axis (napari's convention); the label volume has the input's shape, and a
NIfTI output keeps the input's affine and voxel sizes. Several slices or images share one
sampler run (``batch_size``) for speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.dataset import NIFTI_SLICE_AXIS
from .data.io import IMAGE_SUFFIXES, file_stem, file_suffix, read_array
from .data.writers import LABEL_FORMATS, write_label_map
from .errors import DatasetError, InvalidImageError
from .inference import SamplingSettings, Segmenter


@dataclass
class Volume:
    """An input file as a list of 2D slices, and how to put the labels back together."""

    source: Path
    slices: list[np.ndarray]
    slice_axis: int | None  # None: a single 2D image
    affine: np.ndarray | None = None
    header: object | None = None


def list_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files given directly, plus the image files inside given folders (sorted)."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(
                p
                for p in sorted(item.iterdir())
                if p.is_file() and not p.name.startswith(".") and file_suffix(p) in IMAGE_SUFFIXES
            )
        elif item.is_file():
            found.append(item)
        else:
            raise DatasetError(f"The input {item} does not exist.")
    if not found:
        raise DatasetError("No image files to segment in " + ", ".join(map(str, inputs)) + ".")
    return found


def read_volume(path: Path) -> Volume:
    """Read an input file and cut it into the 2D slices the model segments."""
    suffix = file_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        import nibabel

        try:
            image: Any = nibabel.load(str(path))
            data = np.asarray(image.dataobj)
        except Exception as error:  # nibabel raises several types for damaged files
            raise DatasetError(f"Could not read {path}: {error}") from None
        if data.ndim == 2:
            return Volume(path, [data], None, image.affine, image.header)
        if data.ndim != 3:
            raise InvalidImageError(
                f"{path} has {data.ndim} dimensions; only 2D images and 3D volumes are segmented."
            )
        axis = NIFTI_SLICE_AXIS % 3
        return Volume(
            path,
            [np.take(data, z, axis=axis) for z in range(data.shape[axis])],
            axis,
            image.affine,
            image.header,
        )
    data = read_array(path)
    if data.ndim == 3 and suffix in (".tif", ".tiff") and data.shape[-1] not in (3, 4):
        return Volume(path, list(data), 0)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4)):
        return Volume(path, [data], None)
    raise InvalidImageError(f"{path} has shape {data.shape}; expected a 2D image, RGB(A) or a volume.")


def output_path(source: Path, out_dir: Path, label_format: str) -> Path:
    """``out_dir/<same stem>.<format>``: the output folder works as a masks folder."""
    if label_format == "auto":
        suffix = file_suffix(source)
        label_format = (
            "nifti" if suffix in (".nii", ".nii.gz") else "tiff" if suffix in (".tif", ".tiff") else "png"
        )
    return out_dir / (file_stem(source) + LABEL_FORMATS[label_format])


def predict_files(
    segmenter: Segmenter,
    files: Sequence[Path],
    out_dir: Path,
    settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, never mutated
    *,
    label_format: str = "auto",
    batch_size: int = 8,
    overwrite: bool = False,
    uncertainty: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[Path]:
    """Segment every file into ``out_dir``; returns the label files written.

    Refuses (before any work) to overwrite an existing output unless ``overwrite``.
    ``uncertainty`` also writes ``<stem>_uncertainty.tif`` (ensembles of 2 or more).
    """
    targets = [output_path(path, out_dir, label_format) for path in files]
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise DatasetError(
                f"{existing[0]} exists already ({len(existing)} outputs do); "
                "use --overwrite or another --out."
            )
    written = []
    for index, (path, target) in enumerate(zip(files, targets, strict=True)):
        if cancel is not None and cancel():
            break
        volume = read_volume(path)
        labels, spread = _segment_slices(segmenter, volume.slices, settings, batch_size)
        if volume.slice_axis is None:
            label_map, spread_map = labels[0], None if spread is None else spread[0]
        else:
            label_map = np.stack(labels, axis=volume.slice_axis)
            spread_map = None if spread is None else np.stack(spread, axis=volume.slice_axis)
        written.append(write_label_map(target, label_map, affine=volume.affine, header=volume.header))
        if uncertainty and spread_map is not None:
            import tifffile

            tifffile.imwrite(
                out_dir / f"{file_stem(path)}_uncertainty.tif",
                spread_map.astype(np.float32),
                photometric="minisblack",
            )
        if progress is not None:
            progress(index + 1, len(files))
    return written


def _segment_slices(
    segmenter: Segmenter, slices: list[np.ndarray], settings: SamplingSettings, batch_size: int
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    labels: list[np.ndarray] = []
    spread: list[np.ndarray] = []
    for start in range(0, len(slices), max(batch_size, 1)):
        batch = slices[start : start + batch_size]
        for result in segmenter.segment_batch(batch, settings, [image.shape[:2] for image in batch]):
            labels.append(result.labels)
            if result.uncertainty is not None:
                spread.append(result.uncertainty)
    return labels, spread or None
