"""Fine-tuning's promises, each pinned by a one-step run on the tiny model (fast enough to
mutation-test ``finetune.py`` against; the longer runs are in test_finetune.py).

A fine-tune starts from its parent's weights, registers a child that names its parent and
what it became (channels, classes), holds out corrections by fixed rules, leaves the
registry byte-identical when cancelled, and continues the parent's loss recipe.
"""

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
from medsegdiff_training.config import PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionEntry, CorrectionsStore
from medsegdiff_training.data.dataset import SegmentationDataset
from medsegdiff_training.data.mixed import MixedDataset
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.data.roi_crops import CropRecipe
from medsegdiff_training.errors import ConfigError, DatasetError, RegistryError
from medsegdiff_training.finetune import finetune, plan_finetune
from medsegdiff_training.finetune_data import (
    correction_data,
    held_out_places,
    object_crop_recipe,
    original_data,
    parent_mask_loss_weight,
    split_entries,
)
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.paths import ENV_HOME, default_runs_root
from medsegdiff_training.registry import UNTRAINED_VERSION, ModelRegistry
from medsegdiff_training.surgery import Adaptation
from medsegdiff_training.trainer import TrainConfig

TINY = named_config("tiny")
ONE_STEP = TrainConfig(
    steps=1,
    batch_size=1,
    device="cpu",
    augment=None,
    checkpoint_every=10**6,
    validate_every=10**6,
    validation_images=4,
    validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) and the SHA-256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def weights_of(registry: ModelRegistry, version: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in registry.load(version, device="cpu").model.state_dict().items()}


@pytest.fixture
def parent_training(tmp_path, blob) -> dict:
    """The parent of these tests names its training data (five blob images) and was trained
    with a soft-Dice weight of 0.5 (conftest's finetune_setup registers it)."""
    images, masks = tmp_path / "original" / "images", tmp_path / "original" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(2)
    for index in range(5):
        image, labels = blob(rng)
        Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(images / f"o{index}.png")
        Image.fromarray(labels * 255).save(masks / f"o{index}.png")
    source = {"images": str(images), "masks": str(masks), "split_csv": None, "split": None}
    return {"source": source, "config": {"mask_loss_weight": 0.5}}


def test_a_child_starts_at_its_parents_weights_and_records_where_it_came_from(finetune_setup):
    registry, store, tmp_path = finetune_setup
    parent_files = tree_digest(registry.get("parent").path)
    parent_weights = weights_of(registry, "parent")
    # a step with learning rate 0 cannot move: the child must be exactly where it started
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=replace(ONE_STEP, learning_rate=0.0),
            run_dir=tmp_path / "run",
            name="child",
            object_crops=True,
        ),
        registry=registry,
    )
    assert (result.cancelled, result.steps, result.run_dir) == (False, 1, tmp_path / "run")
    assert result.adaptation == Adaptation(1, 2, 1, 2)
    child = weights_of(registry, "child")
    assert child.keys() == parent_weights.keys()
    assert all(torch.equal(child[k], parent_weights[k]) for k in parent_weights)
    # one of five corrections held out; the same weights score the same before and after
    assert 0 <= result.validation_dice_before <= 1
    assert result.validation_dice_after == pytest.approx(result.validation_dice_before, abs=1e-6)

    version = registry.get("child")
    assert result.version == version
    assert (version.parent, version.description) == ("parent", "fine-tuned from parent on 4 corrections")
    expected_metrics = {
        "validation_dice_before": result.validation_dice_before,
        "validation_dice_after": result.validation_dice_after,
        "corrections": 5,
        "validation_corrections": 1,
        "image_channels": 1,
        "num_classes": 2,
        "parent_image_channels": 1,
        "parent_num_classes": 2,
    }
    assert {k: version.metrics.get(k) for k in expected_metrics} == expected_metrics

    document = read_checkpoint_config(version.path)
    ids = sorted(entry.id for entry in store.entries())
    record = document["finetune"]
    assert sorted(record["train_entries"] + record["validation_entries"]) == ids
    assert len(record["validation_entries"]) == 1
    assert record["train_entries"] == sorted(record["train_entries"])  # oldest first
    assert record == {
        "store": str(store.root),
        "train_entries": record["train_entries"],
        "validation_entries": record["validation_entries"],
        "mix_original": False,
        "validation_dice_before": result.validation_dice_before,
        "adaptation": {"parent_channels": 1, "parent_classes": 2, "channels": 1, "classes": 2},
        "prompt_crops": 0,  # no correction recorded prompts: each trains whole
        "object_crops": 4,  # ... and cut around its object
        "crop_rule": PreprocessConfig().prompt_crop_rule().to_dict(),  # the parent's (its default)
    }
    assert document["parent_version"] == "parent"
    # the parent's data source is carried on, so a grandchild can mix it in too
    parent_source = read_checkpoint_config(registry.get("parent").path)["training"]["source"]
    assert document["training"]["source"] == parent_source
    # the four training corrections, whole and cut around their objects, nothing else
    assert document["training"]["images"] == 4 + 4
    # the parent is untouched and still selected; the run's resumable state is spent
    assert tree_digest(registry.get("parent").path) == parent_files
    assert registry.names() == ["parent", "child"] and registry.selected() == "parent"
    assert not (tmp_path / "run" / "state").exists()


