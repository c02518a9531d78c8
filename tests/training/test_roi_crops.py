"""``medsegdiff train --roi-crops``: training crops around each mask's box, cut by the crop rule.

Real files (PNG images, GIF masks), real datasets and a real 2-step training run of the
tiny model through the CLI's ``main()``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.cli import main
from medsegdiff_training.config import PreprocessConfig, named_config
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.data.roi_crops import CropRecipe, RoiCropDataset
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.prompts import Box, CropRule, CropWindow, jitter_box, mask_box
from medsegdiff_training.training_state import load_best_weights

TINY = named_config("tiny", image_size=(64, 64))
RULE = CropRule(margin_px=30, margin_fraction=0.0, description="box + 30 px")
HEIGHT, WIDTH = 560, 760  # a full-size ultrasound-like frame


def disc(shape, centre_row, centre_column, radius) -> np.ndarray:
    rows = np.arange(shape[0])[:, None] + 0.5
    columns = np.arange(shape[1])[None, :] + 0.5
    return (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2


def write_frames(root, frames: dict[str, np.ndarray]):
    """PNG images (disc bright on a dark gradient) and GIF 0/255 masks, as the DDTI folders hold them."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    gradient = np.linspace(0, 60, WIDTH)[None, :].repeat(HEIGHT, 0)
    for name, mask in frames.items():
        image = np.where(mask, 220, gradient).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{name}.gif")
    return root


@pytest.fixture
def frames(tmp_path):
    """Three frames on disk: a disc in the middle, one touching the top-left corner, an empty one."""
    return write_frames(
        tmp_path / "data",
        {
            "a_middle": disc((HEIGHT, WIDTH), 300, 420, 50),
            "b_corner": disc((HEIGHT, WIDTH), 20, 25, 40),
            "c_empty": np.zeros((HEIGHT, WIDTH), bool),
        },
    )


def read(frames, jitter=0.1, seed=0) -> RoiCropDataset:
    pairs = find_pairs(frames / "images", frames / "masks")
    return RoiCropDataset.from_pairs(
        pairs, TINY, PreprocessConfig(crop_rule=RULE), recipe=CropRecipe(jitter=jitter), seed=seed
    )


def test_an_unjittered_crop_is_the_rule_around_the_mask_box_and_holds_the_disc_with_context(frames):
    data = read(frames)
    assert data.names == ["a_middle", "b_corner", "c_empty"]
    assert mask_box(data.samples[0].labels.numpy()) == Box(370, 250, 470, 350)
    assert data.window(0) == CropWindow(top=220, left=340, bottom=380, right=500)
    image, labels = data[0]
    assert image.shape == (1, 64, 64) and labels.shape == (64, 64)
    # the disc (100 of 160 px across) sits in the middle with background context on every side
    rows, columns = np.nonzero(labels.numpy())
    context = 30 / 160 * 64  # 12 model pixels of context per side
    for low, high in ((rows.min(), rows.max()), (columns.min(), columns.max())):
        assert abs(low - context) <= 1 and abs(high + 1 - (64 - context)) <= 1
    # the crop's image is the disc's image: bright exactly where the labels are
    bright = image[0].numpy() > 0.5
    assert (bright == labels.numpy().astype(bool)).mean() > 0.97


def test_a_crop_at_the_image_border_is_padded_with_background_never_shifted(frames):
    data = read(frames)
    window = data.window(1)
    assert (window.top, window.left) == (-30, -30)  # the box starts at row 0 (disc of radius 40 at 20, 25)
    image, labels = data[1]
    padding = round(30 / window.shape[0] * 64)
    assert not labels[: padding - 1].any() and not labels[:, : padding - 1].any()
    assert labels[padding + 1 : padding + 10, padding + 10 : padding + 20].all()
    assert (image[0, : padding - 1] - image.min()).abs().max() < 1e-4  # padded with the image's minimum


