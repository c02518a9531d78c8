"""Crops for box prompts: relative to the box (scale-free), per object, jittered from the seed,
and a box channel that the checkpoint carries and every path builds the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.data.augment import augment_batch
from medsegdiff_training.data.roi_crops import CropRecipe, RoiCropDataset
from medsegdiff_training.errors import CheckpointError, ConfigError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompted import prepare_crops
from medsegdiff_training.prompts import Box, CropRule, CropWindow, box_channel
from medsegdiff_training.train_config import AugmentConfig

TINY = named_config("tiny")
BOXED = named_config("tiny", prompt_channels=1)
RELATIVE = CropRule(margin_fraction=0.2)


def ellipse(shape, centre, radii):
    rows, columns = np.mgrid[: shape[0], : shape[1]] + 0.5
    return ((rows - centre[0]) / radii[0]) ** 2 + ((columns - centre[1]) / radii[1]) ** 2 <= 1


def scene(scale: int):
    """Two objects on a textured background, drawn at ``scale`` times the pixels."""
    shape = (100 * scale, 160 * scale)
    labels = (ellipse(shape, (30 * scale, 40 * scale), (12 * scale, 20 * scale))).astype(np.uint8)
    labels[ellipse(shape, (70 * scale, 120 * scale), (15 * scale, 10 * scale))] = 1
    rows, columns = np.mgrid[: shape[0], : shape[1]] / scale
    image = np.where(labels > 0, 180.0, 60.0) + 20 * np.sin(rows / 3) * np.cos(columns / 5)
    return image, labels


def test_a_relative_margin_cuts_the_same_crop_of_an_object_at_any_size_in_pixels():
    crops = []
    for scale in (1, 2, 4):
        image, labels = scene(scale)
        data = RoiCropDataset.from_arrays([image], [labels], TINY, PreprocessConfig(crop_rule=RELATIVE))
        window = data.window(0)
        assert window.top == pytest.approx(
            18 * scale - 0.2 * 67 * scale, abs=1
        )  # the box's top (both objects) - 20 % of its height
        crops.append(data[0][0].numpy())
    for other in crops[1:]:
        assert np.abs(other - crops[0]).mean() < 0.05  # the same picture, whatever the pixels
    # a pixel margin does not: at 4x the crop shows the object with four times less context
    fixed = CropRule(margin_px=10, margin_fraction=0)
    small = RoiCropDataset.from_arrays([scene(1)[0]], [scene(1)[1]], TINY, PreprocessConfig(crop_rule=fixed))
    large = RoiCropDataset.from_arrays([scene(4)[0]], [scene(4)[1]], TINY, PreprocessConfig(crop_rule=fixed))
    assert np.abs(small[0][0].numpy() - large[0][0].numpy()).mean() > 0.1


def per_object(seed=0, jitter=0.2, **recipe) -> RoiCropDataset:
    image, labels = scene(1)
    return RoiCropDataset.from_arrays(
        [image],
        [labels],
        TINY,
        PreprocessConfig(crop_rule=RELATIVE),
        recipe=CropRecipe(per_object=True, jitter=jitter, **recipe),
        seed=seed,
    )


def test_each_object_is_a_prompt_of_its_own_and_the_target_is_that_object_alone():
    data = per_object()
    assert [b.to_list() for b in data.objects[0].boxes] == [[20, 18, 60, 42], [110, 55, 130, 85]]
    assert {data.draw(0, epoch)[0] for epoch in range(40)} == {1, 2}  # both objects get drawn
    # two objects side by side, crops wide enough to hold both: the target holds the prompted one only
    labels = np.zeros((60, 120), np.uint8)
    labels[20:40, 20:45] = 1
    labels[20:40, 60:85] = 1
    image = np.where(labels > 0, 200.0, 50.0)
    wide = PreprocessConfig(crop_rule=CropRule(margin_fraction=1.5))
    alone = RoiCropDataset.from_arrays(
        [image], [labels], TINY, wide, recipe=CropRecipe(per_object=True, jitter=0)
    )
    for epoch in range(6):
        number, _, window, _ = alone.draw(0, epoch)
        target = alone[(0, epoch)][1].numpy()
        # the other object lies inside this crop, and none of it is target
        other_column = 72 if number == 1 else 32  # the other square's middle column
        crop_column = int((other_column + 0.5 - window.left) / window.shape[1] * 32)
        assert 0 <= crop_column < 32 and image[30, other_column] == 200
        assert not target[:, crop_column].any() and target.sum() > 0
    single = RoiCropDataset.from_arrays(
        [scene(1)[0]], [scene(1)[1]], TINY, PreprocessConfig(crop_rule=RELATIVE)
    )
    assert single.boxes[0].to_list() == [20, 18, 130, 85]  # without per_object: all foreground at once


def test_loose_box_jitter_moves_edges_both_ways_within_its_fraction_and_repeats_from_the_seed():
    data = per_object(seed=5)
    moves = {"out": 0, "in": 0}
    for epoch in range(200):
        number, box, _, _ = data.draw(0, epoch)
        truth = data.objects[0].boxes[number - 1]
        for edge, size, outward in (
            (box.x0 - truth.x0, truth.width, -1),
            (box.x1 - truth.x1, truth.width, 1),
            (box.y0 - truth.y0, truth.height, -1),
            (box.y1 - truth.y1, truth.height, 1),
        ):
            assert abs(edge) <= 0.2 * size + 1e-9
            moves["out" if edge * outward > 0 else "in"] += 1
    assert min(moves.values()) > 300  # loose and tight boxes alike
    again, other = per_object(seed=5), per_object(seed=6)
    assert [again.draw(0, e)[1] for e in range(20)] == [data.draw(0, e)[1] for e in range(20)]
    assert [other.draw(0, e)[1] for e in range(20)] != [data.draw(0, e)[1] for e in range(20)]
    with pytest.raises(ConfigError, match="jitter"):
        CropRecipe(jitter=0.5)


def test_scale_augmentation_blurs_a_crop_as_fewer_pixels_would_and_the_clean_crop_keeps_its_detail():
    data = per_object(jitter=0.0, scale=(0.1, 0.2))
    sizes = [data.draw(0, epoch)[3] for epoch in range(20)]
    assert all(size is not None and max(size) <= 0.2 * 48 + 1 for size in sizes)
    blurred = data[(0, 1)][0].numpy()
    clean = per_object(jitter=0.0)[(0, 1)][0].numpy()
    assert np.abs(np.diff(blurred, axis=-1)).mean() < 0.7 * np.abs(np.diff(clean, axis=-1)).mean()


def test_the_box_channel_marks_the_box_inside_the_crop_the_same_way_for_training_and_prompts(tmp_path):
    channel = box_channel(Box(25, 20, 75, 60), CropWindow(10, 15, 70, 85), (24, 28))
    inside = channel > 0
    rows, columns = np.nonzero(inside)
    # the crop spans rows 10..70 and columns 15..85 at 2.5 px per pixel: the box 20..60 x 25..75
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (4, 19, 4, 23)
    assert set(np.unique(channel)) == {-1.0, 1.0}
    image, labels = scene(1)
    preprocess = PreprocessConfig(crop_rule=RELATIVE, prompt_encoding="box-channel")
    data = RoiCropDataset.from_arrays(
        [image],
        [labels],
        BOXED,
        preprocess,
        recipe=CropRecipe(per_object=True, jitter=0.2, context=(0.05, 0.6)),
    )
    _, box, window, _ = data.draw(0, 4)
    item = data[(0, 4)][0]
    assert item.shape == (2, 32, 32)
    np.testing.assert_array_equal(item[1].numpy(), box_channel(box, window, (32, 32)))
    # the prompt path cuts the same crop and the same channel for that box under the same margin
    margin = (window.bottom - window.top - box.height) / 2 / box.height
    rule = CropRule(margin_fraction=margin)
    checkpoint = load_checkpoint(
        save_checkpoint(tmp_path / "m", MedSegDiffUNet(BOXED), DiffusionConfig(), preprocess)
    )
    prepared, windows = prepare_crops(
        Segmenter(checkpoint, device="cpu"), image[None].astype(np.float32), [box], rule
    )
    np.testing.assert_array_equal(prepared[0, 1].numpy(), box_channel(box, windows[0], (32, 32)))
    # the margin drawn per sample varies where the box sits in the crop
    placements = {data.draw(0, epoch)[2].shape for epoch in range(20)}
    assert len(placements) > 10


def test_a_whole_image_run_of_a_box_channel_model_marks_the_whole_image(tmp_path):
    preprocess = PreprocessConfig(crop_rule=RELATIVE, prompt_encoding="box-channel")
    checkpoint = load_checkpoint(
        save_checkpoint(tmp_path / "m", MedSegDiffUNet(BOXED), DiffusionConfig(), preprocess)
    )
    segmenter = Segmenter(checkpoint, device="cpu")
    prepared = segmenter.prepare(np.random.rand(50, 70))
    assert prepared.shape == (1, 2, 32, 32) and bool((prepared[0, 1] == 1).all())
    result = segmenter.segment(np.random.rand(50, 70), SamplingSettings(steps=2, ensemble=1))
    assert result.labels.shape == (50, 70)


def test_the_checkpoint_carries_the_prompt_encoding_and_refuses_one_that_disagrees(tmp_path):
    preprocess = PreprocessConfig(crop_rule=RELATIVE, prompt_encoding="box-channel")
    folder = save_checkpoint(tmp_path / "m", MedSegDiffUNet(BOXED), DiffusionConfig(), preprocess)
    loaded = load_checkpoint(folder)
    assert loaded.preprocess.prompt_encoding == "box-channel" and loaded.model_config.prompt_channels == 1
    assert loaded.preprocess.crop_rule == RELATIVE
    document = json.loads((folder / "config.json").read_text())
    document["preprocess"]["prompt_encoding"] = "none"
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="prompt channel"):
        load_checkpoint(folder)
    document["preprocess"]["prompt_encoding"] = "arrows"
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises((CheckpointError, ConfigError), match="prompt_encoding"):
        load_checkpoint(folder)
    with pytest.raises(ConfigError, match="prompt channel"):
        save_checkpoint(tmp_path / "n", MedSegDiffUNet(BOXED), DiffusionConfig(), PreprocessConfig())


def test_augmentation_moves_the_box_channel_with_the_image_but_never_changes_its_values():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(4, 2, 32, 32) * 2 - 1
    image[:, 1] = -1
    image[:, 1, 8:24, 8:24] = 1
    x0 = torch.where(image[:, 1:2] > 0, 1.0, -1.0)
    strong = AugmentConfig(rotate_degrees=20, gamma=0.5, contrast=0.5, brightness=0.5)
    augmented, mask = augment_batch(image, x0, strong, generator=generator, prompt_channels=1)
    assert set(torch.unique(augmented[:, 1]).tolist()) == {-1.0, 1.0}
    # the box channel moved exactly as the mask did (both were the same square)
    assert torch.equal(augmented[:, 1:2] > 0, mask > 0)
    assert not torch.equal(augmented[:, 0], image[:, 0])


def test_a_rule_that_clips_keeps_each_drawn_boxs_object_inside_it_but_never_a_points(tmp_path):
    """The answer to a drawn box stays inside it; a point's guessed box bounds nothing."""
    from medsegdiff_training.prompts import Point, paste_objects

    window = CropWindow(0, 0, 40, 40)
    everywhere = [np.ones((40, 40), np.float32)]
    box = Box(10, 5, 30, 20)
    clipped = paste_objects(everywhere, [window], (40, 40), clip_boxes=[box]).labels
    rows, columns = np.nonzero(clipped)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (5, 19, 10, 29)
    assert paste_objects(everywhere, [window], (40, 40)).labels.all()  # no clip box: the whole window
    # through the prompt path: the checkpoint's rule says whether to clip
    image, _ = scene(1)
    rule = CropRule(margin_fraction=0.5, clip_to_box=True)
    preprocess = PreprocessConfig(crop_rule=rule, prompt_encoding="box-channel")
    segmenter = Segmenter(
        load_checkpoint(
            save_checkpoint(tmp_path / "m", MedSegDiffUNet(BOXED), DiffusionConfig(), preprocess)
        ),
        device="cpu",
    )
    from medsegdiff_training.prompted import segment_prompts

    settings = SamplingSettings(steps=1, ensemble=1, threshold=0.0)  # every pixel of a crop is foreground
    drawn = segment_prompts(segmenter, image, [Box(30, 20, 50, 40)], settings).labels
    rows, columns = np.nonzero(drawn)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (20, 39, 30, 49)
    pointed = segment_prompts(segmenter, image, [Point(40, 30)], settings).labels
    assert pointed.sum() > 20 * 20  # the guessed box's crop, margins and all
    assert load_checkpoint(tmp_path / "m").preprocess.crop_rule.clip_to_box
