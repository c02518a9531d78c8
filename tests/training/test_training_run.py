"""One training run for the CLI and the shipped models' script: run_training and its request."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.data.pairs import Pair
from medsegdiff_training.data.sources import DatasetSource
from medsegdiff_training.errors import ConfigError, RegistryError
from medsegdiff_training.train_config import TrainConfig
from medsegdiff_training.training_data import CASE_RULES, SplitSource, hold_out_cases
from medsegdiff_training.training_run import TrainingRequest, run_training


def case_dataset(folder, cases: int, frames: int, size: int = 32):
    """A DDTI-like folder: CASE_FRAME images (a disc of a case's own size) and a split.csv."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for case in range(1, cases + 1):
        for frame in range(1, frames + 1):
            mask = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (3 + case % 6) ** 2).astype(np.uint8)
            image = np.clip(rng.normal(60, 20, (size, size)) + 120 * mask, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / "images" / f"{case}_{frame}.png")
            Image.fromarray(mask * 255).save(folder / "masks" / f"{case}_{frame}.png")
            rows.append(f"{case}_{frame},train")
    (folder / "split.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_whole_cases_are_held_out_until_there_are_enough_images():
    pairs = [Pair(f"{case}_{frame}", "i", "m") for case in range(10) for frame in range(3)]
    train, validation = hold_out_cases(pairs, CASE_RULES["before-first-underscore"], images=7)
    held = {pair.name.split("_")[0] for pair in validation}
    assert len(validation) == 9 and len(held) == 3  # 3 whole cases: the first two hold only 6
    assert not held & {pair.name.split("_")[0] for pair in train} and len(train) + len(validation) == 30
    again = hold_out_cases(list(reversed(pairs)), CASE_RULES["before-first-underscore"], images=7)
    assert {pair.name for pair in again[1]} == {pair.name for pair in validation}  # the seed decides
    slices = [Pair(f"TCGA_CS_{patient}_{slice_}", "i", "m") for patient in range(5) for slice_ in range(4)]
    _, validation = hold_out_cases(slices, CASE_RULES["before-last-underscore"], images=4)
    assert len(validation) == 4 and len({pair.name.rsplit("_", 1)[0] for pair in validation}) == 1


def test_a_request_for_crops_needs_the_rule_and_the_recipe(tmp_path):
    source = DatasetSource("a", tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="crop rule"):
        TrainingRequest([SplitSource(source, [], [])], tmp_path / "run", box_channel=True)


def test_a_bad_version_name_is_refused_before_any_image_is_read(tmp_path):
    source = DatasetSource("missing", tmp_path / "nowhere", tmp_path / "nowhere")
    request = TrainingRequest(
        [SplitSource(source, [Pair("x", tmp_path / "no.png", tmp_path / "no.png")], [])],
        tmp_path / "run",
        config=TrainConfig(steps=1),
        register="default",  # the shipped model's name
        registry=tmp_path / "models",
    )
    with pytest.raises(RegistryError, match="default"):
        run_training(request)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_shipped_recipe_script_trains_through_run_training(
    tmp_path, repository_root, monkeypatch, capsys
):
    """scripts/train_default_model.py: whole cases held out, every one scored, the record kept."""
    data = case_dataset(tmp_path / "ddti", cases=20, frames=2)
    spec = importlib.util.spec_from_file_location(
        "train_default_model", repository_root / "scripts/train_default_model.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["train_default_model.py", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batch-size", "2", "--image-size", "32", "--no-amp"])
    script.main()
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("10 training and 30 validation images; model cpu 32x32, 1 channel(s)")
    done = json.loads(printed[-1])
    assert done["steps"] == 2 and done["best_validation_dice"] is not None
    checkpoint = load_checkpoint(done["final"])
    record = checkpoint.metadata
    held_out = record["training_data"]["held_out_validation"]
    assert len(held_out) == 30 and record["training_data"]["dataset"] == "DDTI"
    cases = {name.split("_")[0] for name in held_out}
    assert all(f"{case}_1" in held_out and f"{case}_2" in held_out for case in cases)  # whole cases
    assert record["training"]["config"]["validation_images"] == 30  # every held-out image scored
    assert record["training"]["datasets"][0]["validation_images"] == sorted(held_out)
    assert checkpoint.diffusion.prediction == "v" and record["training"]["config"]["mask_loss_weight"] == 1.0
    assert checkpoint.model_config.image_size == (32, 32) and checkpoint.model_config.num_classes == 2
