"""Reading DICOM files and folders into image series with their geometry (pydicom).

A folder may hold several series: each becomes its own :class:`DicomSeries`, never mixed.
What a series becomes depends on what it holds:

- ``"volume"``: single-frame images at different positions (CT, MR...), or an enhanced
  multi-frame file with a plane position per frame. The slices are ordered by their
  ``ImagePositionPatient`` projected on the slice normal (the cross product of the two
  ``ImageOrientationPatient`` directions), not by file order or ``InstanceNumber``.
- ``"frames"``: a multi-frame ultrasound or cine file, or images with no position or all at
  one position: frames in time order (a slider in napari).
- ``"image"``: one frame, a 2D image.

Pixel values come out as the modality values (``RescaleSlope``/``RescaleIntercept``
applied: Hounsfield units for CT), colour images as RGB (YBR and palette colour converted),
``MONOCHROME1`` inverted so that bright means high as everywhere else; colour images whose
three channels are equal (greyscale ultrasound stored as RGB, common) come out greyscale. Compressed transfer
syntaxes are decoded by pydicom's plugins (``pylibjpeg``, ``pylibjpeg-libjpeg``,
``pylibjpeg-openjpeg``, ``pylibjpeg-rle``: the ``dicom`` extra); a syntax no installed
plugin decodes is refused with a :class:`DicomError` naming it.

Geometry is given in the napari order of the array axes: ``spacing`` per axis (mm), and for
volumes a ``direction`` matrix and ``origin`` in patient coordinates written (z, y, x), the
reverse of DICOM's (x, y, z) like the array axes, so an axial series needs no rotation.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, DicomError
from .limits import check_pixels

DICOM_SUFFIXES = (".dcm", ".dicom")
# Stored Segmentations, structured reports, presentation states... are not images to show.
_NOT_IMAGES = ("SEG", "SR", "PR", "RTSTRUCT", "KO", "REG")
_POSITION_DECIMALS = 3  # positions closer than 1 micrometre are the same position


def is_dicom_path(path: str | Path) -> bool:
    """True for a ``.dcm``/``.dicom`` file, a file with the DICOM preamble, or a folder
    holding one of those (among its first 256 entries, subfolders included)."""
    path = Path(path)
    if path.is_dir():
        entries = itertools.islice(path.rglob("*"), 256)
        return any(_looks_like_dicom(entry) for entry in entries if entry.is_file())
    return _looks_like_dicom(path)


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


@dataclass
class DicomSeries:
    """One series (or one multi-frame file) as an array with its geometry.

    ``image`` is (Z, Y, X) for a volume, (T, Y, X) for frames, (Y, X) for an image, with a
    last axis of 3 when ``rgb``. ``spacing`` has one value per non-colour axis (mm; 1 on
    the time axis of frames). ``direction`` (columns: the unit patient direction of each
    axis, in (z, y, x) order) and ``origin`` (the first voxel's centre) place a volume in
    patient space; for frames and images they are the identity and zero. ``source`` holds
    what a DICOM SEG needs to reference the series (see :func:`source_datasets`).

    Examples
    --------
    >>> series = read_dicom("ct_folder")  # doctest: +SKIP
    >>> series[0].kind, series[0].image.shape, series[0].spacing  # doctest: +SKIP
    ('volume', (40, 512, 512), (2.5, 0.7, 0.7))
    """

    image: np.ndarray
    kind: str
    spacing: tuple[float, ...]
    direction: np.ndarray
    origin: np.ndarray
    rgb: bool
    name: str
    source: dict[str, Any] = field(repr=False)

    @property
    def affine(self) -> np.ndarray:
        """The homogeneous matrix from array index to patient mm, in (z, y, x) order."""
        ndim = len(self.spacing)
        matrix = np.eye(ndim + 1)
        matrix[:ndim, :ndim] = self.direction * np.asarray(self.spacing)[None, :]
        matrix[:ndim, ndim] = self.origin
        return matrix


def read_dicom(path: str | Path) -> list[DicomSeries]:
    """Read a DICOM file, or every DICOM file in a folder (and its subfolders), as series.

    Raises :class:`DicomError` when there is no DICOM image, when pixel data cannot be
    decoded (naming the transfer syntax), or when a series has several images at one
    position (a 4D series this reader does not split).
    """
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise DicomError(
            f"Reading DICOM ({path}) needs pydicom: pip install 'medsegdiff-training[dicom]'."
        ) from None

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise DicomError(f"{path} does not exist.")
    datasets = []
    for file in files:
        try:
            dataset = pydicom.dcmread(file)
        except (InvalidDicomError, EOFError, OSError, ValueError) as error:
            if path.is_file():
                raise DicomError(f"{file} is not a readable DICOM file ({error}).") from None
            continue  # a folder may hold DICOMDIR, notes, thumbnails...
        if "PixelData" in dataset and str(dataset.get("Modality", "")) not in _NOT_IMAGES:
            dataset.filename = str(file)
            datasets.append(dataset)
    if not datasets:
        raise DicomError(f"No DICOM images in {path}.")
    return [_series_of(group) for group in _group(datasets)]


def _group(datasets: list[Any]) -> list[list[Any]]:
    """One group per series and image geometry; a multi-frame file is a group of its own."""
    groups: dict[tuple, list[Any]] = {}
    for dataset in datasets:
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            key: tuple = ("file", dataset.filename)
        else:
            orientation = _orientation(dataset)
            key = (
                str(dataset.get("SeriesInstanceUID", "")),
                int(dataset.Rows),
                int(dataset.Columns),
                int(dataset.get("SamplesPerPixel", 1)),
                None if orientation is None else tuple(np.round(orientation, 4).ravel().tolist()),
            )
        groups.setdefault(key, []).append(dataset)
    return list(groups.values())


def _series_of(datasets: list[Any]) -> DicomSeries:
    first = datasets[0]
    if len(datasets) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1:
        return _multiframe(first)
    if len(datasets) == 1:
        image = _pixels(first)
        return _make(image, "image", _pixel_spacing(first), first, [first], np.eye(2), np.zeros(2))
    positions = [_position(d) for d in datasets]
    orientation = _orientation(first)
    lacking = [d for d, p in zip(datasets, positions, strict=True) if p is None]
    if orientation is not None and 0 < len(lacking) < len(datasets):  # said now, not after segmenting
        raise DicomError(
            f"Series {_name(first)}: {len(lacking)} of its {len(datasets)} images have no "
            f"ImagePositionPatient (e.g. {lacking[0].filename}), so its slices cannot be put in order "
            "as a volume; fix those headers or remove those files."
        )
    if orientation is None or lacking:
        return _frames(sorted(datasets, key=_instance_order))
    normal = np.cross(orientation[0], orientation[1])
    along = np.array([float(np.dot(np.asarray(p), normal)) for p in positions])
    distinct = np.unique(np.round(along, _POSITION_DECIMALS))
    if len(distinct) == 1:  # one position, several times (cine as single frames)
        return _frames(sorted(datasets, key=_instance_order))
    if len(distinct) < len(datasets):
        raise DicomError(
            f"Series {_name(first)} has {len(datasets)} images at {len(distinct)} positions "
            "(several images per position: a time series or multi-echo set); "
            "put each phase in its own folder to open it as a volume."
        )
    order = np.argsort(along)
    ordered = [datasets[i] for i in order]
    volume = np.stack([_pixels(d) for d in ordered])
    return _volume(volume, ordered, [positions[i] for i in order], orientation, _pixel_spacing(first))


def _volume(
    volume: np.ndarray,
    datasets: list[Any],
    positions: list[Any],
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    frame_order: list[int] | None = None,
) -> DicomSeries:
    """A volume from slices already in order: the slice step is the mean step between
    first and last slice, so a gantry tilt becomes a (sheared) direction, not an error."""
    start, end = np.asarray(positions[0]), np.asarray(positions[-1])
    step = (end - start) / (len(positions) - 1)
    slice_spacing = float(np.linalg.norm(step))
    gaps = np.linalg.norm(np.diff(np.asarray(positions), axis=0), axis=1)
    # Columns: slice step, column direction (down the rows), row direction (along a row).
    direction_xyz = np.stack([step / slice_spacing, orientation[1], orientation[0]], axis=1)
    direction = direction_xyz[::-1]  # rows in (z, y, x) order
    series = _make(
        volume,
        "volume",
        (slice_spacing, *pixel_spacing),
        datasets[0],
        datasets,
        direction,
        start[::-1].copy(),
        positions=positions,
        frame_order=frame_order,
    )
    series.source["slice_gaps_mm"] = [round(float(g), 4) for g in gaps]
    return series


def _frames(datasets: list[Any]) -> DicomSeries:
    frames = np.stack([_pixels(d) for d in datasets])
    return _make(
        frames, "frames", (1.0, *_pixel_spacing(datasets[0])), datasets[0], datasets, np.eye(3), np.zeros(3)
    )


def _multiframe(dataset: Any) -> DicomSeries:
    """An enhanced CT/MR file with per-frame positions is a volume; other multi-frame files
    (ultrasound cine, X-ray angiography) are frames in time order."""
    pixels = _pixels(dataset)
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [None])[0]
    positions = [
        _functional(item, shared, "PlanePositionSequence", "ImagePositionPatient") for item in per_frame or []
    ]
    orientation_values = _functional(
        per_frame[0] if per_frame else None, shared, "PlaneOrientationSequence", "ImageOrientationPatient"
    )
    spacing_values = _functional(
        per_frame[0] if per_frame else None, shared, "PixelMeasuresSequence", "PixelSpacing"
    )
    pixel_spacing = (
        (float(spacing_values[0]), float(spacing_values[1])) if spacing_values else _pixel_spacing(dataset)
    )
    if positions and all(p is not None for p in positions) and orientation_values is not None:
        orientation = np.asarray(orientation_values, float).reshape(2, 3)
        normal = np.cross(orientation[0], orientation[1])
        along = np.array([float(np.dot(np.asarray(p, float), normal)) for p in positions])
        if len(np.unique(np.round(along, _POSITION_DECIMALS))) == len(positions):
            order = [int(i) for i in np.argsort(along)]
            ordered_positions = [np.asarray(positions[i], float) for i in order]
            return _volume(pixels[order], [dataset], ordered_positions, orientation, pixel_spacing, order)
    series = _make(pixels, "frames", (1.0, *pixel_spacing), dataset, [dataset], np.eye(3), np.zeros(3))
    frame_time = dataset.get("FrameTime")
    if frame_time is not None:
        series.source["frame_time_ms"] = float(frame_time)
    return series


def _functional(item: Any, shared: Any, sequence: str, keyword: str) -> Any:
    for holder in (item, shared):
        if holder is not None and sequence in holder and keyword in holder[sequence][0]:
            return [float(v) for v in holder[sequence][0][keyword]]
    return None


def _make(
    image: np.ndarray,
    kind: str,
    spacing: tuple[float, ...],
    first: Any,
    datasets: list[Any],
    direction: np.ndarray,
    origin: np.ndarray,
    positions: list[Any] | None = None,
    frame_order: list[int] | None = None,
) -> DicomSeries:
    rgb = image.ndim == (4 if kind != "image" else 3) and image.shape[-1] == 3
    grey_as_rgb = (
        rgb and np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    )
    if grey_as_rgb:  # greyscale ultrasound stored as RGB: one channel loses nothing
        image, rgb = np.ascontiguousarray(image[..., 0]), False
    source: dict[str, Any] = {
        "kind": kind,
        "header": header_json(first),
        "instances": [
            {
                "sop_instance_uid": str(d.SOPInstanceUID),
                "instance_number": int(d.get("InstanceNumber", 0) or 0),
                "file": str(d.filename),
                **({"position": [float(v) for v in positions[i]]} if positions and len(datasets) > 1 else {}),
            }
            for i, d in enumerate(datasets)
        ],
    }
    if grey_as_rgb:
        source["grey_stored_as_rgb"] = True
    if frame_order is not None:
        source["frame_order"] = frame_order  # volume slice i is frame frame_order[i] of the file
    return DicomSeries(
        image, kind, tuple(float(s) for s in spacing), direction, origin, rgb, _name(first), source
    )


def header_json(dataset: Any) -> dict[str, Any]:
    """The dataset's header as DICOM JSON, without pixel data or other bulk binary values."""
    header = copy.copy(dataset)
    header.file_meta = None
    for element in list(header):
        if element.tag == 0x7FE00010 or (
            element.VR in ("OB", "OW", "OF", "OD", "OL", "UN") and _large(element)
        ):
            del header[element.tag]
    return header.to_json_dict()


def _large(element: Any) -> bool:
    value = element.value
    return value is not None and len(value) > 1024


def _pixels(dataset: Any) -> np.ndarray:
    """Decoded pixels: modality values for greyscale, RGB for colour."""
    from pydicom.pixels import apply_color_lut

    pixels = _decode(dataset)
    interpretation = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if interpretation == "PALETTE COLOR":
        return np.asarray(apply_color_lut(pixels, dataset))
    if int(dataset.get("SamplesPerPixel", 1)) > 1:
        return pixels  # pydicom >= 3 returns YBR_* as RGB
    slope, intercept = _rescale(dataset)
    if slope != 1.0 or intercept != 0.0:
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, said in one line
            pixels = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        if not np.isfinite(pixels).all():
            raise DicomError(
                f"{dataset.filename}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} take its "
                "pixel values beyond float32's range (±3.4e38); fix the header."
            )
    if interpretation == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    return pixels


def _decode(dataset: Any) -> np.ndarray:
    from pydicom.pixels import get_decoder

    try:  # the declared size, checked before anything is decoded (a decompression bomb costs nothing)
        frames, samples = (
            int(dataset.get("NumberOfFrames", 1) or 1),
            int(dataset.get("SamplesPerPixel", 1) or 1),
        )
        declared = (frames, int(dataset.Rows), int(dataset.Columns), samples)
    except (AttributeError, TypeError, ValueError):
        raise DicomError(
            f"{dataset.filename}: its Rows, Columns or NumberOfFrames are missing or not numbers."
        ) from None
    try:
        check_pixels(Path(dataset.filename), declared)
    except DatasetError as error:
        raise DicomError(str(error)) from None
    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomError(
            f"{dataset.filename}: its pixel data is stored as {syntax.name} ({syntax}), which pydicom "
            "cannot decode; export the images uncompressed or with a JPEG, JPEG-LS, JPEG 2000 or RLE syntax."
        ) from None
    if not decoder.is_available:
        raise DicomError(
            f"{dataset.filename}: its pixel data is compressed as {syntax.name} ({syntax}) and no installed "
            "decoder reads it; install the DICOM extra: pip install 'medsegdiff-training[dicom]'."
        )
    try:
        return np.asarray(dataset.pixel_array)
    except Exception as error:  # noqa: BLE001 - each decoder plugin raises its own types
        raise DicomError(
            f"Could not decode the pixel data of {dataset.filename} ({syntax.name}): {error}"
        ) from None


def _rescale(dataset: Any) -> tuple[float, float]:
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is None and "SharedFunctionalGroupsSequence" in dataset:
        shared = dataset.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            transform = shared.PixelValueTransformationSequence[0]
            slope, intercept = transform.get("RescaleSlope"), transform.get("RescaleIntercept")
    return float(1.0 if slope is None else slope), float(0.0 if intercept is None else intercept)


def _pixel_spacing(dataset: Any) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing, ImagerPixelSpacing, or an
    ultrasound region's physical deltas (cm); 1 when none is known."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in dataset and dataset.get(keyword):
            values = [float(v) for v in dataset.get(keyword)]
            return values[0], values[1]
    regions = dataset.get("SequenceOfUltrasoundRegions")
    if regions and int(regions[0].get("PhysicalUnitsXDirection", 0)) == 3:  # 3 = cm
        region = regions[0]
        return abs(float(region.PhysicalDeltaY)) * 10.0, abs(float(region.PhysicalDeltaX)) * 10.0
    return 1.0, 1.0


def _orientation(dataset: Any) -> np.ndarray | None:
    values = dataset.get("ImageOrientationPatient")
    return None if not values else np.asarray([float(v) for v in values]).reshape(2, 3)


def _position(dataset: Any) -> np.ndarray | None:
    values = dataset.get("ImagePositionPatient")
    return None if not values else np.asarray([float(v) for v in values])


def _instance_order(dataset: Any) -> tuple[int, str, str]:
    return (
        int(dataset.get("InstanceNumber", 0) or 0),
        str(dataset.get("AcquisitionTime", "")),
        dataset.filename,
    )


def _name(dataset: Any) -> str:
    description = str(dataset.get("SeriesDescription", "") or "").strip()
    if description:
        return description
    modality = str(dataset.get("Modality", "") or "DICOM")
    number = dataset.get("SeriesNumber")
    return f"{modality} series {number}" if number is not None else Path(dataset.filename).stem