def test_jitter_moves_each_edge_by_at_most_ten_percent_differs_per_epoch_and_is_seeded(frames):
    data = read(frames)
    box = data.boxes[0]
    boxes = [data.box(0, epoch) for epoch in range(200)]
    for name, size in (("x0", box.width), ("x1", box.width), ("y0", box.height), ("y1", box.height)):
        moved = np.array([getattr(b, name) - getattr(box, name) for b in boxes])
        assert np.abs(moved).max() <= 0.1 * size + 1e-9
        assert np.abs(moved).max() > 0.08 * size  # the whole range is used
    assert len({b.to_list()[0] for b in boxes}) == 200  # a new draw every epoch
    assert read(frames).box(0, 7) == data.box(0, 7)  # the same seed: the same crops (resumable)
    assert read(frames, seed=1).box(0, 7) != data.box(0, 7)
    jittered_image, jittered_labels = data[(0, 7)]
    assert jittered_labels.sum() > 0 and not np.array_equal(jittered_labels, data[0][1])
    assert read(frames, jitter=0).box(0, 7) == box
    with pytest.raises(ConfigError, match="jitter"):
        jitter_box(box, 0.6, np.random.default_rng(0))


def test_a_share_of_exact_boxes_keeps_that_share_of_the_draws_exact_and_is_seeded(frames):
    pairs = find_pairs(frames / "images", frames / "masks")

    def draws(recipe, seed=0):
        data = RoiCropDataset.from_pairs(
            pairs, TINY, PreprocessConfig(crop_rule=RULE), recipe=recipe, seed=seed
        )
        return data.boxes[0], [data.box(0, epoch) for epoch in range(400)]

    box, half = draws(CropRecipe(jitter=0.2, exact_share=0.5))
    exact = [b == box for b in half]
    assert 0.4 < np.mean(exact) < 0.6
    for b in (b for b, same in zip(half, exact, strict=True) if not same):  # the rest: jittered, within 20 %
        assert abs(b.x0 - box.x0) <= 0.2 * box.width + 1e-9 and abs(b.y1 - box.y1) <= 0.2 * box.height + 1e-9
    assert draws(CropRecipe(jitter=0.2, exact_share=0.5))[1] == half  # the same seed: the same draws
    assert draws(CropRecipe(jitter=0.2, exact_share=0.5), seed=1)[1] != half
    assert draws(CropRecipe(jitter=0.2, exact_share=1.0))[1] == [box] * 400
    # no exact share draws no coin: a recipe recorded before the share existed draws as it did
    _, none = draws(CropRecipe(jitter=0.2))
    assert none[7] == Box(
        x0=355.3141872076961, y0=248.2289752147705, x1=466.9111565437759, y1=365.8501534820598
    )
    assert not any(b == box for b in none)
    for wrong in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="share of exact boxes"):
            CropRecipe(exact_share=wrong)


def test_an_empty_mask_gets_a_random_crop_of_a_plausible_size_inside_the_image(frames):
    data = read(frames)
    sizes = {(b.height, b.width) for b in data.boxes if b is not None}
    assert sizes == {(100.0, 100.0), (60.0, 65.0)}
    drawn = [data.box(2, epoch) for epoch in range(50)]
    assert {(round(b.height, 6), round(b.width, 6)) for b in drawn} == sizes  # a size some mask has
    for b in drawn:
        assert 0 <= b.x0 and b.x1 <= WIDTH and 0 <= b.y0 and b.y1 <= HEIGHT
    assert len({(b.x0, b.y0) for b in drawn}) == 50
    image, labels = data[(2, 3)]
    assert image.shape == (1, 64, 64) and not labels.any()
    # with no object anywhere, the box is the rule's point-box size
    alone = RoiCropDataset([data.samples[2]], TINY, PreprocessConfig(crop_rule=RULE))
    side = RULE.point_box_fraction * HEIGHT
    assert alone.box(0, 0).height == pytest.approx(side) and alone.box(0, 0).width == pytest.approx(side)