def test_a_finetune_cancelled_before_it_starts_registers_and_writes_nothing(finetune_setup):
    registry, store, tmp_path = finetune_setup
    before = tree_digest(registry.root)
    cancel = threading.Event()
    cancel.set()
    result = finetune(
        FinetuneOptions(parent="parent", store=store.root, config=ONE_STEP, run_dir=tmp_path / "run"),
        registry=registry,
        cancel=cancel,
    )
    assert (result.version, result.cancelled, result.steps) == (None, True, 0)
    assert (result.validation_dice_after, result.run_dir) == (None, tmp_path / "run")
    assert 0 <= result.validation_dice_before <= 1  # scored: there were held-out corrections
    assert result.adaptation == Adaptation(1, 2, 1, 2)
    assert tree_digest(registry.root) == before
    assert not (tmp_path / "run").exists()


def test_a_finetune_cancelled_mid_run_leaves_the_registry_byte_identical(finetune_setup):
    registry, store, tmp_path = finetune_setup
    before = tree_digest(registry.root)
    cancel = threading.Event()
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=replace(ONE_STEP, steps=50),
            run_dir=tmp_path / "run",
            name="never",
        ),
        registry=registry,
        progress=lambda report: cancel.set(),
        cancel=cancel,
    )
    assert (result.version, result.cancelled, result.steps) == (None, True, 1)
    assert result.validation_dice_after is None and result.validation_dice_before is not None
    assert tree_digest(registry.root) == before
    assert (tmp_path / "run" / "state" / "state.json").is_file()  # resumable, outside the registry


def test_a_taken_or_invalid_name_is_refused_before_any_training(finetune_setup):
    registry, store, tmp_path = finetune_setup
    before = tree_digest(registry.root)
    with pytest.raises(RegistryError, match="exists already"):
        finetune(
            FinetuneOptions(
                parent="parent", store=store.root, config=ONE_STEP, run_dir=tmp_path / "r", name="parent"
            ),
            registry=registry,
        )
    with pytest.raises(RegistryError):
        finetune(
            FinetuneOptions(
                parent="parent", store=store.root, config=ONE_STEP, run_dir=tmp_path / "r", name="../x"
            ),
            registry=registry,
        )
    assert tree_digest(registry.root) == before and not (tmp_path / "r").exists()


def test_without_a_run_folder_the_run_goes_under_the_data_home(finetune_setup, monkeypatch):
    registry, store, tmp_path = finetune_setup
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "home"))
    cancel = threading.Event()
    cancel.set()
    result = finetune(
        FinetuneOptions(parent="parent", store=store.root, config=ONE_STEP), registry=registry, cancel=cancel
    )
    assert result.run_dir.parent == default_runs_root() == tmp_path / "home" / "runs"
    assert result.run_dir.name.startswith("finetune-parent-")


