"""Writing a label map segmented from a DICOM series as a DICOM Segmentation (highdicom).

The SEG references the source series (study, series, frame of reference and every source
instance), so a PACS or viewer shows it on the images it was made from. It needs only the
source's headers, which :func:`~medsegdiff_training.data.dicom.read_dicom` keeps in
``DicomSeries.source`` (plain JSON values, so they can travel in a napari layer's metadata).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomError

MANUFACTURER = "napari-medsegdiff"
# A private coding scheme for "class k of this model" (DICOM reserves 99* for local schemes).
CODING_SCHEME = "99MEDSEGDIFF"


def class_names(model_folder: str | Path | None, num_classes: int) -> list[str]:
    """The names of classes 1..K-1 of a model: its ``model_card.json`` ``class_names`` when
    it has them (the shipped models do), else ``class 1``, ``class 2``..."""
    import json

    names: list[str] = []
    if model_folder is not None:
        try:
            card = json.loads((Path(model_folder) / "model_card.json").read_text())
            names = [str(name) for name in card.get("class_names", [])]
        except (OSError, ValueError, AttributeError):
            names = []
    return [*names, *(f"class {k}" for k in range(len(names) + 1, num_classes))][: max(num_classes - 1, 0)]


def source_datasets(source: dict[str, Any]) -> list[Any]:
    """The header-only pydicom datasets of the source instances, in the order of the
    series' array (one per slice or frame file; one dataset for a multi-frame file)."""
    from pydicom.dataset import Dataset

    try:
        header = Dataset.from_json(source["header"])
        instances = source["instances"]
    except (KeyError, TypeError, ValueError) as error:
        raise DicomError(f"The DICOM source record is incomplete ({error}); reopen the series.") from None
    datasets = []
    for instance in instances:
        dataset = copy.deepcopy(header)
        dataset.SOPInstanceUID = instance["sop_instance_uid"]
        dataset.InstanceNumber = instance.get("instance_number", 0)
        if "position" in instance:
            dataset.ImagePositionPatient = [float(v) for v in instance["position"]]
        datasets.append(dataset)
    return datasets


def write_dicom_seg(
    path: str | Path,
    labels: np.ndarray,
    source: dict[str, Any],
    segment_names: Sequence[str] = (),
    *,
    model_version: str = "",
    edited: bool = False,
    software_version: str = "",
) -> Path:
    """Write ``labels`` (the series' array shape without colour: (Z, Y, X), (T, Y, X) or
    (Y, X); 0 = background, k = segment k) as a binary DICOM SEG referencing ``source``.

    ``segment_names[k - 1]`` labels segment k (the model's classes); labels beyond them are
    called ``label k``. ``edited`` marks the segmentation semi-automatic (corrected by a
    person) rather than automatic. Raises :class:`DicomError` when the labels do not fit
    the source series.

    Examples
    --------
    >>> series = read_dicom("ct_folder")[0]  # doctest: +SKIP
    >>> write_dicom_seg("seg.dcm", labels, series.source, ["liver"], model_version="v3")  # doctest: +SKIP
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = source_datasets(source)
    labels = np.asarray(labels)
    if "FrameOfReferenceUID" not in datasets[0] and (len(datasets) > 1 or labels.ndim > 2):
        # highdicom (0.28) references several frames only through a frame of reference.
        raise DicomError(
            "This series has several frames but no frame of reference (an ultrasound cine loop?); "
            "a DICOM SEG of it cannot reference its frames: save the labels as NIfTI or TIFF."
        )
    frames = _frames_in_file_order(labels, source, datasets)
    if frames.min(initial=0) < 0 or frames.max(initial=0) > 65535:
        raise DicomError("DICOM SEG stores labels 0..65535; this Labels layer holds others.")
    top = max(len(segment_names), int(frames.max(initial=0)), 1)
    names = [*segment_names, *(f"label {k}" for k in range(len(segment_names) + 1, top + 1))]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="MedSegDiff", family=codes.cid7162.ArtificialIntelligence, version=model_version or "unknown"
    )
    kind = (
        hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
        if edited
        else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name[:64],
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept(f"class-{k}", CODING_SCHEME, name[:64]),
            algorithm_type=kind,
            algorithm_identification=algorithm,
        )
        for k, name in enumerate(names, start=1)
    ]
    try:
        segmentation = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=frames.astype(np.uint8 if top < 256 else np.uint16),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(source["header"].get("00200011", {}).get("Value", [0])[0] or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="MedSegDiff",
            software_versions=software_version or "0",
            device_serial_number="none",
            series_description=f"MedSegDiff {model_version}".strip()[:64],
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise DicomError(f"Could not make a DICOM SEG for this series: {error}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation.save_as(path)
    return path


def _frames_in_file_order(labels: np.ndarray, source: dict[str, Any], datasets: list[Any]) -> np.ndarray:
    """The labels as (frames, rows, cols) in the order of the source instances or frames."""
    header = datasets[0]
    rows, columns = int(header.Rows), int(header.Columns)
    frames = labels[None] if labels.ndim == 2 else labels
    expected = len(datasets) if len(datasets) > 1 else int(header.get("NumberOfFrames", 1) or 1)
    if frames.ndim != 3 or frames.shape != (expected, rows, columns):
        raise DicomError(
            f"The labels have shape {labels.shape}, but the source series is "
            f"{expected} x {rows} x {columns}: save the Labels layer made from that series."
        )
    order = source.get("frame_order")
    if order is not None:  # a multi-frame volume shown in slice order: back to the file's frames
        in_file = np.empty_like(frames)
        in_file[np.asarray(order)] = frames
        frames = in_file
    return frames
