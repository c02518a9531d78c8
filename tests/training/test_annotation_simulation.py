"""simulate-annotation: the queue, the store and fine-tuning driven with expert masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training import cli
from medsegdiff_training.annotation_queue import AnnotationQueue, switch_to_child
from medsegdiff_training.annotation_simulation import simulate_annotation
from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.trainer import TrainConfig


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    for index in range(6):
        cy, cx = rng.integers(12, 28, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 8**2
        image = (disc * 120 + rng.normal(60, 15, disc.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(images / f"case{index}.png")
        label = disc.astype(np.uint8)
        label[disc & (xx < cx)] = 2  # two labels: a binary model takes both as the object
        Image.fromarray(label).save(masks / f"case{index}.png")
    return images, masks


@pytest.fixture
def registry(medsegdiff_home: Path) -> ModelRegistry:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    folder = save_checkpoint(
        medsegdiff_home / "tiny-checkpoint",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(prediction="v"),
        PreprocessConfig(),
    )
    registry = ModelRegistry()
    registry.add(folder, name="tiny")
    registry.select("tiny")
    return registry


SETTINGS = SamplingSettings(steps=2, ensemble=2)


def test_every_image_is_presegmented_accepted_and_stored_with_its_provenance(dataset, registry, tmp_path):
    images, masks = dataset
    store = CorrectionsStore(tmp_path / "store")
    result = simulate_annotation(
        find_pairs(images, masks), store=store, registry=registry, model="tiny", settings=SETTINGS
    )
    assert [r["name"] for r in result.images] == [f"case{i}" for i in range(6)]
    assert result.finetunes == []
    entries = store.entries()
    assert len(entries) == 6
    for record, entry in zip(result.images, entries, strict=True):
        _, labels, prediction = store.read(entry)
        assert set(np.unique(labels)) <= {0, 1}  # the expert's two labels merged for a binary model
        assert record["fraction_changed"] == pytest.approx(float(np.mean(labels != prediction)))
        assert 0 <= record["dice"] <= 1 and record["model_version"] == "tiny"
        queue = entry.manifest["extra"]["queue"]
        assert queue["position"] == record["position"] and queue["seconds"] is None
        assert queue["fraction_changed_from_presegmentation"] == record["fraction_changed"]
    log = AnnotationQueue.for_files(sorted(images.glob("*.png")), store.root)
    assert log.counts() == {"accepted": 6, "skipped": 0, "remaining": 0}
    assert result.blocks(4)[0]["images"] == "1-4" and result.blocks(4)[1]["images"] == "5-6"


def test_finetuning_every_n_accepted_makes_versions_and_switches_only_when_better(
    dataset, registry, tmp_path
):
    images, masks = dataset
    store = CorrectionsStore(tmp_path / "store")
    result = simulate_annotation(
        find_pairs(images, masks),
        store=store,
        registry=registry,
        model="tiny",
        settings=SETTINGS,
        finetune_every=3,
        finetune=FinetuneOptions(config=TrainConfig(steps=2, batch_size=2, validate_every=10**9)),
    )
    # after 3 accepted (not after the last image: nothing is left to segment)
    assert [f["after_accepted"] for f in result.finetunes] == [3]
    tuned = result.finetunes[0]
    assert tuned["parent"] == "tiny" and tuned["version"] in registry.names() and tuned["steps"] == 2
    assert tuned["switched"] == switch_to_child(
        tuned["validation_dice_before"], tuned["validation_dice_after"]
    )
    expected = tuned["version"] if tuned["switched"] else "tiny"
    assert [r["model_version"] for r in result.images] == ["tiny"] * 3 + [expected] * 3


def test_the_switch_rule():
    assert switch_to_child(0.5, 0.6) and not switch_to_child(0.6, 0.6) and not switch_to_child(0.6, 0.5)
    assert not switch_to_child(None, 0.9) and not switch_to_child(0.5, None)


def test_most_uncertain_first_visits_images_by_falling_score(dataset, registry, tmp_path):
    images, masks = dataset
    result = simulate_annotation(
        find_pairs(images, masks),
        store=CorrectionsStore(tmp_path / "store"),
        registry=registry,
        model="tiny",
        settings=SETTINGS,
        order="uncertain",
    )
    visited = [(r["uncertainty_score"], r["name"]) for r in result.images]
    # falling score, ties in file order (an untrained model may score several images alike)
    assert visited == sorted(visited, key=lambda pair: (-pair[0], pair[1]))
    assert sorted(name for _, name in visited) == [f"case{i}" for i in range(6)]


def simulate(dataset: tuple[Path, Path], out: Path, *options: str) -> int:
    """``medsegdiff simulate-annotation`` on the dataset with the tiny model; its exit code."""
    images, masks = dataset
    return cli.main(
        ["simulate-annotation", "--images", str(images), "--masks", str(masks), "--model", "tiny",
         "--out", str(out), *options]
    )  # fmt: skip


def test_the_cli_writes_per_image_and_per_block_records(dataset, registry, tmp_path, capsys):
    out = tmp_path / "sim" / "loop.json"
    code = simulate(dataset, out, "--steps", "2", "--ensemble", "2", "--finetune-every", "0")
    assert code == 0
    document = json.loads(out.read_text())
    assert len(document["images"]) == 6 and document["finetune_every"] == 0
    assert document["blocks"][0]["images"] == "1-6"
    assert len(CorrectionsStore(document["store"])) == 6
    assert "mean Dice" in capsys.readouterr().out
    # the same store again is refused in one line: a simulation starts from an empty store
    assert simulate(dataset, out) == 1
    assert "is not empty" in capsys.readouterr().err


def test_the_cli_speed_options_are_recorded_and_train_the_finetunes(dataset, registry, tmp_path, capsys):
    out = tmp_path / "fast" / "loop.json"
    code = simulate(
        dataset,
        out,
        "--steps", "2",
        "--ensemble", "1",
        "--finetune-every", "3",
        "--steps-per-finetune", "2",
        "--precision", "fp32",
        "--no-channels-last",
    )  # fmt: skip
    assert code == 0
    document = json.loads(out.read_text())
    speed = {"precision": "fp32", "channels_last": False, "cuda_graphs": None, "compile": None}
    assert document["speed"] == speed
    children = [v for v in ModelRegistry().versions() if v.parent == "tiny"]
    assert len(children) == 1  # after 3 accepted images (after the 6th there is nothing left to gain)
    for child in children:
        training = ModelRegistry().load(child.name, device="cpu").metadata["training"]
        assert training["config"]["precision"] == "fp32" and training["config"]["channels_last"] is False
        assert training["precision"] == "float32"
    # asking for two contradicting precisions is one line, before any image is read
    capsys.readouterr()
    assert simulate(dataset, tmp_path / "x.json", "--no-amp", "--precision", "bf16") == 1
    assert "contradicts --precision bf16" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