def test_one_or_two_corrections_train_on_all_of_them_and_score_nothing(finetune_setup, blob):
    registry, _, tmp_path = finetune_setup
    store = CorrectionsStore(tmp_path / "one")
    store.add(*blob(np.random.default_rng(1)))
    result = finetune(
        FinetuneOptions(parent="parent", store=store.root, config=ONE_STEP, run_dir=tmp_path / "run1"),
        registry=registry,
    )
    assert result.version is not None and result.version.name.startswith("v1-")
    assert (result.validation_dice_before, result.validation_dice_after) == (None, None)
    metrics = result.version.metrics
    assert (metrics["corrections"], metrics["validation_corrections"]) == (1, 0)
    assert result.version.description == "fine-tuned from parent on 1 corrections"
    record = read_checkpoint_config(result.version.path)["finetune"]
    assert record["validation_entries"] == [] and len(record["train_entries"]) == 1


def test_a_fraction_of_zero_trains_on_every_correction(finetune_setup):
    registry, store, tmp_path = finetune_setup  # five corrections: the default rule would hold one out
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=ONE_STEP,
            run_dir=tmp_path / "all",
            validation_fraction=0,
        ),
        registry=registry,
    )
    assert (result.validation_dice_before, result.validation_dice_after) == (None, None)
    record = read_checkpoint_config(result.version.path)["finetune"]
    assert record["validation_entries"] == [] and len(record["train_entries"]) == len(store) == 5


def test_colour_corrections_with_a_new_label_make_an_rgb_three_class_child(finetune_setup, blob):
    registry, _, tmp_path = finetune_setup
    store = CorrectionsStore(tmp_path / "colour")
    rng = np.random.default_rng(3)
    store.add(*blob(rng, label=2, channels=3))
    store.add(*blob(rng, label=1, channels=3))
    assert plan_finetune("parent", str(store.root), registry=registry) == Adaptation(1, 2, 3, 3)
    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=ONE_STEP, run_dir=tmp_path / "run", name="rgb"
        ),
        registry=registry,
    )
    assert result.adaptation == Adaptation(1, 2, 3, 3)
    child = registry.load("rgb")
    assert (child.model_config.image_channels, child.model_config.num_classes) == (3, 3)
    metrics = registry.get("rgb").metrics
    assert [metrics[k] for k in ("image_channels", "num_classes")] == [3, 3]
    assert [metrics[k] for k in ("parent_image_channels", "parent_num_classes")] == [1, 2]
    assert registry.load("parent").model_config == TINY  # the parent keeps its shape


def test_forced_channels_and_classes_are_what_the_child_becomes(finetune_setup):
    registry, store, tmp_path = finetune_setup
    assert plan_finetune("parent", store, registry=registry) == Adaptation(1, 2, 1, 2)
    assert plan_finetune("parent", store, registry=registry, num_classes=4) == Adaptation(1, 2, 1, 4)
    assert plan_finetune("parent", store, registry=registry, channels=3) == Adaptation(1, 2, 3, 2)
    untrained = plan_finetune(UNTRAINED_VERSION, store, registry=registry)
    assert (untrained.parent_channels, untrained.parent_classes) == (1, 2)
    cancel = threading.Event()
    cancel.set()
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=ONE_STEP,
            run_dir=tmp_path / "r",
            channels=3,
            num_classes=4,
        ),
        registry=registry,
        cancel=cancel,
    )
    assert result.adaptation == Adaptation(1, 2, 3, 4)


