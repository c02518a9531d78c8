"""Classes 5 and 6: decompression bombs are refused; one file is read one way by every command."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import nibabel
import numpy as np
import pytest
import tifffile
from PIL import Image

from medsegdiff_training.config import named_config
from medsegdiff_training.data.dataset import SegmentationDataset
from medsegdiff_training.data.io import read_array
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.errors import DatasetError

SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu", "--model", "good")


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG whose header declares width x height (and whose data is cut short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    )
    return path


def _nifti_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


BOMBS = {
    "tiff": lambda p: (
        tifffile.imwrite(p / "bomb.tif", shape=(16000, 16000), dtype=np.uint8) or p / "bomb.tif"
    ),
    "png": lambda p: _png_declaring(p / "bomb.png", 20000, 20000),
    "nifti": lambda p: _nifti_declaring(p / "bomb.nii", (20000, 20000, 1)),
    "nifti-volume": lambda p: _nifti_declaring(p / "bomb.nii", (2000, 2000, 2000)),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_file_declaring_a_huge_image_is_refused_before_decoding(kind, tmp_path, run_cli, registry):
    folder = tmp_path / "in"
    folder.mkdir()
    bomb = BOMBS[kind](folder)
    assert bomb.stat().st_blocks * 512 < 1_000_000  # small on disk
    line = run_cli(
        "predict", bomb, "--out", tmp_path / "out", "--registry", registry.root, *SAMPLING
    ).one_line_error()
    assert "MEDSEGDIFF_MAX_PIXELS" in line and "pixels" in line
    with pytest.raises(DatasetError, match="MEDSEGDIFF_MAX_PIXELS"):
        read_array(bomb)


@pytest.mark.parametrize("suffix", [".tif", ".png", ".nii.gz"])
def test_the_pixel_limit_is_set_by_an_environment_variable(suffix, tmp_path, monkeypatch):
    path = tmp_path / f"image{suffix}"
    image = np.zeros((64, 64), np.uint8)
    if suffix == ".tif":
        tifffile.imwrite(path, image)
    elif suffix == ".png":
        Image.fromarray(image).save(path)
    else:
        nibabel.save(nibabel.Nifti1Image(image, np.eye(4)), path)
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", "4000")
    with pytest.raises(DatasetError, match="4,096 pixels"):
        read_array(path)
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", "4096")
    assert read_array(path).shape == (64, 64)
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", "lots")
    with pytest.raises(DatasetError, match="MEDSEGDIFF_MAX_PIXELS"):
        read_array(path)


def test_the_plugin_reader_applies_the_same_limit(tmp_path, monkeypatch):
    from napari_medsegdiff._io import read

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 40, 40), np.uint8), photometric="minisblack")
    assert read(str(path))[0][0].shape == (3, 40, 40)
    monkeypatch.setenv("MEDSEGDIFF_MAX_PIXELS", "1000")
    with pytest.raises(DatasetError, match="MEDSEGDIFF_MAX_PIXELS"):
        read(str(path))


# -- one reading rule -------------------------------------------------------------------


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".nii.gz"):
        nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)
    elif path.suffix == ".tif":
        tifffile.imwrite(path, array, photometric="minisblack")
    else:
        Image.fromarray(array).save(path)
    return path


def _pair(tmp_path: Path, name: str, image: np.ndarray, mask: np.ndarray) -> tuple[Path, Path]:
    return _write(tmp_path / "images" / name, image), _write(tmp_path / "masks" / name, mask)


CASES = {  # file name, image shape, how many 2D slices every command must see
    "tiff-5-planes-last": ("stack.tif", (32, 30, 5), 32),
    "tiff-stack": ("stack.tif", (6, 32, 30), 6),
    "tiff-rgb": ("rgb.tif", (32, 30, 3), 1),
    "nifti-3-slices": ("scan.nii.gz", (32, 30, 3), 3),
    "nifti-2d": ("scan.nii.gz", (32, 30), 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_predict_evaluate_and_training_read_a_file_the_same_way(case, tmp_path, run_cli, registry):
    name, shape, slices = CASES[case]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    mask_shape = shape[:2] if case == "tiff-rgb" else shape
    mask = np.zeros(mask_shape, np.uint8)
    mask[..., 4:12, 4:12] = 1 if len(mask_shape) == 2 or case.startswith("tiff") else 0
    if case.startswith("nifti") and len(shape) == 3:
        mask[4:12, 4:12, :] = 1
    image_path, _ = _pair(tmp_path, name, image, mask)
    predicted = run_cli(
        "predict", image_path, "--out", tmp_path / "out", "--registry", registry.root, *SAMPLING
    )
    assert predicted.code == 0, predicted.err
    labels = read_array(next((tmp_path / "out").iterdir()))
    assert labels.shape == mask_shape
    scored = run_cli(
        "evaluate", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--json",
        "--per-image", "--registry", registry.root, *SAMPLING,
    )  # fmt: skip
    assert scored.code == 0, scored.err
    assert json.loads(scored.out)["images"] == slices
    pairs = find_pairs(tmp_path / "images", tmp_path / "masks")
    assert len(SegmentationDataset.from_pairs(pairs, named_config("tiny"))) == slices


@pytest.mark.parametrize("mask_shape", [(40, 36 + 1), (20, 18), (36, 40)])
def test_evaluate_refuses_a_mask_whose_shape_differs_from_its_image(mask_shape, tmp_path, run_cli, registry):
    _pair(tmp_path, "a.png", np.full((40, 36), 90, np.uint8), np.zeros(mask_shape, np.uint8))
    line = run_cli(
        "evaluate", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
        "--registry", registry.root, *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "shape" in line and "a.png" in line


def test_evaluate_reports_mask_values_a_binary_model_does_not_expect(tmp_path, run_cli, registry):
    mask = np.zeros((40, 36), np.uint8)
    mask[5:10, 5:10], mask[20:30, 20:30] = 1, 200
    _pair(tmp_path, "odd.png", np.full((40, 36), 90, np.uint8), mask)
    _pair(tmp_path, "fine.png", np.full((40, 36), 90, np.uint8), (mask > 0).astype(np.uint8) * 255)
    scored = run_cli(
        "evaluate", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--json",
        "--registry", registry.root, *SAMPLING,
    )  # fmt: skip
    assert scored.code == 0
    warnings = [line for line in scored.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "odd" in warnings[0] and "200" in warnings[0] and "fine" not in warnings[0]
    assert json.loads(scored.out)["warnings"]
