"""Save a picture of a DICOM ultrasound cine loop segmented in napari (for the README).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/dicom_screenshot.py

Wraps the plugin's three DDTI sample images as the frames of one multi-frame ultrasound
DICOM file (pydicom, 0.1 mm pixels given as an ultrasound region), opens it through the
plugin's DICOM reader, segments the frame on screen with the shipped default model at the
widget's defaults, and saves the window to ``docs/images/dicom-ultrasound.png``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ["ddti_test_106_2.png", "ddti_test_119_1.png", "ddti_test_185_11.png"]


def write_cine(path: Path) -> None:
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    frames = []
    for name in SAMPLES:
        with Image.open(ROOT / "napari_medsegdiff" / "sample_data" / name) as picture:
            frames.append(np.asarray(picture.convert("L").resize((300, 300))))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription = "US", "thyroid cine (DDTI samples)"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Anonymous", "DDTI"
    ds.FrameTime = 100.0
    region = Dataset()
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = 0.01
    ds.SequenceOfUltrasoundRegions = [region]
    ds.set_pixel_data(np.stack(frames), "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/dicom-ultrasound.png")
    args = parser.parse_args()
    from screenshot import open_viewer, segment_and_save  # scripts/ is on the path when run as a script

    folder = Path(tempfile.mkdtemp())
    write_cine(folder / "thyroid-cine.dcm")
    viewer, widget = open_viewer()
    [image] = viewer.open(str(folder / "thyroid-cine.dcm"), plugin="napari-medsegdiff")
    viewer.dims.set_point(0, 1)  # the second frame
    widget.image_box.setCurrentText(image.name)
    segment_and_save(viewer, widget, args.out)  # the same last steps as the README's other picture


if __name__ == "__main__":
    main()
