"""Small DICOM files made with pydicom for the tests (no downloads): CT-like series with any
spacing and orientation, multi-frame ultrasound, colour images.

Loaded by the ``dicom_factory`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _base(sop_class: str, modality: str, study_uid: str, series_uid: str, series_number: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Test^Patient"
    ds.PatientID = "MSD-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = "20261127"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.Manufacturer = "tests"
    return ds


def ct_series(
    folder: Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.8),
    orientation: tuple[float, ...] = AXIAL,
    origin: tuple[float, float, float] = (-50.0, 20.0, 100.0),
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    description: str = "CT test series",
    series_number: int = 1,
    study_uid: str | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> dict:
    """Write ``volume`` (Z, Y, X, stored values) as one CT file per slice, slice k at
    ``origin + k * spacing[0] * normal``; files get names in a shuffled order, and
    InstanceNumber runs backwards, so that neither gives the slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid, frame_of_reference = generate_uid(), generate_uid()
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, column)
    names = list(range(len(volume)))
    if shuffle:
        random.Random(seed).shuffle(names)
    sop_uids = []
    for k, plane in enumerate(volume):
        ds = _base(CTImageStorage, "CT", study_uid, series_uid, series_number)
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = len(volume) - k
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[0] * normal]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.set_pixel_data(np.ascontiguousarray(plane.astype(np.int16)), "MONOCHROME2", 16)
        ds.save_as(folder / f"IM{names[k]:04d}.dcm", enforce_file_format=True)
        sop_uids.append(str(ds.SOPInstanceUID))
    return {"series_uid": series_uid, "study_uid": study_uid, "sop_uids": sop_uids}


def ultrasound_cine(path: Path, frames: np.ndarray, photometric: str = "MONOCHROME2") -> Dataset:
    """A multi-frame ultrasound file (T, Y, X) or (T, Y, X, 3), 40 ms a frame, 0.1 mm pixels
    given as an ultrasound region (cm)."""
    ds = _base(UltrasoundMultiFrameImageStorage, "US", generate_uid(), generate_uid(), 3)
    ds.SeriesDescription = "US cine"
    ds.InstanceNumber = 1
    ds.FrameTime = 40.0
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = frames.shape[2] - 1, frames.shape[1] - 1
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.02
    ds.SequenceOfUltrasoundRegions = [region]
    stored = frames
    if photometric.startswith("YBR"):
        from pydicom.pixels import convert_color_space

        stored = convert_color_space(frames, "RGB", photometric)
    ds.set_pixel_data(np.ascontiguousarray(stored.astype(np.uint8)), photometric, 8)
    ds.save_as(path, enforce_file_format=True)
    return ds


def colour_image(path: Path, rgb: np.ndarray, photometric: str = "RGB") -> Dataset:
    """A single secondary-capture colour image stored as RGB or YBR_FULL."""
    ds = _base(SecondaryCaptureImageStorage, "OT", generate_uid(), generate_uid(), 4)
    ds.SeriesDescription = f"photo {photometric}"
    ds.InstanceNumber = 1
    stored = rgb
    if photometric != "RGB":
        from pydicom.pixels import convert_color_space

        stored = convert_color_space(rgb, "RGB", photometric)
    ds.set_pixel_data(np.ascontiguousarray(stored.astype(np.uint8)), photometric, 8)
    ds.save_as(path, enforce_file_format=True)
    return ds


def phantom(shape: tuple[int, int, int] = (6, 24, 20), seed: int = 0) -> np.ndarray:
    """Stored values of a small CT-like volume: a bright ball (about 1000 above the rest)
    whose slices all differ, so a wrong slice order shows."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ball = ((z - shape[0] / 2) / 2.5) ** 2 + ((y - shape[1] / 2) / 7) ** 2 + ((x - shape[2] / 2) / 6) ** 2 < 1
    noise = np.random.default_rng(seed).integers(0, 40, shape)
    return (1000 + 1000 * ball + noise + 7 * z).astype(np.int16)


def enhanced_volume(
    path: Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (2.0, 0.5, 0.5),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    frame_order: list[int] | None = None,
) -> Dataset:
    """An enhanced multi-frame MR file: slice k of ``volume`` (at ``origin + k * spacing[0]``
    along z) is stored as frame ``frame_order.index(k)``, so file order is not slice order."""
    from pydicom.uid import EnhancedMRImageStorage

    order = list(range(len(volume))) if frame_order is None else frame_order
    ds = _base(EnhancedMRImageStorage, "MR", generate_uid(), generate_uid(), 5)
    ds.SeriesDescription = "enhanced MR"
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = generate_uid()
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(AXIAL)
    measures.PixelSpacing = [spacing[1], spacing[2]]
    measures.SliceThickness = spacing[0]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2.0, -10.0, "US"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[0]]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.set_pixel_data(np.ascontiguousarray(volume[order].astype(np.uint16)), "MONOCHROME2", 16)
    ds.save_as(path, enforce_file_format=True)
    return ds
