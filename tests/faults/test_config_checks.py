"""Class 4: every config.json field is checked before anything is built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.errors import CheckpointError

SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu")

BAD_FIELDS = {
    "huge-base-channels": ("model", "base_channels", 1_000_000),
    "huge-image": ("model", "image_size", [100_000, 100_000]),
    "big-image-memory": ("model", "image_size", [8192, 8192]),
    "huge-timesteps": ("diffusion", "timesteps", 10**12),
    "groups-zero": ("model", "groups", 0),
    "negative-width": ("model", "base_channels", -8),
    "mults-text": ("model", "channel_mults", "abc"),
    "mults-negative": ("model", "channel_mults", [1, -2, 2]),
    "blocks-nested": ("model", "encoder_blocks", [[1], [1], [1]]),
    "channels-bool": ("model", "image_channels", True),
    "classes-fraction": ("model", "num_classes", 2.5),
    "dropout-big": ("model", "dropout", 5),
    "unknown-key": ("model", "depth", 3),
    "beta-nan": ("diffusion", "beta_end", float("nan")),
    "beta-inf": ("diffusion", "beta_start", float("inf")),
    "beta-order": ("diffusion", "beta_start", 0.5),
    "schedule-unknown": ("diffusion", "schedule", "quadratic"),
    "normalisation-unknown": ("preprocess", "normalisation", "histogram"),
    "resize-number": ("preprocess", "resize", 3),
    "format-version-text": (None, "format_version", "one"),
    "format-version-zero": (None, "format_version", 0),
    "format-version-newer": (None, "format_version", 99),
    "model-list": (None, "model", [1, 2]),
    "metrics-deep": (None, "metrics", None),
}


def _bad_checkpoint(tmp_path: Path, make_checkpoint, case: str) -> Path:
    folder = make_checkpoint(tmp_path / case)
    document = json.loads((folder / "config.json").read_text())
    section, key, value = BAD_FIELDS[case]
    if case == "metrics-deep":
        value = {}
        for _ in range(100):
            value = {"a": value}
    (document if section is None else document[section])[key] = value
    (folder / "config.json").write_text(json.dumps(document))  # NaN and Infinity as Python writes them
    return folder


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_a_bad_config_field_is_one_line_naming_it(case, tmp_path, make_checkpoint, run_cli):
    folder = _bad_checkpoint(tmp_path, make_checkpoint, case)
    line = run_cli("info", "--model", folder).one_line_error()
    assert "config.json" in line or "format" in line
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)


@pytest.mark.parametrize("case", ["beta-nan", "huge-base-channels", "normalisation-unknown"])
def test_predict_refuses_a_bad_config_instead_of_writing_a_mask(
    case, tmp_path, make_checkpoint, run_cli, image_file
):
    folder = _bad_checkpoint(tmp_path, make_checkpoint, case)
    outcome = run_cli("predict", image_file, "--out", tmp_path / "out", "--model", folder, *SAMPLING)
    outcome.one_line_error()
    assert not (tmp_path / "out" / "square.png").exists()


def test_a_bad_config_cannot_be_registered(tmp_path, make_checkpoint, registry):
    folder = _bad_checkpoint(tmp_path, make_checkpoint, "beta-nan")
    with pytest.raises(CheckpointError):
        registry.add(folder, name="nan")
    assert "nan" not in registry.names()


def test_training_refuses_an_absurd_image_size_before_building_the_model(tmp_path, run_cli, image_file):
    line = run_cli(
        "train", "--images", image_file.parent, "--masks", image_file.parent, "--out", tmp_path / "run",
        "--steps", "1", "--image-size", "6000", "--config", "tiny",
    ).one_line_error()  # fmt: skip
    assert "GiB" in line and "image_size" in line
    assert not (tmp_path / "run").exists()
