"""NIfTI and TIFF through the plugin's reader and writer: spacing, affine and labels survive."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
import tifffile


@pytest.mark.gui
def test_nifti_round_trip_keeps_spacing_and_affine(make_napari_viewer, tmp_path):
    volume = np.random.default_rng(0).random((20, 16, 5)).astype(np.float32)  # (x, y, z)
    affine = np.array([[0.8, 0, 0, -10], [0, 0.7, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "scan.nii.gz")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(tmp_path / "scan.nii.gz"), plugin="napari-medsegdiff")
    assert image.data.shape == (5, 16, 20)  # z first, for the slider
    assert np.allclose(image.scale, (2.5, 0.7, 0.8))
    labels = np.zeros(image.data.shape, np.uint8)
    labels[2, 4:9, 3:12] = 1
    layer = viewer.add_labels(
        labels, name="seg", scale=image.scale, metadata={"nifti_affine": image.metadata["nifti_affine"]}
    )
    [written] = layer.save(str(tmp_path / "seg.nii.gz"), plugin="napari-medsegdiff")
    back = nibabel.load(written)
    assert np.allclose(back.affine, affine)
    assert np.array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), labels)


@pytest.mark.gui
def test_labels_drawn_by_hand_on_a_nifti_scan_are_saved_with_the_scans_affine(make_napari_viewer, tmp_path):
    # An oblique scan: its affine is not the diagonal that scale and translation alone give.
    volume = np.random.default_rng(1).random((12, 10, 4)).astype(np.float32)  # (x, y, z)
    affine = np.array([[0.0, -0.9, 0.1, 40], [0.8, 0.0, 0.0, -12], [0.0, 0.1, 3.0, 7], [0, 0, 0, 1]])
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "oblique.nii.gz")
    viewer = make_napari_viewer()
    [scan] = viewer.open(str(tmp_path / "oblique.nii.gz"), plugin="napari-medsegdiff")
    # a second, unrelated NIfTI scan of another shape must not lend its affine
    other = nibabel.Nifti1Image(np.zeros((5, 5, 5), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    nibabel.save(other, tmp_path / "other.nii.gz")
    viewer.open(str(tmp_path / "other.nii.gz"), plugin="napari-medsegdiff")
    viewer.layers.selection.active = scan
    viewer._new_labels()  # the layer list's "new labels layer" button: the scan's shape and scale
    labels = viewer.layers[-1]
    assert "nifti_affine" not in labels.metadata and labels.data.shape == (4, 10, 12)
    labels.data[2, 3:6, 1:9] = 1  # painted by hand
    [written] = labels.save(str(tmp_path / "drawn.nii.gz"), plugin="napari-medsegdiff")
    back = nibabel.load(written)
    assert np.allclose(back.affine, affine)
    assert np.array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), labels.data)
    # Labels that lie nowhere near a NIfTI image keep their own scale and translation.
    far = viewer.add_labels(np.zeros((4, 10, 12), np.uint8), scale=(1.0, 1.0, 1.0), translate=(500.0, 0, 0))
    [written] = far.save(str(tmp_path / "far.nii.gz"), plugin="napari-medsegdiff")
    assert np.allclose(nibabel.load(written).affine[:3], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 500]])


def test_nifti_labels_without_a_source_affine_keep_scale_and_translation(tmp_path):
    from napari_medsegdiff._io import read, write_labels

    labels = np.zeros((4, 6, 5), np.uint8)  # (z, y, x) as napari holds it
    labels[1, 2:4, 1:3] = 1
    [path] = write_labels(
        str(tmp_path / "seg.nii"), labels, {"scale": [3.0, 0.5, 0.25], "translate": [10.0, 2.0, 1.0]}
    )
    assert np.allclose(nibabel.load(path).affine[:3], [[0.25, 0, 0, 1], [0, 0.5, 0, 2], [0, 0, 3, 10]])
    [(data, attributes, _)] = read(path)
    assert np.array_equal(data, labels) and np.allclose(attributes["scale"], (3.0, 0.5, 0.25))


def test_a_4d_nifti_series_puts_time_then_z_first(tmp_path):
    from napari_medsegdiff._io import read

    series = np.zeros((5, 4, 3, 2), np.float32)  # (x, y, z, t)
    series[4, 0, 0, 1] = 1
    image = nibabel.Nifti1Image(series, np.eye(4))
    image.header.set_zooms((0.5, 0.6, 2.0, 7.0))
    nibabel.save(image, tmp_path / "series.nii.gz")
    [(data, attributes, _)] = read(str(tmp_path / "series.nii.gz"))
    assert data.shape == (2, 3, 4, 5) and data[1, 0, 0, 4] == 1
    assert np.allclose(attributes["scale"], (7.0, 2.0, 0.6, 0.5))


def test_tiff_reader_and_labels_writer(tmp_path):
    from napari_medsegdiff._io import get_reader, write_labels

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((12, 10, 3), np.uint8))
    [(data, attributes, kind)] = get_reader(str(tmp_path / "rgb.tif"))(str(tmp_path / "rgb.tif"))
    assert kind == "image" and attributes["rgb"] and data.shape == (12, 10, 3)
    labels = np.arange(120, dtype=np.uint8).reshape(12, 10) % 3
    [path] = write_labels(str(tmp_path / "labels.tif"), labels, {})
    assert np.array_equal(tifffile.imread(path), labels)
    assert get_reader(str(tmp_path / "picture.png")) is None


def test_the_widget_recommends_the_same_steps_and_ensemble_as_the_core():
    from medsegdiff_training import samplers
    from napari_medsegdiff import _widget

    assert _widget.RECOMMENDED_STEPS == samplers.RECOMMENDED_STEPS
    assert _widget.RECOMMENDED_ENSEMBLE == samplers.RECOMMENDED_ENSEMBLE
