"""DICOM in and out in the core: series geometry, slice order, frames, colour, codecs, mixed
folders, DICOM SEG round trips, and ``medsegdiff predict``/``evaluate`` on DICOM."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need the dicom extra")
hd = pytest.importorskip("highdicom", reason="DICOM SEG tests need the dicom extra")

from medsegdiff_training.data.dicom import read_dicom  # noqa: E402
from medsegdiff_training.data.dicom_seg import class_names, write_dicom_seg  # noqa: E402
from medsegdiff_training.errors import DicomError  # noqa: E402

OBLIQUE = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)  # rows run obliquely in x-y, columns go down z (coronal-ish)


def patient_position(origin, orientation, spacing, k, i, j) -> np.ndarray:
    """Where DICOM puts voxel (slice k, row i, column j), in patient (x, y, z)."""
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, column)
    return np.asarray(origin) + j * spacing[2] * row + i * spacing[1] * column + k * spacing[0] * normal


def test_a_shuffled_series_is_a_volume_in_position_order_with_spacing_and_rescale(tmp_path, dicom_factory):
    volume = dicom_factory.phantom()
    dicom_factory.ct_series(tmp_path / "ct", volume, spacing=(2.5, 0.7, 0.8), intercept=-1024.0)
    [series] = read_dicom(tmp_path / "ct")
    assert series.kind == "volume" and not series.rgb
    # Neither file names nor InstanceNumber (which runs backwards) decide the order.
    assert np.array_equal(series.image, volume.astype(np.float32) - 1024.0)
    assert series.spacing == pytest.approx((2.5, 0.7, 0.8))
    assert series.name == "CT test series"
    assert series.source["slice_gaps_mm"] == pytest.approx([2.5] * (len(volume) - 1))


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), OBLIQUE])
def test_the_affine_puts_every_voxel_where_dicom_says(tmp_path, dicom_factory, orientation):
    origin, spacing = (-50.0, 20.0, 100.0), (3.0, 0.5, 0.9)
    dicom_factory.ct_series(tmp_path / "ct", dicom_factory.phantom(), spacing, orientation, origin)
    [series] = read_dicom(tmp_path / "ct")
    for k, i, j in [(0, 0, 0), (5, 0, 0), (2, 23, 0), (4, 7, 19)]:
        world_zyx = (series.affine @ [k, i, j, 1])[:3]
        expected_xyz = patient_position(origin, orientation, spacing, k, i, j)
        assert world_zyx == pytest.approx(expected_xyz[::-1], abs=1e-6)


def test_a_series_stored_with_descending_positions_still_reads_upwards(tmp_path, dicom_factory):
    volume = dicom_factory.phantom()
    # A normal pointing down z: the file order and the z order disagree.
    dicom_factory.ct_series(tmp_path / "ct", volume, orientation=(1, 0, 0, 0, -1, 0), shuffle=True, seed=3)
    [series] = read_dicom(tmp_path / "ct")
    assert np.array_equal(series.image, volume - 1024.0)
    assert series.direction[0, 0] == pytest.approx(-1.0)  # slice axis runs down patient z


def test_multiframe_ultrasound_is_frames_with_the_region_spacing(tmp_path, dicom_factory):
    frames = np.random.default_rng(1).integers(0, 255, (7, 30, 40)).astype(np.uint8)
    dicom_factory.ultrasound_cine(tmp_path / "cine.dcm", frames)
    [series] = read_dicom(tmp_path / "cine.dcm")
    assert series.kind == "frames" and np.array_equal(series.image, frames)
    assert series.spacing == pytest.approx((1.0, 0.2, 0.1))  # PhysicalDelta 0.02 / 0.01 cm
    assert series.source["frame_time_ms"] == 40.0


def test_an_enhanced_multiframe_file_is_a_volume_in_position_order(tmp_path, dicom_factory):
    volume = dicom_factory.phantom((5, 12, 10)).astype(np.uint16)
    order = [3, 0, 4, 1, 2]  # frame i of the file holds slice order[i]
    dicom_factory.enhanced_volume(tmp_path / "mr.dcm", volume, (2.0, 0.5, 0.4), (1.0, 2.0, 3.0), order)
    [series] = read_dicom(tmp_path / "mr.dcm")
    assert series.kind == "volume" and series.spacing == pytest.approx((2.0, 0.5, 0.4))
    assert np.array_equal(series.image, volume * 2.0 - 10.0)  # shared rescale applied
    assert (series.affine @ [4, 0, 0, 1])[:3] == pytest.approx((3.0 + 8.0, 2.0, 1.0))
    labels = np.zeros(volume.shape, np.uint8)
    labels[1, 3:6, 2:5] = 1
    seg = hd.seg.segread(write_dicom_seg(tmp_path / "seg.dcm", labels, series.source, ["ball"]))
    # Back in the file's frame order: file frame i is slice order[i].
    uid = series.source["instances"][0]["sop_instance_uid"]
    frames = [i + 1 for i in range(5)]
    back = seg.get_pixels_by_source_frame(
        uid, frames, combine_segments=True, assert_missing_frames_are_empty=True
    )
    assert np.array_equal(back, labels[order])


def test_colour_cine_in_ybr_full_comes_out_rgb(tmp_path, dicom_factory):
    rgb = np.random.default_rng(2).integers(0, 255, (3, 16, 20, 3)).astype(np.uint8)
    dicom_factory.ultrasound_cine(tmp_path / "colour.dcm", rgb, photometric="YBR_FULL")
    [series] = read_dicom(tmp_path / "colour.dcm")
    assert series.kind == "frames" and series.rgb and series.image.shape == (3, 16, 20, 3)
    assert np.abs(series.image.astype(int) - rgb).max() <= 2  # YCbCr rounding


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_a_single_colour_image_stays_2d_rgb(tmp_path, dicom_factory, photometric):
    rgb = np.zeros((18, 24, 3), np.uint8)
    rgb[..., 0], rgb[4:10, 5:15, 1] = 200, 150
    dicom_factory.colour_image(tmp_path / "photo.dcm", rgb, photometric)
    [series] = read_dicom(tmp_path / "photo.dcm")
    assert series.kind == "image" and series.rgb and series.image.shape == (18, 24, 3)
    assert np.abs(series.image.astype(int) - rgb).max() <= 2


def test_greyscale_stored_as_rgb_comes_out_grey(tmp_path, dicom_factory):
    grey = np.random.default_rng(4).integers(0, 255, (3, 10, 12)).astype(np.uint8)
    dicom_factory.ultrasound_cine(tmp_path / "cine.dcm", np.repeat(grey[..., None], 3, axis=-1), "RGB")
    [series] = read_dicom(tmp_path / "cine.dcm")
    assert not series.rgb and np.array_equal(series.image, grey)
    assert series.source["grey_stored_as_rgb"]


def test_a_mixed_folder_is_split_into_its_series(tmp_path, dicom_factory):
    folder = tmp_path / "study"
    first, second = dicom_factory.phantom(seed=1), dicom_factory.phantom((4, 24, 20), seed=2)
    dicom_factory.ct_series(folder, first, description="arterial", series_number=1, seed=1)
    # Same folder, same file-name pattern: the second series' files overwrite nothing but
    # sit among the first's.
    dicom_factory.ct_series(folder / "sub", second, description="venous", series_number=2, seed=2)
    for path in (folder / "sub").iterdir():
        path.rename(folder / f"B{path.name}")
    dicom_factory.ultrasound_cine(folder / "cine.dcm", np.zeros((3, 10, 12), np.uint8))
    (folder / "notes.txt").write_text("not DICOM")
    series = {s.name: s for s in read_dicom(folder)}
    assert sorted(series) == ["US cine", "arterial", "venous"]
    assert np.array_equal(series["arterial"].image, first - 1024.0)
    assert np.array_equal(series["venous"].image, second - 1024.0)
    assert series["US cine"].kind == "frames"


def test_rle_lossless_is_decoded(tmp_path, dicom_factory):
    from pydicom.uid import RLELossless

    volume = dicom_factory.phantom()
    dicom_factory.ct_series(tmp_path / "ct", volume)
    for path in (tmp_path / "ct").iterdir():
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)
        dataset.save_as(path)
    assert pydicom.dcmread(next((tmp_path / "ct").iterdir())).file_meta.TransferSyntaxUID == RLELossless
    [series] = read_dicom(tmp_path / "ct")
    assert np.array_equal(series.image, volume - 1024.0)


def test_a_syntax_no_decoder_reads_is_refused_by_name(tmp_path, dicom_factory):
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41

    dataset = dicom_factory.ultrasound_cine(tmp_path / "video.dcm", np.zeros((2, 8, 8), np.uint8))
    dataset.file_meta.TransferSyntaxUID = MPEG4HP41
    dataset.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really a video"])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(tmp_path / "video.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="MPEG-4 AVC/H.264 High Profile"):
        read_dicom(tmp_path / "video.dcm")


def test_several_images_per_position_are_refused(tmp_path, dicom_factory):
    volume = dicom_factory.phantom((3, 12, 10))
    info = dicom_factory.ct_series(tmp_path / "a", volume, shuffle=False)
    dicom_factory.ct_series(tmp_path / "b", volume, shuffle=False)
    for path in (tmp_path / "b").iterdir():  # the same positions again, in the same series
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = info["series_uid"]
        dataset.save_as(tmp_path / "a" / f"again-{path.name}")
    with pytest.raises(DicomError, match="6 images at 3 positions"):
        read_dicom(tmp_path / "a")


def test_a_file_declaring_more_pixels_than_the_limit_is_refused_before_decoding(
    tmp_path, dicom_factory, monkeypatch
):
    frames = np.random.default_rng(1).integers(0, 255, (7, 30, 40)).astype(np.uint8)
    dicom_factory.ultrasound_cine(tmp_path / "cine.dcm", frames)
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", str(7 * 30 * 40 - 1))
    with pytest.raises(
        DicomError, match=r"declares 7 x 30 x 40 x 1 = 8,400 pixels, more than the limit of 8,399"
    ):
        read_dicom(tmp_path / "cine.dcm")
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", str(7 * 30 * 40))
    assert np.array_equal(read_dicom(tmp_path / "cine.dcm")[0].image, frames)


def test_no_dicom_and_missing_paths_are_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DicomError, match="No DICOM images"):
        read_dicom(tmp_path)
    with pytest.raises(DicomError, match="does not exist"):
        read_dicom(tmp_path / "missing")


def test_seg_round_trip_gives_the_same_mask_on_the_same_instances(tmp_path, dicom_factory):
    info = dicom_factory.ct_series(tmp_path / "ct", dicom_factory.phantom(), orientation=OBLIQUE)
    [series] = read_dicom(tmp_path / "ct")
    labels = (series.image > 500).astype(np.uint8)
    labels[0, :3, :4] = 2
    path = write_dicom_seg(
        tmp_path / "seg.dcm", labels, series.source, ["ball", "corner"], model_version="v7"
    )
    seg = hd.seg.segread(path)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == info["series_uid"]
    assert seg.StudyInstanceUID == info["study_uid"] and seg.PatientID == "MSD-0001"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ball", "corner"]
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "MedSegDiff"
    in_slice_order = [i["sop_instance_uid"] for i in series.source["instances"]]
    back = seg.get_pixels_by_source_instance(in_slice_order, combine_segments=True, relabel=False)
    assert np.array_equal(back, labels)
    # The same through the instances' own files: slice k of the labels is on the file at slice k.
    by_file = {pydicom.dcmread(i["file"]).SOPInstanceUID: k for k, i in enumerate(series.source["instances"])}
    assert sorted(by_file.values()) == list(range(len(labels)))


def test_seg_refuses_labels_of_another_shape_and_cine_without_frame_of_reference(tmp_path, dicom_factory):
    dicom_factory.ct_series(tmp_path / "ct", dicom_factory.phantom())
    [series] = read_dicom(tmp_path / "ct")
    with pytest.raises(DicomError, match="shape"):
        write_dicom_seg(tmp_path / "seg.dcm", np.zeros((2, 24, 20), np.uint8), series.source)
    dicom_factory.ultrasound_cine(tmp_path / "cine.dcm", np.zeros((3, 10, 12), np.uint8))
    [cine] = read_dicom(tmp_path / "cine.dcm")
    with pytest.raises(DicomError, match="NIfTI or TIFF"):
        write_dicom_seg(tmp_path / "cine-seg.dcm", np.ones((3, 10, 12), np.uint8), cine.source)


def test_seg_of_a_single_colour_image(tmp_path, dicom_factory):
    dicom_factory.colour_image(tmp_path / "photo.dcm", np.full((12, 16, 3), 90, np.uint8))
    [series] = read_dicom(tmp_path / "photo.dcm")
    labels = np.zeros((12, 16), np.uint8)
    labels[2:6, 3:9] = 1
    seg = hd.seg.segread(write_dicom_seg(tmp_path / "seg.dcm", labels, series.source, ["disc"], edited=True))
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    back = seg.get_pixels_by_source_instance(
        [series.source["instances"][0]["sop_instance_uid"]], combine_segments=True
    )
    assert np.array_equal(back[0], labels)


def test_class_names_come_from_the_shipped_model_cards():
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry()
    assert class_names(registry.get("default").path, 2) == ["thyroid nodule"]
    assert class_names(registry.get("drishti-disc-cup").path, 3) == ["optic disc rim", "optic cup"]
    assert class_names(None, 3) == ["class 1", "class 2"]


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    import torch

    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.registry import ModelRegistry

    monkeypatch.setenv("MEDSEGDIFF_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    source = save_checkpoint(
        tmp_path / "tiny", MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
    )
    registry = ModelRegistry(tmp_path / "models")
    registry.add(source, name="tiny")
    return tmp_path / "models"


def test_predict_segments_a_dicom_folder_into_a_seg_per_series(
    tmp_path, dicom_factory, tiny_registry, capsys
):
    from medsegdiff_training.cli import main

    folder = tmp_path / "study"
    first = dicom_factory.ct_series(folder, dicom_factory.phantom((3, 24, 20)), description="one", seed=1)
    dicom_factory.ct_series(
        folder / "two", dicom_factory.phantom((2, 16, 16)), description="two", series_number=2
    )
    code = main(
        ["predict", str(folder), "--out", str(tmp_path / "out"), "--registry", str(tiny_registry),
         "--model", "tiny", "--steps", "1", "--ensemble", "1", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["study.dcm", "study_2.dcm"]
    segs = [hd.seg.segread(tmp_path / "out" / name) for name in written]
    referenced = {s.ReferencedSeriesSequence[0].SeriesInstanceUID for s in segs}
    assert first["series_uid"] in referenced and len(referenced) == 2
    one = next(s for s in segs if s.ReferencedSeriesSequence[0].SeriesInstanceUID == first["series_uid"])
    assert one.SegmentSequence[0].SegmentAlgorithmName == "MedSegDiff"
    assert one.get_pixels_by_source_instance(first["sop_uids"], combine_segments=True).shape == (3, 24, 20)


def test_evaluate_reads_dicom_images(tmp_path, dicom_factory, tiny_registry, capsys):
    import json

    from PIL import Image

    from medsegdiff_training.cli import main

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for index in range(2):
        image = np.zeros((1, 20, 24), np.int16)
        image[0, 5:12, 6:15] = 200
        dicom_factory.ct_series(tmp_path / f"slice{index}", image)
        [file] = (tmp_path / f"slice{index}").iterdir()
        file.rename(tmp_path / "images" / f"case{index}.dcm")
        Image.fromarray(((image[0] > 100) * 255).astype(np.uint8)).save(
            tmp_path / "masks" / f"case{index}.png"
        )
    capsys.readouterr()
    code = main(
        ["evaluate", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
         "--json", "--registry", str(tiny_registry), "--model", "tiny", "--steps", "1",
         "--ensemble", "1", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