def test_the_loss_continues_the_parents_recipe_unless_told_otherwise(finetune_setup, blob):
    registry, _, tmp_path = finetune_setup
    store = CorrectionsStore(tmp_path / "two")
    rng = np.random.default_rng(4)
    for _ in range(2):
        store.add(*blob(rng))

    def weight_of(version: str) -> float:
        return read_checkpoint_config(registry.get(version).path)["training"]["config"]["mask_loss_weight"]

    # the parent trained with weight 0.5; the config's own 0.25 is not the recipe
    for given, expected in ((None, 0.5), (0.0, 0.0)):
        child = finetune(
            FinetuneOptions(
                parent="parent",
                store=store.root,
                config=replace(ONE_STEP, mask_loss_weight=0.25),
                run_dir=tmp_path / f"run-{given}",
                mask_loss_weight=given,
                name=f"w{given}",
            ),
            registry=registry,
        ).version
        assert child is not None and weight_of(child.name) == expected


@pytest.mark.parametrize(
    ("metadata", "weight"),
    [
        ({}, 0.0),
        ({"training": None}, 0.0),
        ({"training": {"config": None}}, 0.0),
        ({"training": {"config": {}}}, 0.0),
        ({"training": {"config": {"mask_loss_weight": 2}}}, 2.0),
        ({"training": {"config": {"mask_loss_weight": 0.75}}}, 0.75),
        ({"training": {"config": {"mask_loss_weight": "heavy"}}}, 0.0),
    ],
)
def test_the_parents_mask_loss_weight(metadata, weight):
    assert parent_mask_loss_weight(metadata) == weight
    assert type(parent_mask_loss_weight(metadata)) is float


def test_mixing_in_the_original_data_the_parent_names(finetune_setup, make_parent, blob):
    registry, _, tmp_path = finetune_setup
    store = CorrectionsStore(tmp_path / "two")
    rng = np.random.default_rng(5)
    for _ in range(2):
        store.add(*blob(rng))
    # the parent's checkpoint names its 5 training images: with the 2 corrections (whole, and
    # cut around their one object each) they make the epoch, the corrections about half of it
    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, config=ONE_STEP, mix_original=True, run_dir=tmp_path / "r"
        ),
        registry=registry,
    )
    document = read_checkpoint_config(result.version.path)
    assert document["training"]["images"] == 2 + 2 + 5
    assert document["finetune"]["mix_original"] is True
    # a parent that does not name its data needs the folders given
    make_parent(registry, "bare", select=False)
    with pytest.raises(ConfigError) as caught:
        finetune(
            FinetuneOptions(
                parent="bare", store=store.root, config=ONE_STEP, mix_original=True, run_dir=tmp_path / "b"
            ),
            registry=registry,
        )
    assert str(caught.value) == (
        "To mix in the original data, give the folders of the parent's training images and masks "
        "(--original-images and --original-masks): the parent's checkpoint does not name them."
    )
    original = Path(document["training"]["source"]["images"]).parent
    with pytest.raises(ConfigError, match="does not name them"):
        finetune(
            FinetuneOptions(
                parent="bare",
                store=store.root,
                config=ONE_STEP,
                mix_original=True,
                original_images=original / "images",
                run_dir=tmp_path / "b",
            ),
            registry=registry,
        )
    given = finetune(
        FinetuneOptions(
            parent="bare",
            store=store.root,
            config=ONE_STEP,
            mix_original=True,
            original_images=original / "images",
            original_masks=original / "masks",
            run_dir=tmp_path / "g",
        ),
        registry=registry,
    )
    assert read_checkpoint_config(given.version.path)["training"]["images"] == 2 + 2 + 5
    # a parent whose named folders are not on this machine (a shipped model, moved data)
    original.rename(original.with_name("moved"))
    with pytest.raises(
        ConfigError, match=r"^To mix in the original data, .* which are not on this machine\.$"
    ):
        finetune(
            FinetuneOptions(
                parent="parent", store=store.root, config=ONE_STEP, mix_original=True, run_dir=tmp_path / "m"
            ),
            registry=registry,
        )


