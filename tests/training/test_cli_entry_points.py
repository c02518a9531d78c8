"""Every ``medsegdiff`` option a user types, run end to end on tiny models and data.

In-process through ``main(argv)`` (the same code the console script runs), except the cancel
test, which needs a real process to send a signal to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsegdiff_training.checkpoint import read_checkpoint_config, save_checkpoint
from medsegdiff_training.cli import main
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.io import read_array, read_nifti
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry

TINY = named_config("tiny")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def square_pair(rng: np.random.Generator, size: int = 36, rgb: bool = False, classes: int = 2):
    mask = np.zeros((size, size), np.uint8)
    row, col = rng.integers(10, size - 10, 2)
    mask[row - 6 : row + 6, col - 6 : col + 6] = 1
    if classes == 3:
        mask[row - 2 : row + 2, col - 2 : col + 2] = 2
    image = (rng.normal(70, 15, (size, size)) + (mask > 0) * 110).clip(0, 255).astype(np.uint8)
    if rgb:
        image = np.stack([image, image // 2, 255 - image], axis=-1)
    return image, (mask * 255 if classes == 2 else mask)


def write_folder(root: Path, count: int, **kind) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image, mask = square_pair(rng, **kind)
        Image.fromarray(image).save(root / "images" / f"case{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"case{index}.png")
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MEDSEGDIFF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def registry(tmp_path, home) -> ModelRegistry:
    torch.manual_seed(0)
    source = save_checkpoint(
        tmp_path / "tiny",
        MedSegDiffUNet(TINY),
        DiffusionConfig(),
        PreprocessConfig(),
        description="tiny test model",
    )
    registry = ModelRegistry(tmp_path / "models")
    registry.add(source, name="tiny")
    registry.select("tiny")
    return registry


@pytest.fixture
def data(tmp_path) -> Path:
    return write_folder(tmp_path / "data", 3)


# -- info ---------------------------------------------------------------------------------


def test_info_without_options_names_the_registry_and_its_versions(capsys, registry, home):
    code, out, _ = run(capsys, "info", "--registry", registry.root)
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["registry"] == str(registry.root) and lines["selected_model"] == "tiny"
    assert "tiny" in lines["versions"] and lines["data_home"] == str(home)
    code, out, _ = run(capsys, "info", "--registry", registry.root, "--json")
    document = json.loads(out)
    assert document["selected_model"] == "tiny" and document["corrections"] == 0
    assert document["threads"] == torch.get_num_threads() and "cpu" in document["devices"]


def test_info_with_a_model_describes_that_version(capsys, registry):
    code, out, _ = run(capsys, "info", "--model", "tiny", "--registry", registry.root)
    assert code == 0
    assert out.splitlines()[0] == "model tiny: tiny test model"
    assert "32x32" in out or "(32, 32)" in out


# -- evaluate -----------------------------------------------------------------------------


def test_evaluate_prints_a_text_summary_and_limit_takes_the_first_images(capsys, registry, data):
    argv = ["evaluate", "--images", data / "images", "--masks", data / "masks", "--steps", "1"]
    code, out, err = run(capsys, *argv, "--registry", registry.root, "--limit", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "tiny on 2 images (ddim, 1 steps, ensemble 5)"
    assert lines[1].split()[:2] == ["mean", "Dice"] and lines[2].split()[:3] == ["class", "1", "Dice"]
    code, out, _ = run(capsys, *argv, "--registry", registry.root, "--json", "--per-image", "--limit", "2")
    report = json.loads(out)
    assert [image["name"] for image in report["per_image"]] == ["case0", "case1"]
    text_dice = float(lines[1].split()[2])
    assert text_dice == pytest.approx(report["mean"]["dice"], abs=5e-4)  # the same run, printed


# -- predict ------------------------------------------------------------------------------


def test_predict_format_overwrite_and_a_checkpoint_folder_as_model(capsys, tmp_path, registry, data):
    image = data / "images" / "case0.png"
    out_dir = tmp_path / "out"
    base = ["predict", image, "--out", out_dir, "--steps", "1", "--ensemble", "1"]
    code, out, err = run(capsys, *base, "--format", "tiff", "--registry", registry.root)
    assert code == 0, err and out.strip() == str(out_dir / "case0.tif")
    first = read_array(out_dir / "case0.tif")
    assert first.shape == (36, 36)
    code, _, err = run(capsys, *base, "--format", "tiff", "--registry", registry.root)
    assert code == 1 and "exists already" in err
    # --overwrite rewrites it, here with the checkpoint folder itself as the model
    (out_dir / "case0.tif").write_bytes(b"stale")
    code, out, err = run(
        capsys, *base, "--format", "tiff", "--overwrite", "--model", registry.get("tiny").path
    )
    assert code == 0, err
    assert np.array_equal(read_array(out_dir / "case0.tif"), first)  # same model, same seed
    code, out, err = run(capsys, *base, "--format", "nifti", "--registry", registry.root)
    assert code == 0, err
    labels, _, _ = read_nifti(out_dir / "case0.nii.gz")
    assert np.array_equal(np.squeeze(labels).T if labels.shape != first.shape else labels, first)


@pytest.mark.slow
def test_cancelling_predict_exits_130_and_keeps_what_it_wrote(tmp_path, registry):
    inputs = write_folder(tmp_path / "many", 12)
    env = {**os.environ, "MEDSEGDIFF_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "medsegdiff_training", "predict", str(inputs / "images"), "--out",
         str(tmp_path / "out"), "--steps", "20", "--ensemble", "1", "--batch-size", "1",
         "--registry", str(registry.root)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    while "segmented" not in (line := process.stderr.readline()):  # the first image is done
        assert line, "predict ended before its first progress line"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    written = sorted((tmp_path / "out").iterdir())
    assert 1 <= len(written) < 12 and [line for line in out.splitlines()] == [str(p) for p in written]


# -- train --------------------------------------------------------------------------------


def test_train_without_a_split_detects_classes_and_channels(capsys, tmp_path):
    data = write_folder(tmp_path / "rgb3", 3, rgb=True, classes=3)
    code, _, err = run(
        capsys, "train", "--images", data / "images", "--masks", data / "masks", "--config", "tiny",
        "--steps", "1", "--batch-size", "2", "--val-fraction", "0", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, err
    assert "3 training and 0 validation images" in err and "3 channel(s), 3 classes" in err
    model = read_checkpoint_config(tmp_path / "run" / "final")["model"]
    assert model["image_channels"] == 3 and model["num_classes"] == 3


def test_train_resumes_its_run_folder_unless_fresh_and_records_the_minutes_budget(capsys, tmp_path, data):
    argv = ["train", "--images", data / "images", "--masks", data / "masks", "--config", "tiny",
            "--batch-size", "2", "--val-fraction", "0", "--out", tmp_path / "run",
            "--progress-json"]  # fmt: skip

    def steps_run(*extra) -> list[int]:
        code, out, err = run(capsys, *argv, *extra)
        assert code == 0, err
        return [e["step"] for e in map(json.loads, out.splitlines()) if e["event"] == "progress"]

    assert steps_run("--steps", "2") == [1, 2]
    assert steps_run("--steps", "3") == [3]  # resumed at step 2
    assert steps_run("--steps", "2", "--fresh", "--minutes", "60") == [1, 2]  # the steps came first
    training = read_checkpoint_config(tmp_path / "run" / "final")["training"]
    assert training["steps"] == 2 and training["config"]["minutes"] == 60.0


# -- finetune -----------------------------------------------------------------------------


def test_finetune_names_selects_and_takes_the_budget_and_loss_weight(capsys, tmp_path, registry, home):
    store = CorrectionsStore(home / "corrections")
    rng = np.random.default_rng(3)
    for _ in range(2):
        image, mask = square_pair(rng)
        store.add(image, mask // 255)
    code, out, err = run(
        capsys, "finetune", "--steps", "2", "--minutes", "30", "--mask-loss-weight", "0.5", "--name",
        "corrected", "--select", "--registry", registry.root, "--device", "cpu", "--run-dir", tmp_path / "ft",
    )  # fmt: skip
    assert code == 0, err
    assert registry.selected() == "corrected" and registry.get("corrected").parent == "tiny"
    training = read_checkpoint_config(registry.get("corrected").path)["training"]
    assert training["config"]["mask_loss_weight"] == 0.5 and training["config"]["minutes"] == 30.0
    assert training["steps"] == 2


# -- models -------------------------------------------------------------------------------


def test_models_show_as_text_and_rollback_to_a_named_version(capsys, tmp_path, registry):
    child = save_checkpoint(tmp_path / "child", MedSegDiffUNet(TINY), DiffusionConfig(), PreprocessConfig())
    registry.add(child, name="child", parent="tiny", metrics={"validation_dice_after": 0.75})
    registry.select("child")
    code, out, _ = run(capsys, "models", "show", "child", "--registry", registry.root)
    assert code == 0
    fields = {line[:15].strip(): line[16:] for line in out.splitlines()}
    assert fields["name"] == "child" and fields["parent"] == "tiny" and fields["selected"] == "True"
    assert fields["path"] == str(registry.get("child").path)
    assert "metric          validation_dice_after = 0.75" in out.splitlines()
    code, out, _ = run(capsys, "models", "rollback", "tiny", "--registry", registry.root)
    assert code == 0 and out.strip() == "Selected tiny (was child)."
    assert ModelRegistry(registry.root).selected() == "tiny"
