"""DICOM through the plugin: a folder opens as layers placed in patient space, segments, and
saves back as a DICOM SEG that highdicom reads with the same mask on the same instances."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need the dicom extra")
hd = pytest.importorskip("highdicom", reason="DICOM SEG tests need the dicom extra")

ROTATED = (0.8, 0.6, 0.0, -0.6, 0.8, 0.0)  # axial, turned 37 degrees about the patient's z axis


@pytest.mark.gui
def test_a_dicom_folder_opens_segments_and_saves_as_seg(qtbot, widget, tmp_path, dicom_factory):
    viewer = widget.viewer
    origin, spacing = (-40.0, 10.0, 90.0), (3.0, 0.6, 0.6)
    volume = dicom_factory.phantom((3, 40, 36))
    info = dicom_factory.ct_series(tmp_path / "ct", volume, spacing, ROTATED, origin)
    [image] = viewer.open(str(tmp_path / "ct"), plugin="napari-medsegdiff")
    assert image.name == "CT test series" and image.data.shape == (3, 40, 36)
    assert np.allclose(image.scale, spacing)
    # Voxel (slice 2, row 5, column 7) lies where DICOM puts it, in patient (z, y, x).
    row, column = np.asarray(ROTATED[:3]), np.asarray(ROTATED[3:])
    expected_xyz = np.asarray(origin) + 7 * 0.6 * row + 5 * 0.6 * column + 2 * 3.0 * np.cross(row, column)
    assert np.allclose(image.data_to_world((2, 5, 7)), expected_xyz[::-1])

    widget._refresh_layers()
    widget.image_box.setCurrentText(image.name)
    # A DICOM series of 3 slices is a volume, not the 3-channel image a plain 3x40x36 array reads as.
    assert widget.axes_label.text() == "volume of 3 slices of 40x36 (axis 0)"
    widget.advanced.scope.value = "all slices"
    widget.advanced.steps.value = 2
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    labels = viewer.layers[f"{image.name} segmentation"]
    assert labels.data.shape == image.data.shape
    assert np.allclose(labels.data_to_world((2, 5, 7)), image.data_to_world((2, 5, 7)))
    assert labels.metadata["dicom"]["header"] == image.metadata["dicom"]["header"]

    labels.data[1, 10:20, 10:20] = 1  # an annotator's correction
    labels.data[0] = 0
    [written] = labels.save(str(tmp_path / "seg.dcm"), plugin="napari-medsegdiff")
    seg = hd.seg.segread(written)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == info["series_uid"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["class 1"]  # the tiny model's one class
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # edited after the model
    in_slice_order = [i["sop_instance_uid"] for i in image.metadata["dicom"]["instances"]]
    back = seg.get_pixels_by_source_instance(in_slice_order, combine_segments=True, relabel=False)
    assert np.array_equal(back, labels.data)


@pytest.mark.gui
def test_a_mixed_folder_opens_as_one_layer_per_series(make_napari_viewer, tmp_path, dicom_factory):
    folder = tmp_path / "study"
    dicom_factory.ct_series(folder, dicom_factory.phantom((3, 20, 16)), description="arterial")
    coronal, origin = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (-30.0, 5.0, 60.0)
    dicom_factory.ct_series(
        folder / "cor",
        dicom_factory.phantom((4, 20, 16)),
        (2.0, 0.5, 0.7),
        coronal,
        origin,
        description="coronal",
    )
    dicom_factory.ultrasound_cine(folder / "cine.dcm", np.zeros((4, 12, 10), np.uint8))
    viewer = make_napari_viewer()
    layers = {layer.name: layer for layer in viewer.open(str(folder), plugin="napari-medsegdiff")}
    assert sorted(layers) == ["US cine", "arterial", "coronal"]
    assert layers["arterial"].data.shape == (3, 20, 16)
    cine = layers["US cine"]
    assert cine.data.shape == (4, 12, 10) and np.allclose(cine.scale, (1.0, 0.2, 0.1))
    # A coronal series is sliced in its own plane: world (posterior, inferior, left), in mm.
    (x, y, z) = np.asarray(origin) + 3 * 0.7 * np.array([1.0, 0, 0]) + 5 * 0.5 * np.array([0, 0, -1.0])
    y += 2 * 2.0  # slice 2 lies 4 mm posterior (the normal is +y)
    assert np.allclose(layers["coronal"].data_to_world((2, 5, 3)), (y, -z, x))
    viewer.dims.set_point(0, float(y))  # slicing it raises no non-orthogonal warning (errors here)


def test_the_reader_claims_dicom_only(tmp_path, dicom_factory):
    from napari_medsegdiff._dicom_io import get_dicom_reader, read_dicom_layers

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("no images")
    assert get_dicom_reader(str(tmp_path / "plain")) is None
    assert get_dicom_reader(str(tmp_path / "picture.png")) is None
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0], rgb[2:5, 3:7, 2] = 180, 90  # truly colour (equal channels would read as grey)
    dicom_factory.colour_image(tmp_path / "IMG0001", rgb, "YBR_FULL")  # no suffix: the preamble says DICOM
    assert get_dicom_reader(str(tmp_path / "IMG0001")) is read_dicom_layers
    [(data, attributes, kind)] = read_dicom_layers(str(tmp_path / "IMG0001"))
    assert kind == "image" and attributes["rgb"] and data.shape == (8, 10, 3)


def test_saving_labels_not_made_from_dicom_as_seg_says_what_to_do(tmp_path):
    from medsegdiff_training.errors import DicomError
    from napari_medsegdiff._dicom_io import write_dicom_seg

    with pytest.raises(DicomError, match=r"not segmented from a DICOM series.*\.nii\.gz or \.tif"):
        write_dicom_seg(str(tmp_path / "seg.dcm"), np.zeros((4, 4), np.uint8), {"name": "painted"})