@pytest.mark.parametrize(("count", "originals"), [(2, 5), (2, 40), (6, 3), (1, 1)])
def test_corrections_make_about_half_of_every_epoch(tmp_path, blob, count, originals):
    store = CorrectionsStore(tmp_path / "store")
    rng = np.random.default_rng(count)
    for _ in range(count):
        store.add(*blob(rng))
    pairs = [blob(rng) for _ in range(originals)]
    original = SegmentationDataset.from_arrays([p[0] for p in pairs], [p[1] for p in pairs], TINY)
    recipe = object_crop_recipe({}, TINY, PreprocessConfig())
    data = correction_data(
        store, store.entries(), [], TINY, PreprocessConfig(), recipe=recipe, original=original
    )
    assert isinstance(data.train, MixedDataset) and data.validation is None
    whole, crops, theirs = data.train.counts  # items of each part per epoch
    assert len(data.train) == 2 * count + originals
    assert abs((whole + crops) - theirs) <= 1 and abs(whole - crops) <= 1
    # without the parent's data: the corrections whole and cut, half each
    alone = correction_data(store, store.entries(), [], TINY, PreprocessConfig(), recipe=recipe).train
    assert isinstance(alone, MixedDataset) and alone.counts == [count, count]
    assert correction_data(store, store.entries(), [], TINY, PreprocessConfig(), recipe=None).train.names == [
        entry.id for entry in store.entries()
    ]


def test_a_fine_tune_cuts_its_crops_as_the_parent_recorded_its_own():
    recorded = {"training": {"roi_crops": {"jitter": 0.2, "exact_share": 0.5, "context": [0.05, 0.4]}}}
    recipe = object_crop_recipe(recorded, TINY, PreprocessConfig())
    # a binary model: one object per crop; no box channel: no context drawn
    assert (recipe.per_object, recipe.jitter, recipe.exact_share, recipe.context) == (True, 0.2, 0.5, None)
    older = object_crop_recipe({"training": {"roi_crops": {"jitter": 0.05}}}, TINY, PreprocessConfig())
    assert (older.jitter, older.exact_share) == (0.05, 0.0)  # recorded before the share existed
    damaged = {"training": {"roi_crops": {"jitter": "wide", "exact_share": 7}}}
    assert object_crop_recipe(damaged, TINY, PreprocessConfig()) == CropRecipe(per_object=True)


def _entries(count: int) -> list[CorrectionEntry]:
    return [CorrectionEntry(f"20261127-1200{i:02d}-{i:08x}", Path(f"e{i}"), {}) for i in range(count)]


@pytest.mark.parametrize(
    ("count", "fraction", "held"),
    [(5, 0.2, 1), (5, 0.4, 2), (10, 0.01, 1), (10, 0.3, 3), (4, 0.99, 3), (3, 0.5, 2), (3, 0.1, 1)],
)
def test_the_held_out_count(count, fraction, held):
    """round(n * fraction), at least one and never all: something is always trained on."""
    train, validation = split_entries(_entries(count), fraction)
    assert (len(train), len(validation)) == (count - held, held)


@pytest.mark.parametrize(
    ("count", "held"), [(2, 0), (3, 1), (7, 1), (8, 2), (9, 2), (10, 2), (12, 2), (13, 3), (20, 4), (40, 8)]
)
def test_the_default_rule_holds_out_a_fifth_from_three_corrections(count, held):
    train, validation = split_entries(_entries(count))
    assert (len(train), len(validation)) == (count - held, held)
    assert split_entries(_entries(count), None) == (train, validation)


def test_the_split_rules():
    entries = _entries(8)
    train, validation = split_entries(entries, 0.25)
    # every entry once, each side in id order, whatever order the entries came in
    assert sorted(e.id for e in train + validation) == [e.id for e in entries]
    assert train == sorted(train, key=lambda e: e.id) and validation == sorted(validation, key=lambda e: e.id)
    assert split_entries(list(reversed(entries)), 0.25) == (train, validation)
    assert split_entries(entries[3:] + entries[:3], 0.25, seed=0) == (train, validation)
    # the seed picks which entries; over a few seeds more than one choice comes up
    assert len({tuple(e.id for e in split_entries(entries, 0.25, seed=s)[1]) for s in range(6)}) > 1
    # fewer than three entries, or no fraction: all are trained on, none held out
    assert split_entries(entries[:2], 0.5) == (entries[:2], [])
    assert split_entries(entries[:1], 0.5) == (entries[:1], [])
    assert split_entries(entries, 0.0) == (entries, [])
    assert split_entries(entries, 0.999)[0] != []
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=r"validation_fraction must be in \[0, 1\)"):
            split_entries(entries, bad)


