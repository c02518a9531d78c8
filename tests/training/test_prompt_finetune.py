"""Fine-tuning on corrections exported from box prompts: one training crop per recorded box.

A real corrections store on disk (TIFF files and a manifest), a real tiny parent in a
real registry, a real 2-step fine-tune.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.adaptation import Adaptation, corrections_profile
from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore, prompt_boxes
from medsegdiff_training.errors import CorrectionsError
from medsegdiff_training.finetune import finetune, plan_finetune
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompted import prepare_crops
from medsegdiff_training.prompts import Box, CropRule
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.surgery import adapted_preprocess
from medsegdiff_training.trainer import TrainConfig

TINY = named_config("tiny", image_size=(64, 64))
RULE = CropRule(margin_px=30, margin_fraction=0.0, description="box + 30 px")
HEIGHT, WIDTH = 600, 900
BOXES = [Box(100, 80, 200, 180), Box(600, 350, 720, 470)]  # two discs, in prompt order


def disc(centre_row, centre_column, radius) -> np.ndarray:
    rows = np.arange(HEIGHT)[:, None] + 0.5
    columns = np.arange(WIDTH)[None, :] + 0.5
    return (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2


def prompted_correction() -> tuple[np.ndarray, np.ndarray, dict]:
    """A full-size frame with two discs, labelled 1 and 2 (prompt order), and its manifest extra."""
    first, second = disc(130, 150, 50), disc(410, 660, 60)
    labels = first.astype(np.uint8) + 2 * second.astype(np.uint8)
    image = np.random.default_rng(0).normal(40, 5, (HEIGHT, WIDTH)) + 150 * (labels > 0)
    extra = {
        "prompts": {
            "prompts": [{"slice": 0, "box": b.to_list()} for b in BOXES],
            "boxes": [{"slice": 0, "box": b.to_list()} for b in BOXES],
            "crop_rule": RULE.to_dict(),
            "labels": "objects",  # a binary model's run: ids 1, 2 are objects, not classes
        }
    }
    return image.astype(np.float32), labels, extra


@pytest.fixture
def store(tmp_path) -> CorrectionsStore:
    store = CorrectionsStore(tmp_path / "corrections")
    image, labels, extra = prompted_correction()
    store.add(image, labels, extra=extra)
    whole = np.zeros((200, 300), np.uint8)
    whole[50:120, 100:200] = 1
    store.add(np.random.default_rng(1).random((200, 300)) + whole, whole)  # no prompts: used whole
    return store


def test_a_prompted_correction_trains_as_one_crop_per_box_at_the_prompt_crops_places(tmp_path, store):
    reopened = CorrectionsStore(store.root)  # read back from disk
    prompted, plain = sorted(
        reopened.entries(), key=lambda e: "prompts" not in (e.manifest.get("extra") or {})
    )
    assert prompt_boxes([prompted]) == {prompted.id: BOXES}
    data = reopened.as_dataset(TINY, PreprocessConfig(), crop_rule=RULE)
    assert sorted(data.names) == sorted([f"{prompted.id}:box1", f"{prompted.id}:box2", plain.id])
    by_name = dict(zip(data.names, data.samples, strict=True))
    image, _, _ = reopened.read(prompted)
    # the training crops are exactly the crops the box prompts cut from the same image
    segmenter = Segmenter(
        load_checkpoint(
            save_checkpoint(tmp_path / "m", MedSegDiffUNet(TINY), DiffusionConfig(), PreprocessConfig())
        ),
        device="cpu",
    )
    crops, windows = prepare_crops(segmenter, image[None].astype(np.float32), BOXES, RULE)
    for number, (crop, window, box) in enumerate(zip(crops, windows, BOXES, strict=True), start=1):
        sample = by_name[f"{prompted.id}:box{number}"]
        assert window == RULE.window(box)
        assert torch.allclose(sample.image, crop, atol=1e-6)
        # the crop's object is its own disc, centred, with 30 px of context on each side
        rows, columns = np.nonzero(sample.labels.numpy())
        height, width = window.shape
        assert (
            abs(rows.min() - 30 / height * 64) <= 1.5 and abs(64 - rows.max() - 1 - 30 / height * 64) <= 1.5
        )
        assert abs(columns.min() - 30 / width * 64) <= 1.5
        assert set(np.unique(sample.labels.numpy())) == {0, 1}  # object ids are one foreground
    assert tuple(by_name[plain.id].labels.shape) == (64, 64)  # the plain one, whole
    # without a crop rule (as before): every correction whole
    assert sorted(reopened.as_dataset(TINY, PreprocessConfig()).names) == sorted([prompted.id, plain.id])


def test_finetune_crops_around_the_recorded_boxes_by_the_parents_rule(tmp_path, store, make_parent):
    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    make_parent(registry, "parent", preprocess=PreprocessConfig(crop_rule=RULE))
    config = TrainConfig(
        steps=2,
        batch_size=2,
        device="cpu",
        checkpoint_every=10**6,
        validate_every=10**6,
        validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
    )
    # the object ids 1, 2 of a binary model's prompted run are one class: the child keeps 2 classes
    assert plan_finetune("parent", store, registry=registry).classes == 2
    result = finetune(
        FinetuneOptions(
            parent="parent",
            store=store.root,
            config=config,
            validation_fraction=0,
            run_dir=tmp_path / "run",
            object_crops=True,
        ),
        registry=registry,
    )
    assert result.version is not None and result.steps == 2
    child = registry.load(result.version.name)
    assert child.metadata["finetune"]["prompt_crops"] == 2
    assert child.metadata["finetune"]["crop_rule"] == RULE.to_dict()
    assert child.preprocess.crop_rule == RULE  # the child cuts prompts as its parent did
    # two crops around the recorded boxes, one whole correction and that one cut around its object
    assert child.metadata["training"]["images"] == 2 + 1 + 1
    assert child.metadata["finetune"]["object_crops"] == 1


def test_an_unreadable_recorded_box_is_refused_when_it_is_added(tmp_path):
    # (a hand-edited one is left out and named by every read: tests/faults/test_prompt_records.py)
    store = CorrectionsStore(tmp_path / "corrections")
    image, labels, extra = prompted_correction()
    extra["prompts"]["boxes"] = [{"slice": 0, "box": [10, 10, 5, 40]}]  # x1 < x0
    with pytest.raises(CorrectionsError, match=r"boxes\[0\].*x1 > x0"):
        store.add(image, labels, extra=extra)
    assert len(store) == 0


def test_a_volumes_prompt_boxes_go_to_their_slices(tmp_path):
    store = CorrectionsStore(tmp_path / "corrections")
    image, labels, _ = prompted_correction()
    volume = np.stack([np.zeros_like(labels), labels, np.zeros_like(labels), labels])
    boxes = [{"slice": 1, "box": BOXES[0].to_list()}, {"slice": 3, "box": BOXES[1].to_list()}]
    entry = store.add(np.stack([image] * 4), volume, extra={"prompts": {"boxes": boxes, "labels": "objects"}})
    assert entry.manifest["layout"] == "volume"
    assert prompt_boxes(store.entries()) == {f"{entry.id}[1]": [BOXES[0]], f"{entry.id}[3]": [BOXES[1]]}
    names = store.as_dataset(TINY, PreprocessConfig(), crop_rule=RULE).names
    assert sorted(names) == [f"{entry.id}[1]:box1", f"{entry.id}[3]:box1"]


def test_a_grey_parent_made_rgb_keeps_its_crop_rule():
    child = adapted_preprocess(PreprocessConfig(crop_rule=RULE), Adaptation(1, 2, 3, 2))
    assert child.normalisation == "luminance-percentile" and child.crop_rule == RULE


def test_labels_of_a_multi_class_prompted_run_still_count_as_classes(tmp_path):
    store = CorrectionsStore(tmp_path / "corrections")
    image, labels, extra = prompted_correction()
    extra["prompts"]["labels"] = "classes"
    store.add(image, labels, extra=extra)
    assert corrections_profile(store.entries()) == (1, 3)
    extra["prompts"]["labels"] = "objects"
    store.add(image, labels, extra=extra)
    assert corrections_profile(store.entries()[1:]) == (1, 2)


def test_a_box_channel_model_fine_tunes_on_prompt_crops_that_carry_the_box_and_keeps_its_encoding(
    tmp_path, store, make_parent
):
    """Fine-tuning keeps a box-prompt model's prompt encoding: the child reads the box channel,
    its crops are cut by the parent's relative rule, and each training crop marks its box."""
    rule = CropRule(margin_fraction=0.25, description="box + 25 %")
    preprocess = PreprocessConfig(crop_rule=rule, prompt_encoding="box-channel")
    boxed = named_config("tiny", image_size=(64, 64), prompt_channels=1)
    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    make_parent(registry, "boxes", preprocess=preprocess, config=boxed)
    crops = store.as_dataset(boxed, preprocess, crop_rule=rule)
    prompted = [sample for sample in crops.samples if ":box" in sample.name]
    assert len(prompted) == 2 and all(sample.image.shape == (2, 64, 64) for sample in prompted)
    for sample in prompted:  # the box fills the middle of its crop: 25 % of the box beyond it on each side
        inside = sample.image[1] > 0
        rows, columns = np.nonzero(inside.numpy())
        assert 8 <= rows.min() <= 12 and 51 <= rows.max() <= 55 and 8 <= columns.min() <= 12
    whole = [sample for sample in crops.samples if ":box" not in sample.name]
    assert bool((whole[0].image[1] == 1).all())  # a correction without prompts: the whole image is the box
    options = FinetuneOptions(parent="boxes", store=store.root, config=TrainConfig(steps=2, batch_size=2))
    result = finetune(options, registry=registry)
    child = registry.load(result.version.name)
    assert child.model_config.prompt_channels == 1
    assert child.preprocess.prompt_encoding == "box-channel" and child.preprocess.crop_rule == rule