def test_train_roi_crops_through_the_cli_records_the_crop_rule_in_the_checkpoint(capsys, tmp_path, frames):
    code = main(
        [
            "train",
            "--images",
            str(frames / "images"),
            "--masks",
            str(frames / "masks"),
            "--config",
            "tiny",
            "--roi-crops",
            "--crop-margin",
            "30px",
            "--val-fraction",
            "0",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "crops around each mask's box" in captured.err
    checkpoint = load_checkpoint(tmp_path / "run" / "final")
    rule = checkpoint.preprocess.crop_rule
    assert rule is not None and (rule.margin_px, rule.margin_fraction, rule.shape) == (30.0, 0.0, "box")
    assert "jittered" in rule.description
    recipe = checkpoint.metadata["training"]["roi_crops"]
    assert recipe["jitter"] == 0.1 and recipe["crop_rule"] == rule.to_dict()
    assert checkpoint.metadata["training"]["steps"] == 2


def test_train_with_exact_boxes_and_keep_best_records_both_and_keeps_the_best_validation(
    capsys, tmp_path, frames
):
    run = tmp_path / "run"
    argv = ["train", "--images", str(frames / "images"), "--masks", str(frames / "masks"), "--config", "tiny"]
    options = [
        "--roi-crops",
        "--jitter",
        "0.2",
        "--exact-boxes",
        "0.5",
        "--keep-best",
        "--val-fraction",
        "0.34",
    ]
    schedule = [
        "--steps",
        "4",
        "--validate-every",
        "1",
        "--batch-size",
        "2",
        "--lr",
        "3e-2",
        "--out",
        str(run),
    ]
    code = main([*argv, *options, *schedule])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    checkpoint = load_checkpoint(run / "final")
    assert checkpoint.metadata["training"]["roi_crops"]["exact_share"] == 0.5
    assert (
        "50 % of boxes exact, the rest edges jittered by up to 20 %"
        in checkpoint.preprocess.crop_rule.description
    )
    history = json.loads((run / "state" / "state.json").read_text())["history"]
    scores = {entry["step"]: entry["validation_dice"] for entry in history}
    assert sorted(scores) == [1, 2, 3, 4]
    best_step = max(scores, key=lambda step: (scores[step], -step))  # the first of equal bests
    metrics = checkpoint.metadata["metrics"]
    assert metrics["best_step"] == best_step and metrics["validation_dice"] == scores[best_step]
    assert f"validation Dice {scores[best_step]:.3f} (the best, at step {best_step})" in captured.out
    kept = load_file(run / "final" / "model.safetensors")
    best = load_best_weights(run)
    assert best is not None and all(torch.equal(kept[name], best[name]) for name in best)
    assert best_step < 4  # not the last step's weights: the run kept an earlier one
    last = load_file(run / "state" / "ema.safetensors")
    assert any(not torch.equal(kept[name], last[name]) for name in best)
    assert checkpoint.metadata["training"]["config"]["keep_best"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--exact-boxes", "0.5"], "--exact-boxes needs --roi-crops"),
        (["--roi-crops", "--exact-boxes", "2"], "share of exact boxes is in [0, 1]"),
        (["--roi-crops", "--crop-margin", "wide"], "--crop-margin takes pixels or per cent"),
        (["--roi-crops", "--crop-margin=-5px"], "--crop-margin must be zero or positive"),
        (["--crop-margin", "30px"], "--crop-margin needs --roi-crops"),
    ],
)
def test_crop_margin_mistakes_are_one_line_errors(capsys, tmp_path, frames, options, message):
    argv = ["train", "--images", str(frames / "images"), "--masks", str(frames / "masks")]
    code = main([*argv, "--config", "tiny", "--steps", "1", "--out", str(tmp_path / "run"), *options])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