@pytest.mark.parametrize("fraction", [None, 0.2, 0.3, 0.5])
@pytest.mark.parametrize("seed", [0, 3])
def test_a_growing_store_never_holds_out_what_a_parent_trained_on(fraction, seed):
    """The annotation loop fine-tunes the last child on a store that has grown: the
    corrections its parent trained on must not judge the two (they would flatter the parent),
    and what was held out stays held out (from 3 corrections on: below, all are trained on)."""
    entries = _entries(40)
    for smaller in range(3, 40):
        parent_train, parent_held = split_entries(entries[:smaller], fraction, seed)
        for larger in range(smaller + 1, 41):
            _, child_held = split_entries(entries[:larger], fraction, seed)
            assert not {e.id for e in child_held} & {e.id for e in parent_train}, (smaller, larger)
            if seed == 0:  # where the rule's own places are held out, they stay held out
                assert {e.id for e in parent_held} <= {e.id for e in child_held}, (smaller, larger)


def test_the_held_out_places_are_spread_evenly():
    assert held_out_places(20, 0.2) == [2, 7, 12, 17]
    assert held_out_places(10, 0.5) == [0, 2, 4, 6, 8]
    assert held_out_places(3, 0.01) == [2] and held_out_places(2, 0.01) == [1]  # at least one
    assert held_out_places(2, 0.99) == [1]  # never all


def test_missing_or_empty_stores_are_named(finetune_setup):
    registry, _, tmp_path = finetune_setup
    with pytest.raises(DatasetError) as caught:
        finetune(
            FinetuneOptions(parent="parent", store=tmp_path / "missing", config=ONE_STEP), registry=registry
        )
    assert str(caught.value) == (
        f"The corrections folder {tmp_path / 'missing'} does not exist; export some corrections first."
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as caught:
        finetune(
            FinetuneOptions(parent="parent", store=str(tmp_path / "empty"), config=ONE_STEP),
            registry=registry,
        )
    assert str(caught.value) == (
        f"The corrections store {tmp_path / 'empty'} has no corrections yet; export some first."
    )


def test_the_parents_own_data_is_read_from_its_split_with_the_childs_preprocessing(finetune_setup):
    registry, _, tmp_path = finetune_setup
    source = read_checkpoint_config(registry.get("parent").path)["training"]["source"]
    images, masks = Path(source["images"]), Path(source["masks"])
    split_csv = tmp_path / "split.csv"
    split_csv.write_text("name,split\no0,train\no1,test\no2,train\no3,val\no4,train\n")
    named = {"training": {"source": {**source, "split_csv": str(split_csv), "split": "train"}}}
    minmax = PreprocessConfig(normalisation="minmax")
    data = original_data(named, TINY, minmax, None, None)
    assert data.names == ["o0", "o2", "o4"]  # the parent's training split, not all its files
    expected = SegmentationDataset.from_pairs(find_pairs(images, masks, split_csv, "train"), TINY, minmax)
    assert all(torch.equal(data[i][0], expected[i][0]) for i in range(3))
    assert not torch.equal(data[0][0], original_data(named, TINY, PreprocessConfig(), None, None)[0][0])
    # folders given win over those the checkpoint names (and take no split)
    assert original_data(named, TINY, minmax, images, masks).names == [f"o{i}" for i in range(5)]
    # a source naming only one of the two folders is not enough
    for partial in ({"images": str(images)}, {"masks": str(masks)}, {}):
        with pytest.raises(ConfigError, match="does not name them"):
            original_data({"training": {"source": partial}}, TINY, minmax, None, None)
    with pytest.raises(ConfigError, match="does not name them"):
        original_data({"training": None}, TINY, minmax, images, None)
