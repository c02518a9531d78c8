"""Issue 28, class 10: tests whose "before" differs from every default the code could fall back to.

Each test here gives a setting that is not its default and checks that it arrives, where the
suite's other tests used the default and so could not see it replaced by the default:

- ``train``'s recipe options reach the checkpoint (normalisation, EMA decay, clipping, loss);
- a fine-tuned child keeps its parent's diffusion (v-prediction, cosine, 50 steps) and
  normalisation (z-score), not the defaults;
- a prompted run cuts its crops by the model's own crop rule, not the default rule.

(The fine-tune parent that is not a fresh seed-0 network is ``tests/conftest.py``'s, issue 31a.)
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.finetune import finetune
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import DEFAULT_CROP_RULE, Box, CropRule
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.train_config import TrainConfig


def test_train_records_the_recipe_it_was_given_not_the_defaults(tmp_path, run_cli):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 36), dtype=np.uint8)).save(images / f"{index}.png")
        mask = np.zeros((40, 36), np.uint8)
        mask[10:25, 8:20] = 255
        Image.fromarray(mask).save(masks / f"{index}.png")
    outcome = run_cli(
        "train", "--images", images, "--masks", masks, "--config", "tiny", "--steps", "1",
        "--batch-size", "2", "--normalisation", "zscore", "--ema-decay", "0.95", "--grad-clip", "0.5",
        "--mask-loss-weight", "0.25", "--lr", "3e-4", "--out", tmp_path / "run", "--device", "cpu",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    recipe = saved["training"]["config"]
    assert saved["preprocess"]["normalisation"] == "zscore"  # the default is percentile
    assert (recipe["ema_decay"], recipe["grad_clip"], recipe["mask_loss_weight"]) == (0.95, 0.5, 0.25)
    assert recipe["learning_rate"] == 3e-4


def test_a_finetuned_child_keeps_its_parents_diffusion_and_normalisation(tmp_path):
    diffusion = DiffusionConfig(timesteps=50, schedule="cosine", prediction="v")  # none of them default
    preprocess = PreprocessConfig(normalisation="zscore")
    torch.manual_seed(7)
    parent = save_checkpoint(tmp_path / "parent", MedSegDiffUNet(named_config("tiny")), diffusion, preprocess)
    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    registry.add(parent, name="parent")
    store = CorrectionsStore(tmp_path / "store")
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 5:20] = 1
    store.add(np.random.default_rng(0).random((40, 50)), labels)
    options = FinetuneOptions(
        parent="parent", store=store.root, config=TrainConfig(steps=1, batch_size=1), run_dir=tmp_path / "run"
    )
    result = finetune(options, registry=registry)
    child = registry.load(result.version.name)
    assert child.diffusion == diffusion
    assert child.preprocess.normalisation == "zscore"


def test_a_prompted_run_cuts_its_crops_by_the_models_own_rule(tmp_path):
    rule = CropRule(shape="square", margin_px=7.0, margin_fraction=0.0, description="square + 7 px")
    folder = save_checkpoint(
        tmp_path / "m",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(),
        PreprocessConfig(crop_rule=rule),
    )
    segmenter = Segmenter(load_checkpoint(folder), device="cpu")
    boxes = [Box(10, 20, 60, 40), Box(70, 5, 90, 75)]
    image = np.random.default_rng(0).random((100, 120))
    result = segment_prompts(segmenter, image, boxes, SamplingSettings(steps=1))
    assert result.crop_rule == rule
    assert result.windows == [rule.window(box) for box in boxes]
    assert result.windows != [DEFAULT_CROP_RULE.window(box) for box in boxes]  # the fallback differs
