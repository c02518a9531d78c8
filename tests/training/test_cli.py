"""The ``medsegdiff`` command line, run in-process through ``main(argv)`` and as real processes."""

from __future__ import annotations

import hashlib
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

from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.cli import main
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.io import read_array, read_nifti
from medsegdiff_training.finetune_events import (
    FinetuneCancelled,
    FinetuneDone,
    FinetuneEvent,
    FinetuneProgress,
    FinetuneStarted,
)
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry

TINY = named_config("tiny")


@pytest.fixture
def dataset(tmp_path, blob_data) -> Path:
    """The DDTI layout in small: PNG images, GIF 0/255 masks, a split.csv without header."""
    return blob_data.folder(tmp_path / "data", 8, mask_suffix=".gif", train=6)


@pytest.fixture
def registry(tmp_path, medsegdiff_home) -> ModelRegistry:
    torch.manual_seed(0)
    source = save_checkpoint(tmp_path / "tiny", MedSegDiffUNet(TINY), DiffusionConfig(), PreprocessConfig())
    registry = ModelRegistry(tmp_path / "models")
    registry.add(source, name="tiny")
    registry.select("tiny")
    return registry


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_train_register_predict_evaluate_finetune(blob_data, capsys, tmp_path, dataset, medsegdiff_home):
    models = tmp_path / "models"
    code, out, err = run(
        capsys,
        "train",
        "--images",
        dataset / "images",
        "--masks",
        dataset / "masks",
        "--split-csv",
        dataset / "split.csv",
        "--split",
        "train",
        "--val-split",
        "test",
        "--config",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--validate-every",
        "2",
        "--validation-images",
        "2",
        "--out",
        tmp_path / "run",
        "--registry",
        models,
        "--register",
        "first",
        "--select",
    )
    assert code == 0, err
    assert "6 training and 2 validation images" in err and "registered as first" in out
    code, out, _ = run(capsys, "models", "list", "--json", "--registry", models)
    listing = json.loads(out)
    assert listing["selected"] == "first" and [v["name"] for v in listing["versions"]][-1] == "first"

    code, out, err = run(
        capsys,
        "predict",
        dataset / "images",
        "--out",
        tmp_path / "predicted",
        "--steps",
        "2",
        "--registry",
        models,
    )
    assert code == 0, err
    written = sorted((tmp_path / "predicted").iterdir())
    assert [p.name for p in written] == [f"case{i}.png" for i in range(8)]
    labels = read_array(written[0])
    assert labels.shape == (36, 36) and set(np.unique(labels).tolist()) <= {0, 255}

    code, out, err = run(
        capsys,
        "evaluate",
        "--images",
        dataset / "images",
        "--masks",
        dataset / "masks",
        "--split-csv",
        dataset / "split.csv",
        "--split",
        "test",
        "--model",
        "first",
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--ensemble",
        "2",
        "--batch-size",
        "2",
        "--json",
        "--registry",
        models,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 2 and report["model"] == "first"
    assert set(report["mean"]) == {"dice", "iou", "hd95", "dice_5threshold"}
    assert set(report["per_class"]["1"]) == {"dice", "iou", "hd95"}
    assert 0 <= report["mean"]["dice"] <= 1 and report["settings"]["ensemble"] == 2

    # the run recorded where its data came from, so --mix-original needs no folders
    CorrectionsStore(medsegdiff_home / "corrections").add(*blob_data.pair(np.random.default_rng(5)))
    code, out, err = run(
        capsys,
        "finetune",
        "--parent",
        "first",
        "--steps",
        "2",
        "--mix-original",
        "--registry",
        models,
        "--progress-json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    events = [FinetuneEvent.parse(line) for line in out.splitlines()]  # each exactly one of ours
    assert isinstance(events[0], FinetuneStarted) and events[0].parent == "first"
    assert isinstance(events[-1], FinetuneDone) and events[-1].parent == "first"
    assert all(isinstance(e, FinetuneProgress) for e in events[1:-1]) and events[-2].step == 2


def test_train_takes_the_diffusion_settings_and_evaluate_can_stay_in_float32(capsys, tmp_path, dataset):
    data = [
        "--images",
        dataset / "images",
        "--masks",
        dataset / "masks",
        "--split-csv",
        dataset / "split.csv",
    ]
    code, _, err = run(
        capsys,
        "train",
        *data,
        "--split",
        "train",
        "--config",
        "tiny",
        "--steps",
        "2",
        "--prediction",
        "v",
        "--schedule",
        "cosine",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["diffusion"]["prediction"] == "v" and saved["diffusion"]["schedule"] == "cosine"
    code, out, err = run(
        capsys, "evaluate", *data, "--split", "test", "--model", tmp_path / "run" / "final",
        "--steps", "2", "--json", "--no-amp", "--per-image",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    # --no-amp scores exactly what the core scores with a float32 Segmenter and the same settings
    from medsegdiff_training.checkpoint import load_checkpoint
    from medsegdiff_training.data.pairs import find_pairs
    from medsegdiff_training.evaluation import evaluate_pairs
    from medsegdiff_training.inference import SamplingSettings, Segmenter

    segmenter = Segmenter(load_checkpoint(tmp_path / "run" / "final"), device="cpu", amp=False)
    expected = evaluate_pairs(
        segmenter,
        find_pairs(dataset / "images", dataset / "masks", dataset / "split.csv", "test"),
        SamplingSettings(**report["settings"]),
    )
    assert report["mean"]["dice"] == pytest.approx(expected.summary["dice"], abs=1e-9)
    assert [image["dice"] for image in report["per_image"]] == pytest.approx(
        [image["dice"] for image in expected.per_image], abs=1e-9
    )


def test_predict_keeps_volumes_whole_and_the_nifti_affine(capsys, tmp_path, registry):
    import nibabel
    import tifffile

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10, -4, 3]
    nibabel.save(
        nibabel.Nifti1Image(np.random.rand(30, 26, 3).astype(np.float32), affine), str(inputs / "scan.nii.gz")
    )
    tifffile.imwrite(
        inputs / "stack.tif", np.random.rand(2, 30, 26).astype(np.float32), photometric="minisblack"
    )
    code, out, err = run(
        capsys,
        "predict",
        inputs / "scan.nii.gz",
        inputs / "stack.tif",
        "--out",
        tmp_path / "out",
        "--steps",
        "2",
        "--ensemble",
        "2",
        "--uncertainty",
        "--registry",
        registry.root,
    )
    assert code == 0, err
    labels, written_affine, zooms = read_nifti(tmp_path / "out" / "scan.nii.gz")
    assert (
        labels.shape == (30, 26, 3)
        and np.allclose(written_affine, affine)
        and np.allclose(zooms, (0.5, 0.7, 2.0))
    )
    assert read_array(tmp_path / "out" / "stack.tif").shape == (2, 30, 26)
    assert read_array(tmp_path / "out" / "stack_uncertainty.tif").shape == (2, 30, 26)
    code, _, err = run(
        capsys, "predict", inputs / "stack.tif", "--out", tmp_path / "out", "--registry", registry.root
    )
    assert code == 1 and "exists already" in err


def test_models_select_rollback_rename_delete(capsys, tmp_path, registry):
    source = save_checkpoint(tmp_path / "child", MedSegDiffUNet(TINY), DiffusionConfig(), PreprocessConfig())
    registry.add(source, name="child", parent="tiny")
    root = registry.root
    assert run(capsys, "models", "select", "child", "--registry", root)[0] == 0
    code, out, _ = run(capsys, "models", "--registry", root, "rollback", "--json")
    assert code == 0 and json.loads(out) == {"selected": "tiny", "previous": "child"}
    assert run(capsys, "models", "rename", "child", "better", "--registry", root)[0] == 0
    code, out, _ = run(capsys, "models", "show", "better", "--json", "--registry", root)
    shown = json.loads(out)
    assert shown["parent"] == "tiny" and shown["checkpoint"]["model"]["name"] == "tiny"
    assert run(capsys, "models", "delete", "better", "--registry", root)[0] == 0
    code, out, _ = run(capsys, "models", "list", "--registry", root)
    assert code == 0 and "better" not in out
    assert [line for line in out.splitlines() if line.startswith("*")][0].split()[
        1
    ] == "tiny"  # * marks the selected version


def test_info_describes_an_architecture(capsys):
    code, out, _ = run(capsys, "info", "--config", "tiny")
    assert code == 0 and "parameters" in out
    code, out, _ = run(capsys, "info", "--config", "tiny", "--num-classes", "3", "--json")
    assert json.loads(out)["config"]["num_classes"] == 3 and json.loads(out)["parameters"] > 1000


def user_errors(tmp_path: Path, dataset: Path, registry: ModelRegistry) -> dict[str, tuple[list, str]]:
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    broken = registry.root / "tiny"
    corrupt = registry.add(broken, name="corrupt")
    (corrupt.path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{truncated")
    pickled = tmp_path / "weights.pt"
    pickled.write_bytes(b"\x80\x04")
    train = ["train", "--config", "tiny", "--steps", "1", "--out", tmp_path / "run"]
    evaluate = [
        "evaluate",
        "--images",
        dataset / "images",
        "--masks",
        dataset / "masks",
        "--registry",
        registry.root,
    ]
    return {
        "missing folder": (
            train + ["--images", tmp_path / "nowhere", "--masks", dataset / "masks"],
            "does not exist",
        ),
        "no matching pairs": (
            train + ["--images", empty / "images", "--masks", empty / "masks"],
            "No matching image/mask pairs",
        ),
        "unknown split": (evaluate + ["--split-csv", dataset / "split.csv", "--split", "val"], "Split 'val'"),
        "unknown model": (evaluate + ["--model", "nope"], "Unknown model version 'nope'"),
        "malformed structures": (evaluate + ["--structures", "disc"], "is not a structure"),
        "structure beyond the classes": (evaluate + ["--structures", "disc=1+2"], "has classes 0..1"),
        "corrupt checkpoint": (evaluate + ["--model", "corrupt"], "corrupt or truncated"),
        "pickled checkpoint": (
            ["predict", dataset / "images", "--out", tmp_path / "o", "--model", pickled],
            "never unpickles",
        ),
        "empty corrections store": (
            ["finetune", "--store", empty, "--registry", registry.root],
            "no corrections",
        ),
        "no budget": (
            train[:1]
            + [
                "--config",
                "tiny",
                "--out",
                tmp_path / "r",
                "--images",
                dataset / "images",
                "--masks",
                dataset / "masks",
            ],
            "budget",
        ),
    }


def test_evaluate_scores_named_unions_of_classes(capsys, tmp_path, medsegdiff_home):
    """--structures disc=1+2,cup=2: what fundus papers compare (the disc is rim + cup), not the rim."""
    root = tmp_path / "three"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        labels = np.zeros((36, 36), np.uint8)
        labels[8:28, 8:28] = 1  # rim
        labels[14:22, 14:22] = 2  # cup inside it
        image = (rng.normal(60, 10, labels.shape) + labels * 70).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"eye{index}.png")
        Image.fromarray(labels).save(root / "masks" / f"eye{index}.png")
    torch.manual_seed(0)
    model = save_checkpoint(
        tmp_path / "k3",
        MedSegDiffUNet(named_config("tiny", num_classes=3)),
        DiffusionConfig(),
        PreprocessConfig(),
    )
    data = ["--images", root / "images", "--masks", root / "masks", "--model", model, "--steps", "1"]
    options = [*data, "--ensemble", "1", "--structures", "disc=1+2,cup=2"]
    code, out, _ = run(capsys, "evaluate", *options, "--json", "--per-image")
    assert code == 0
    document = json.loads(out)
    assert list(document["per_class"]) == ["1", "2"]  # rim and cup, as before
    disc, cup = document["structures"]["disc"], document["structures"]["cup"]
    assert disc["classes"] == [1, 2] and cup["classes"] == [2]
    per_image = document["per_image"]
    assert disc["dice"] == pytest.approx(np.mean([s["disc_dice"] for s in per_image]))
    assert cup["dice"] == pytest.approx(document["per_class"]["2"]["dice"])  # one class: the same score
    code, out, _ = run(capsys, "evaluate", *options)
    assert code == 0
    assert "  disc (1+2) Dice " in out and "  cup (2)    Dice " in out and "  class 2    Dice " in out


def test_every_user_error_is_one_line_and_exit_code_1(capsys, tmp_path, dataset, registry):
    for case, (argv, expected) in user_errors(tmp_path, dataset, registry).items():
        code, out, err = run(capsys, *argv)
        assert code == 1, case
        assert err.count("\n") == 1 and err.startswith("medsegdiff: error: "), (case, err)
        assert expected in err, (case, err)
        assert out == "", case


def test_with_progress_json_an_error_is_also_an_event(capsys, tmp_path, registry):
    code, out, err = run(
        capsys, "finetune", "--store", tmp_path / "none", "--registry", registry.root, "--progress-json"
    )
    assert code == 1
    assert json.loads(out) == {"event": "error", "message": err.removeprefix("medsegdiff: error: ").strip()}


def cli_process(*argv, env_home: Path, **options) -> subprocess.Popen:
    env = {**os.environ, "MEDSEGDIFF_HOME": str(env_home)}
    return subprocess.Popen(
        [sys.executable, "-m", "medsegdiff_training", *map(str, argv)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def test_a_real_process_reports_a_user_error_in_one_line(tmp_path, dataset, registry):
    process = cli_process(
        "evaluate",
        "--images",
        dataset / "images",
        "--masks",
        dataset / "masks",
        "--model",
        "v7",
        "--registry",
        registry.root,
        env_home=tmp_path / "home",
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.splitlines() == [err.strip()] and "Unknown model version 'v7'" in err
    assert "Traceback" not in err and out == ""


def test_sigterm_cancels_a_finetune_process_and_leaves_the_registry_as_it_was(blob_data, tmp_path, registry):
    store = CorrectionsStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    for _ in range(2):
        store.add(*blob_data.pair(rng))
    before = tree_digest(registry.root)
    process = cli_process(
        "finetune",
        "--store",
        store.root,
        "--parent",
        "tiny",
        "--steps",
        "100000",
        "--registry",
        registry.root,
        "--device",
        "cpu",
        "--progress-json",
        "--run-dir",
        tmp_path / "run",
        env_home=tmp_path / "home",
    )
    assert process.stdout is not None
    assert isinstance(FinetuneEvent.parse(process.stdout.readline()), FinetuneStarted)
    first = FinetuneEvent.parse(process.stdout.readline())  # training is under way
    assert isinstance(first, FinetuneProgress)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    events = [FinetuneEvent.parse(line) for line in out.splitlines()]
    assert process.returncode == 130, err
    assert isinstance(events[-1], FinetuneCancelled)
    assert all(isinstance(e, FinetuneProgress) for e in events[:-1])
    assert tree_digest(registry.root) == before
    assert (tmp_path / "run" / "state" / "state.json").is_file()
