"""Fine-tuning makes a new version with a parent link; the parent and a cancelled run leave no trace."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsegdiff_training.checkpoint import read_checkpoint_config
from medsegdiff_training.config import DiffusionConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import ConfigError, DatasetError, RegistryError
from medsegdiff_training.finetune import finetune, split_entries
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.trainer import TrainConfig

TINY = named_config("tiny")
CONFIG = TrainConfig(
    steps=3,
    batch_size=2,
    device="cpu",
    checkpoint_every=10**6,
    validate_every=10**6,
    validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) and the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_finetuning_adds_a_child_version_and_leaves_the_parent_bit_identical(finetune_setup):
    registry, store, tmp_path = finetune_setup
    parent_before = tree_digest(registry.get("parent").path)
    reports = []
    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=CONFIG, run_dir=tmp_path / "run", name="child",
            object_crops=False,
        ),
        registry=registry,
        progress=reports.append,
    )  # fmt: skip
    assert not result.cancelled and result.steps == 3 and [r.step for r in reports][:3] == [1, 2, 3]
    assert result.version is not None and result.version.name == "child" and result.version.parent == "parent"
    assert registry.names() == ["parent", "child"]
    assert tree_digest(registry.get("parent").path) == parent_before
    assert registry.selected() == "parent"  # choosing the new version is the user's call
    # one of five corrections held out and scored before and after: "before" is the parent's
    # Dice, as the annotator would segment it (DDIM 3 x 5)
    from medsegdiff_training.finetune import HELD_OUT_SCORING
    from medsegdiff_training.schedule import NoiseSchedule
    from medsegdiff_training.trainer import validation_dice

    held_out_ids = read_checkpoint_config(registry.get("child").path)["finetune"]["validation_entries"]
    parent = registry.load("parent", device="cpu")
    held_out = store.as_dataset(
        parent.model_config, parent.preprocess, [e for e in store.entries() if e.id in held_out_ids]
    )
    expected = validation_dice(
        parent.model, NoiseSchedule(parent.diffusion), held_out, HELD_OUT_SCORING,
        torch.device("cpu"), CONFIG.validation_images,
    )  # fmt: skip
    assert result.validation_dice_before == pytest.approx(expected, abs=1e-6)
    assert 0 <= result.validation_dice_after <= 1
    metrics = registry.get("child").metrics
    assert metrics["validation_dice_after"] == result.validation_dice_after
    assert metrics["corrections"] == 5 and metrics["validation_corrections"] == 1
    document = read_checkpoint_config(registry.get("child").path)
    assert document["parent_version"] == "parent"
    assert len(document["finetune"]["train_entries"]) == 4
    assert registry.load("child").model_config == TINY
    assert not (tmp_path / "run" / "state").exists()  # registered: nothing left to resume


def test_a_cancelled_finetune_leaves_the_registry_exactly_as_it_was(finetune_setup):
    registry, store, tmp_path = finetune_setup
    before = tree_digest(registry.root)
    cancel = threading.Event()

    def progress(report):
        if report.step == 1:
            cancel.set()

    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=replace(CONFIG, steps=100), run_dir=tmp_path / "run"
        ),
        registry=registry,
        progress=progress,
        cancel=cancel,
    )
    assert result.cancelled and result.version is None and result.steps == 1
    assert tree_digest(registry.root) == before
    assert (tmp_path / "run" / "state" / "state.json").is_file()  # resumable, outside the registry


def test_too_few_corrections_train_on_all_and_skip_the_scores(finetune_setup, blob):
    registry, _, tmp_path = finetune_setup
    store = CorrectionsStore(tmp_path / "two")
    rng = np.random.default_rng(1)
    for _ in range(2):
        store.add(*blob(rng))
    result = finetune(
        FinetuneOptions(parent="parent", store=store.root, config=CONFIG, run_dir=tmp_path / "run2"),
        registry=registry,
    )
    assert result.version is not None and result.version.name.startswith("v1-")
    assert result.validation_dice_before is None and result.validation_dice_after is None


def test_the_split_is_stable_and_keeps_training_entries(finetune_setup):
    _, store, _ = finetune_setup
    entries = store.entries()
    train_a, held_a = split_entries(entries, 0.4)
    train_b, held_b = split_entries(list(reversed(entries)), 0.4)
    assert [e.id for e in held_a] == [e.id for e in held_b] and len(held_a) == 2 and len(train_a) == 3
    assert split_entries(entries[:2], 0.5) == (entries[:2], [])
    with pytest.raises(ConfigError):
        split_entries(entries, 1.0)


def test_mixing_in_the_original_data(finetune_setup, blob):
    registry, store, tmp_path = finetune_setup
    images, masks = tmp_path / "original" / "images", tmp_path / "original" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(2)
    for index in range(3):
        image, labels = blob(rng)
        Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(images / f"o{index}.png")
        Image.fromarray(labels * 255).save(masks / f"o{index}.png")
    with pytest.raises(ConfigError, match="original"):
        finetune(
            FinetuneOptions(
                parent="parent", store=store.root, config=CONFIG, mix_original=True, run_dir=tmp_path / "r1"
            ),
            registry=registry,
        )
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=CONFIG,
            mix_original=True,
            original_images=images,
            original_masks=masks,
            run_dir=tmp_path / "r2",
        ),
        registry=registry,
    )
    assert result.version is not None
    training = read_checkpoint_config(result.version.path)["training"]
    # the 4 training corrections whole and cut around their one object each (object crops are on
    # by default), and the 3 originals
    assert training["images"] == 4 + 4 + 3


def test_user_errors_are_named(finetune_setup):
    registry, store, tmp_path = finetune_setup
    with pytest.raises(RegistryError, match="Unknown model version 'nope'"):
        finetune(FinetuneOptions(parent="nope", store=store.root, config=CONFIG), registry=registry)
    with pytest.raises(DatasetError, match="no corrections"):
        (tmp_path / "empty").mkdir()
        finetune(FinetuneOptions(parent="parent", store=tmp_path / "empty", config=CONFIG), registry=registry)
    with pytest.raises(DatasetError, match="does not exist"):
        finetune(
            FinetuneOptions(parent="parent", store=tmp_path / "missing", config=CONFIG), registry=registry
        )


def test_the_loss_continues_the_parents_recipe_unless_told_otherwise(finetune_setup, make_parent):
    registry, store, tmp_path = finetune_setup
    make_parent(
        registry,
        "dice-parent",
        diffusion=DiffusionConfig(prediction="v"),
        training={"config": {"mask_loss_weight": 1.0}},
        select=False,
    )

    def weight_of(version: str) -> float:
        return read_checkpoint_config(registry.get(version).path)["training"]["config"]["mask_loss_weight"]

    for parent, given, expected in (
        ("dice-parent", None, 1.0),
        ("dice-parent", 0.0, 0.0),
        ("parent", None, 0.0),
    ):
        child = finetune(
            FinetuneOptions(
                parent=parent,
                store=store.root,
                config=CONFIG,
                run_dir=tmp_path / f"run-{parent}-{given}",
                mask_loss_weight=given,
            ),
            registry=registry,
        ).version
        assert child is not None and weight_of(child.name) == expected


def weights_of(registry: ModelRegistry, version: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in registry.load(version, device="cpu").model.state_dict().items()}


@pytest.mark.slow
def test_a_finetune_starts_from_the_parents_weights(finetune_setup):
    registry, store, tmp_path = finetune_setup
    parent = weights_of(registry, "parent")
    # a fine-tune that cannot move (learning rate 0) returns its parent's weights and its Dice
    frozen = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=replace(CONFIG, learning_rate=0.0),
            run_dir=tmp_path / "frozen",
            name="frozen",
        ),
        registry=registry,
    )
    child = weights_of(registry, "frozen")
    assert child.keys() == parent.keys()
    assert all(torch.allclose(child[k], parent[k], atol=1e-6) for k in parent)
    assert frozen.validation_dice_after == pytest.approx(frozen.validation_dice_before, abs=1e-3)
    # three Adam steps move each weight by at most about 3 learning rates, nothing like a fresh start
    moved = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=CONFIG, run_dir=tmp_path / "moved", name="moved"
        ),
        registry=registry,
    )
    assert moved.version is not None
    child = weights_of(registry, "moved")
    largest_change = max((child[k] - parent[k]).abs().max().item() for k in parent)
    assert 0 < largest_change <= 3 * CONFIG.learning_rate * 1.5


def test_a_cancelled_finetune_resumes_from_its_run_folder(finetune_setup):
    registry, store, tmp_path = finetune_setup
    cancel = threading.Event()
    first = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=replace(CONFIG, steps=4), run_dir=tmp_path / "run"
        ),
        registry=registry,
        progress=lambda report: report.step == 2 and cancel.set(),
        cancel=cancel,
    )
    assert first.cancelled and first.steps == 2 and registry.names() == ["parent"]
    reports = []
    second = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=replace(CONFIG, steps=4),
            run_dir=tmp_path / "run",
            name="resumed",
        ),
        registry=registry,
        progress=reports.append,
    )
    assert not second.cancelled and second.steps == 4
    # it went on from step 2, not from the start (step 4 is reported again with its validation)
    assert sorted({r.step for r in reports}) == [3, 4] and reports[0].step == 3
    assert registry.names() == ["parent", "resumed"] and registry.get("resumed").parent == "parent"
    assert not (tmp_path / "run" / "state").exists()
