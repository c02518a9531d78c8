"""Issue 28, class 9: messages that misled now say what is wrong, and say it first."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import InvalidImageError

from .conftest import SAMPLING


def _labels(value: int = 1) -> np.ndarray:
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 5:20] = value
    return labels


@pytest.fixture
def pairs(tmp_path):
    """Two image/mask pairs: a.png, b.png."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((40, 36), 90, np.uint8)).save(images / name)
        mask = np.zeros((40, 36), np.uint8)
        mask[10:20, 10:20] = 255
        Image.fromarray(mask).save(masks / name)
    return images, masks


def _remove_position(path) -> None:
    import pydicom

    dataset = pydicom.dcmread(path)
    del dataset.ImagePositionPatient
    dataset.save_as(path)


def test_a_series_slice_without_a_position_is_said_before_segmenting(
    tmp_path, dicom_factory, run_cli, registry
):
    folder = tmp_path / "ct"
    dicom_factory.ct_series(folder, dicom_factory.phantom((4, 24, 20)))
    _remove_position(sorted(folder.glob("*.dcm"))[1])
    line = run_cli(
        "predict", folder, "--out", tmp_path / "out", "--model", "good", "--registry", registry.root,
        *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "ImagePositionPatient" in line and "1 of its 4 images" in line  # was "Plane positions must not..."
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_huge_rescale_slope_is_one_line_and_no_numpy_warning(
    tmp_path, dicom_factory, run_process, registry
):
    folder = tmp_path / "ct"
    dicom_factory.ct_series(folder, dicom_factory.phantom((3, 24, 20)), slope=1e38)
    done = run_process(
        "predict", folder, "--out", tmp_path / "out", "--model", "good", "--registry", registry.root,
        *SAMPLING,
    )  # fmt: skip
    lines = [line for line in done.stderr.decode().splitlines() if not line.startswith("Segmenting")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr  # no "RuntimeWarning: overflow" first
    assert lines[0].startswith("medsegdiff: error: ") and "RescaleSlope" in lines[0]


def test_a_finetune_refusal_names_the_correction(tmp_path, run_cli, registry):
    store = CorrectionsStore(tmp_path / "store")
    store.add(np.ones((40, 50)), _labels(1))
    bad = store.add(np.ones((40, 50)), _labels(5))
    line = run_cli(
        "finetune", "--store", store.root, "--parent", "good", "--num-classes", "3", "--steps", "1",
        "--registry", registry.root, "--run-dir", tmp_path / "run", "--device", "cpu",
    ).one_line_error()  # fmt: skip
    assert bad.id in line and "label 5" in line


def test_a_channel_change_that_cannot_be_made_says_why(tmp_path, run_cli, registry):
    store = CorrectionsStore(tmp_path / "store")
    store.add(np.random.default_rng(0).random((40, 50, 2)), _labels())  # a 2-channel image
    line = run_cli(
        "finetune", "--store", store.root, "--parent", "good", "--steps", "1", "--registry", registry.root,
        "--run-dir", tmp_path / "run", "--device", "cpu",
    ).one_line_error()  # fmt: skip
    # was: "A 1-channel parent can become a 3-channel (RGB) model only from a 1-channel one"
    assert "grey (1) to RGB (3)" in line and "2-channel" in line and "1-channel" in line


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_an_image_that_cannot_be_trained_on_is_refused_when_exported(fill, tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    with pytest.raises(InvalidImageError, match="NaN or infinite"):
        store.add(np.full((40, 50), fill), _labels())
    assert len(store) == 0


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_a_limit_below_one_is_refused(limit, pairs, tmp_path, run_cli, registry):
    images, masks = pairs
    for command in (
        ("evaluate", "--images", images, "--masks", masks),
        ("simulate-annotation", "--images", images, "--masks", masks, "--out", tmp_path / "sim.json"),
    ):
        line = run_cli(*command, "--limit", limit, "--model", "good", "--registry", registry.root, *SAMPLING)
        assert "--limit" in line.one_line_error()


def test_simulate_annotation_refuses_a_folder_as_out_before_simulating(pairs, tmp_path, run_cli, registry):
    images, masks = pairs
    out = tmp_path / "results"
    out.mkdir()
    line = run_cli(
        "simulate-annotation", "--images", images, "--masks", masks, "--out", out, "--model", "good",
        "--registry", registry.root, *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "--out" in line and "folder" in line
    assert not (tmp_path / "results.store").exists()  # nothing was simulated


def test_predict_boxes_on_dicom_points_at_format(tmp_path, dicom_factory, run_cli, registry):
    image = tmp_path / "us.dcm"
    dicom_factory.colour_image(image, np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\nus.dcm,5,5,30,30\n")
    arguments = ("--boxes", boxes, "--model", "good", "--registry", registry.root, *SAMPLING)
    line = run_cli("predict", image, "--out", tmp_path / "out", *arguments).one_line_error()
    assert "--format" in line
    assert run_cli("predict", image, "--out", tmp_path / "out", "--format", "tiff", *arguments).code == 0


def test_predict_boxes_given_a_folder_says_it_is_a_folder(tmp_path, run_cli, registry, image_file):
    line = run_cli(
        "predict", image_file, "--boxes", tmp_path, "--out", tmp_path / "out", "--model", "good",
        "--registry", registry.root, *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "is a folder" in line and "does not exist" not in line


def test_sigterm_during_a_simulated_finetune_says_it_stopped(pairs, tmp_path, run_cli, registry, monkeypatch):
    from medsegdiff_training import trainer

    step = trainer._Run.train_step

    def one_step_then_sigterm(self):  # a real SIGTERM, once the fine-tune has taken a step
        loss = step(self)
        os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(trainer._Run, "train_step", one_step_then_sigterm)
    images, masks = pairs
    outcome = run_cli(
        "simulate-annotation", "--images", images, "--masks", masks, "--out", tmp_path / "sim.json",
        "--finetune-every", "1", "--steps-per-finetune", "50", "--model", "good", "--registry", registry.root,
        *SAMPLING,
    )  # fmt: skip
    assert outcome.code == 130, outcome.err
    assert "fine-tuned None" not in outcome.err
    assert "fine-tune stopped after 1 steps; nothing registered, kept good" in outcome.err
