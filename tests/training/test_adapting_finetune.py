"""Fine-tuning adapts to the corrections: RGB and new classes, recorded, cancellable, from the CLI."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.checkpoint import read_checkpoint_config
from medsegdiff_training.cli import main
from medsegdiff_training.config import DiffusionConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.finetune import finetune, plan_finetune
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.trainer import TrainConfig

CONFIG = TrainConfig(
    steps=2,
    batch_size=2,
    device="cpu",
    checkpoint_every=10**6,
    validate_every=10**6,
    validation_sampling=SamplingSettings(sampler="ddim", steps=1, ensemble=1),
)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def disc_and_cup(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a reddish disc and a pale cup; labels 0 background, 1 rim, 2 cup."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(12, size - 12, 2)
    radius = np.hypot(yy - cy, xx - cx)
    labels = np.where(radius < 4, 2, np.where(radius < 9, 1, 0)).astype(np.uint8)
    image = np.stack(
        [60 + 120 * (labels > 0), 40 + 60 * (labels > 0) + 80 * (labels == 2), 30 + 0 * labels], -1
    )
    return (image + rng.normal(0, 10, image.shape)).clip(0, 255).astype(np.uint8), labels


@pytest.fixture
def grey_parent_and_colour_store(tmp_path, make_parent):
    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    make_parent(registry, "grey", diffusion=DiffusionConfig(prediction="v"))
    store = CorrectionsStore(tmp_path / "corrections")
    rng = np.random.default_rng(0)
    for _ in range(3):
        image, labels = disc_and_cup(rng)
        store.add(image, labels, prediction=(labels > 0).astype(np.uint8), model_version="grey")
    return registry, store, tmp_path


def test_a_grey_binary_parent_becomes_an_rgb_three_class_child_with_a_record(grey_parent_and_colour_store):
    registry, store, tmp_path = grey_parent_and_colour_store
    parent_files = tree_digest(registry.get("grey").path)
    assert (
        plan_finetune("grey", store, registry=registry).describe()
        == "3 classes, RGB (the parent: binary, grey)"
    )
    result = finetune(
        FinetuneOptions(
            parent="grey", store=store.root, config=CONFIG, run_dir=tmp_path / "run", name="fundus"
        ),
        registry=registry,
    )
    version = registry.get("fundus")
    assert version.parent == "grey" and result.adaptation is not None and result.adaptation.changes
    assert version.model["image_channels"] == 3 and version.model["num_classes"] == 3
    assert "3 channels, 3 classes" in version.config_summary
    assert version.metrics["parent_image_channels"] == 1 and version.metrics["parent_num_classes"] == 2
    document = read_checkpoint_config(version.path)
    assert document["parent_version"] == "grey"
    assert document["preprocess"]["normalisation"] == "luminance-percentile"
    assert document["finetune"]["adaptation"] == {
        "parent_channels": 1,
        "parent_classes": 2,
        "channels": 3,
        "classes": 3,
    }
    child = registry.load("fundus")
    assert child.model_config.mask_channels == 3
    assert tree_digest(registry.get("grey").path) == parent_files  # the parent is only read
    # forcing keeps the parent's shape: labels merge to foreground, colour to luminance
    forced = finetune(
        FinetuneOptions(
            parent="grey",
            store=store.root,
            config=CONFIG,
            run_dir=tmp_path / "run2",
            channels=1,
            num_classes=2,
        ),
        registry=registry,
    )
    assert forced.version is not None and not forced.adaptation.changes
    assert registry.load(forced.version.name).model_config == named_config("tiny")


def test_a_cancelled_adapting_finetune_leaves_the_registry_byte_identical(grey_parent_and_colour_store):
    registry, store, tmp_path = grey_parent_and_colour_store
    before = tree_digest(registry.root)
    cancel = threading.Event()

    def progress(report):
        cancel.set()

    result = finetune(
        FinetuneOptions(
            parent="grey", store=store.root, config=replace(CONFIG, steps=100), run_dir=tmp_path / "run"
        ),
        registry=registry,
        progress=progress,
        cancel=cancel,
    )
    assert result.cancelled and result.version is None and result.adaptation.classes == 3
    assert tree_digest(registry.root) == before


def test_the_cli_says_what_the_child_will_become_and_makes_it(grey_parent_and_colour_store, capsys):
    registry, store, tmp_path = grey_parent_and_colour_store
    argv = [
        "finetune",
        "--store",
        store.root,
        "--registry",
        registry.root,
        "--steps",
        "1",
        "--batch-size",
        "2",
    ]
    code = main([str(a) for a in [*argv, "--name", "auto", "--device", "cpu"]])
    err = capsys.readouterr().err
    assert code == 0 and "the new version will be: 3 classes, RGB (the parent: binary, grey)" in err
    assert registry.load("auto").model_config.num_classes == 3
    code = main([str(a) for a in [*argv, "--name", "forced", "--num-classes", "4", "--channels", "1"]])
    err = capsys.readouterr().err
    assert code == 0 and "4 classes, grey (the parent: binary, grey)" in err
    assert registry.load("forced").model_config.num_classes == 4
    code = main([str(a) for a in [*argv, "--channels", "2"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "grey (1) to RGB (3)" in err[0] and "--channels 2" in err[0]
