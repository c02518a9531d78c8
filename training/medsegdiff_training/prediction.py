"""Segmenting image files into label-map files, as ``medsegdiff predict`` does.

2D images (PNG, JPEG, GIF, TIFF, NIfTI) give a 2D label map. Volumes are segmented slice
by slice, cut by the one reading rule of :mod:`.data.slices` (NIfTI along its last axis,
TIFF stacks along their first); the label volume has the input's shape, and a NIfTI output
keeps the input's affine and voxel sizes. A DICOM file or folder (one input per folder;
several series in it give one output each, ``<stem>``, ``<stem>_2``...) is read by
:func:`~medsegdiff_training.data.dicom.read_dicom` and segmented along its first axis
(slices in position order, or frames); its labels become a DICOM SEG referencing the series
(or TIFF for a cine loop, which a SEG cannot reference frame by frame). Several slices or
images share one sampler run (``batch_size``) for speed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .data.dicom import is_dicom_path
from .data.io import IMAGE_SUFFIXES, file_stem, file_suffix
from .data.slices import Volume, read_slices
from .data.writers import LABEL_FORMATS, write_label_map
from .errors import DatasetError
from .inference import SamplingSettings, Segmenter


def list_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files given directly, plus the image files inside given folders (sorted); a folder of
    DICOM files (no other images in it) is one input, a series or several."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if (
            item.is_dir()
            and is_dicom_path(item)
            and not any(file_suffix(p) in IMAGE_SUFFIXES and file_suffix(p) != ".dcm" for p in item.iterdir())
        ):
            found.append(item)
        elif item.is_dir():
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


def read_volumes(path: Path) -> list[Volume]:
    """Read an input and cut it into the 2D slices the model segments: one Volume per
    DICOM series, one for any other file."""
    if path.is_dir() or file_suffix(path) == ".dcm":
        from .data.dicom import read_dicom

        return [
            Volume(
                path,
                [series.image] if series.kind == "image" else list(series.image),
                None if series.kind == "image" else 0,
                dicom_source=series.source,
            )
            for series in read_dicom(path)
        ]
    return [read_volume(path)]


def read_volume(path: Path) -> Volume:
    """Read an input file and cut it into the 2D slices the model segments (the one rule)."""
    return read_slices(path)


# The label format each input gets unless --format says otherwise ("dir": a DICOM folder).
_AUTO_FORMATS = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    "dir": "dicom",
}


def output_path(source: Path, out_dir: Path, label_format: str) -> Path:
    """``out_dir/<same stem>.<format>``: the output folder works as a masks folder."""
    if label_format == "auto":
        suffix = "dir" if source.is_dir() else file_suffix(source)
        label_format = _AUTO_FORMATS.get(suffix, "png")
    stem = source.name if source.is_dir() else file_stem(source)
    return out_dir / (stem + LABEL_FORMATS[label_format])


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
    for index, (path, first_target) in enumerate(zip(files, targets, strict=True)):
        if cancel is not None and cancel():
            break
        for number, volume in enumerate(read_volumes(path), start=1):
            target = first_target
            if number > 1:  # further series of a DICOM folder
                target = first_target.with_name(
                    f"{file_stem(first_target)}_{number}{file_suffix(first_target)}"
                )
                if target.exists() and not overwrite:
                    raise DatasetError(f"{target} exists already; use --overwrite or another --out.")
            labels, spread = _segment_slices(segmenter, volume.slices, settings, batch_size)
            if volume.slice_axis is None:
                label_map, spread_map = labels[0], None if spread is None else spread[0]
            else:
                label_map = np.stack(labels, axis=volume.slice_axis)
                spread_map = None if spread is None else np.stack(spread, axis=volume.slice_axis)
            written.append(_write_labels(target, label_map, volume, segmenter))
            if uncertainty and spread_map is not None:
                import tifffile

                tifffile.imwrite(
                    out_dir / f"{file_stem(written[-1])}_uncertainty.tif",
                    spread_map.astype(np.float32),
                    photometric="minisblack",
                )
        if progress is not None:
            progress(index + 1, len(files))
    return written


def _write_labels(target: Path, label_map: np.ndarray, volume: Volume, segmenter: Segmenter) -> Path:
    if file_suffix(target) != ".dcm":
        return write_label_map(target, label_map, affine=volume.affine, header=volume.header)
    from .data.dicom_seg import class_names, write_dicom_seg

    if volume.dicom_source is None:
        raise DatasetError(f"{volume.source} is not DICOM: a DICOM SEG needs a DICOM source series.")
    if label_map.ndim > 2 and "00200052" not in volume.dicom_source["header"]:  # no frame of reference
        return write_label_map(target.with_suffix(".tif"), label_map)
    checkpoint = segmenter.checkpoint
    names = class_names(checkpoint.path, segmenter.config.num_classes)
    version = checkpoint.version or (checkpoint.path.name if checkpoint.path else "")
    return write_dicom_seg(target, label_map, volume.dicom_source, names, model_version=version)


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
