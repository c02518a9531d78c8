"""Box and point prompts: crop rule, crop, resize, paste back, ids, overlaps (exact geometry).

The geometry tests replace the sampler by an "identity model" (foreground = the crop's own
brightness after the real crop, normalisation and resize), so an object must come back
exactly where the bright disc is.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import ConfigError, InvalidImageError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompted import prepare_crops, prompted_steps
from medsegdiff_training.prompts import (
    DEFAULT_CROP_RULE,
    Box,
    CropRule,
    CropWindow,
    Point,
    boxes_from_mask,
    extract_crop,
    inscribed_ellipse,
    mask_box,
    paste_objects,
    resize_bilinear,
    resolve_prompts,
)

HEIGHT, WIDTH = 1100, 1500


def make_segmenter(tmp_path, crop_rule=None, **changes) -> Segmenter:
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny", **changes))
    folder = save_checkpoint(tmp_path / "m", model, DiffusionConfig(), PreprocessConfig(crop_rule=crop_rule))
    return Segmenter(load_checkpoint(folder), device="cpu")


def disc(shape, centre_row, centre_column, radius) -> np.ndarray:
    rows = np.arange(shape[0])[:, None] + 0.5
    columns = np.arange(shape[1])[None, :] + 0.5
    return (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2


def identity_segment(segmenter, image, boxes, rule):
    """The real crop path with the crop's own brightness as the probability."""
    prepared, windows = prepare_crops(segmenter, image[None].astype(np.float32), boxes, rule)
    foreground = [((crop[0] + 1) / 2).numpy() for crop in prepared]
    return paste_objects(foreground, windows, image.shape).labels


def assert_within_one_pixel(found: np.ndarray, truth: np.ndarray) -> None:
    """Every pixel farther than 1 px from the true outline is labelled as the truth says."""
    from scipy import ndimage

    outline = ndimage.binary_dilation(truth, iterations=1) & ~ndimage.binary_erosion(truth, iterations=1)
    wrong = (found != truth) & ~outline
    assert not wrong.any(), f"{wrong.sum()} pixels wrong more than 1 px from the outline"
    assert truth.sum() * 0.97 < found.sum() < truth.sum() * 1.03


@pytest.mark.parametrize(
    "rule",
    [
        DEFAULT_CROP_RULE,
        CropRule(margin_px=30, margin_fraction=0),
        CropRule(shape="square", margin_fraction=0.5),
    ],
)
def test_a_box_around_a_bright_disc_gives_the_disc_within_one_pixel(tmp_path, rule):
    segmenter = make_segmenter(tmp_path, image_size=(96, 96))
    truth = disc((HEIGHT, WIDTH), 700.0, 1200.0, 60)
    image = truth * 200.0 + 20
    box = Box(1200 - 66, 700 - 58, 1200 + 63, 700 + 61)  # a loose, uneven box, as a user draws
    labels = identity_segment(segmenter, image, [box], rule)
    assert set(np.unique(labels)) == {0, 1}
    assert_within_one_pixel(labels == 1, truth)


def test_a_box_touching_the_border_is_padded_not_shifted(tmp_path):
    segmenter = make_segmenter(tmp_path, image_size=(96, 96))
    truth = disc((HEIGHT, WIDTH), 40.0, 25.0, 50)  # cut by the top and left edges
    image = truth * 200.0 + 20
    box = mask_box(truth)
    assert box is not None and box.x0 == 0 and box.y0 == 0
    window = DEFAULT_CROP_RULE.window(box)
    assert window.top < 0 and window.left < 0
    crop = extract_crop(image[None], window)
    image_slices, crop_slices = window.overlap(image.shape)
    np.testing.assert_array_equal(crop[0][crop_slices], image[image_slices])
    assert crop[0, 0, 0] == image.min()
    assert_within_one_pixel(identity_segment(segmenter, image, [box], DEFAULT_CROP_RULE) == 1, truth)


def test_objects_get_ids_one_to_n_in_prompt_order(tmp_path):
    segmenter = make_segmenter(tmp_path, image_size=(96, 96))
    centres = [(200.0, 300.0), (800.0, 400.0), (500.0, 1300.0)]
    truths = [disc((HEIGHT, WIDTH), r, c, 45) for r, c in centres]
    image = np.sum(truths, axis=0) * 150.0
    boxes = [mask_box(t) for t in truths]
    labels = identity_segment(segmenter, image, [boxes[2], boxes[0], boxes[1]], DEFAULT_CROP_RULE)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    for label, truth in zip((2, 3, 1), truths, strict=True):
        assert_within_one_pixel(labels == label, truth)


def test_where_boxes_overlap_the_more_probable_object_wins():
    windows = [CropWindow(0, 0, 60, 60), CropWindow(30, 30, 90, 90)]
    for first, second, winner in ((0.7, 0.9, 2), (0.9, 0.7, 1), (0.8, 0.8, 1)):
        maps = [np.full((60, 60), first, np.float32), np.full((60, 60), second, np.float32)]
        pasted = paste_objects(maps, windows, (100, 100))
        assert pasted.labels[45, 45] == winner
        assert pasted.labels[10, 10] == 1 and pasted.labels[80, 80] == 2 and pasted.labels[95, 5] == 0
        assert pasted.probability[45, 45] == max(first, second)


def test_below_threshold_nothing_is_claimed_and_uncertainty_is_the_largest_spread():
    windows = [CropWindow(0, 0, 10, 10), CropWindow(5, 5, 15, 15)]
    pasted = paste_objects(
        [np.full((10, 10), 0.4, np.float32)] * 2,
        windows,
        (20, 20),
        uncertainty=[np.full((10, 10), 0.1, np.float32), np.full((10, 10), 0.3, np.float32)],
    )
    assert not pasted.labels.any()
    assert pasted.uncertainty[7, 7] == pytest.approx(0.3) and pasted.uncertainty[2, 2] == pytest.approx(0.1)
    assert pasted.uncertainty[18, 2] == 0


def test_a_point_is_a_box_of_the_last_box_size_or_the_default_centred_on_it(tmp_path):
    boxes = resolve_prompts([Point(100, 50)], (400, 800))
    side = DEFAULT_CROP_RULE.point_box_fraction * 400
    assert boxes == [Box(100 - side / 2, 50 - side / 2, 100 + side / 2, 50 + side / 2)]
    boxes = resolve_prompts([Box(10, 10, 50, 30), Point(200, 100), Point(300, 300)], (400, 800))
    assert boxes[1] == Box(180, 90, 220, 110) and boxes[2] == Box(280, 290, 320, 310)
    assert resolve_prompts([Point(5, 5)], (400, 800), last_box_size=(10, 20))[0] == Box(
        0, 0, 15, 10
    )  # clipped

    segmenter = make_segmenter(tmp_path, image_size=(96, 96))
    truth = disc((HEIGHT, WIDTH), 300.0, 900.0, 50)
    boxes = resolve_prompts([Box(0, 0, 110, 110), Point(900, 300)], (HEIGHT, WIDTH))
    labels = identity_segment(segmenter, truth * 100.0, boxes[1:], DEFAULT_CROP_RULE)
    assert_within_one_pixel(labels == 1, truth)


def test_prompts_outside_the_image_and_empty_boxes_are_refused_with_a_reason():
    with pytest.raises(InvalidImageError, match="outside"):
        resolve_prompts([Box(10, 10, 20, 20), Box(500, 10, 520, 20)], (100, 400))
    with pytest.raises(InvalidImageError, match="x1 > x0"):
        Box(10, 10, 10, 20)
    with pytest.raises(ConfigError, match="shape"):
        CropRule(shape="circle")


def test_boxes_from_mask_give_one_box_per_component_and_the_ellipse_stays_inside():
    mask = np.zeros((50, 60), bool)
    mask[5:10, 3:20] = True
    mask[30:45, 40:42] = True
    mask[10, 20] = True  # diagonal neighbour: the same component
    assert boxes_from_mask(mask) == [Box(3, 5, 21, 11), Box(40, 30, 42, 45)]
    assert mask_box(np.zeros((4, 4))) is None
    ellipse = inscribed_ellipse([Box(10, 10, 30, 20)], (50, 60))
    rows, columns = np.nonzero(ellipse)
    assert rows.min() >= 10 and rows.max() < 20 and columns.min() >= 10 and columns.max() < 30
    assert abs(ellipse.sum() - np.pi * 10 * 5) < 10


def test_resize_bilinear_matches_torch():
    array = np.random.default_rng(0).random((2, 13, 17)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(array)[None], size=(40, 31), mode="bilinear", align_corners=False
    )[0].numpy()
    np.testing.assert_allclose(resize_bilinear(array, (40, 31)), expected, atol=1e-5)


def test_the_crop_rule_is_saved_in_the_checkpoint_and_read_back(tmp_path):
    rule = CropRule(shape="square", margin_fraction=0.53, description="disc square")
    segmenter = make_segmenter(tmp_path, crop_rule=rule)
    assert segmenter.checkpoint.preprocess.crop_rule == rule
    assert PreprocessConfig().prompt_crop_rule() == DEFAULT_CROP_RULE


def test_all_prompts_and_members_run_as_one_batch_and_stay_in_their_crops(tmp_path):
    segmenter = make_segmenter(tmp_path)
    image = np.random.default_rng(1).random((HEIGHT, WIDTH))
    prompts = [Box(100, 100, 200, 180), Box(1000, 700, 1100, 900), Point(50, 1000)]
    settings = SamplingSettings(steps=3, ensemble=2, threshold=0.3)
    steps = prompted_steps(segmenter, image, prompts, settings)
    batches = []
    try:
        while True:
            batches.append(next(steps).x_t.shape[0])
    except StopIteration as stop:
        result = stop.value
    assert batches == [6, 6, 6]
    assert result.labels.shape == (HEIGHT, WIDTH) and result.uncertainty is not None
    inside = np.zeros((HEIGHT, WIDTH), bool)
    for window in result.windows:
        inside[max(window.top, 0) : window.bottom, max(window.left, 0) : window.right] = True
    assert not result.labels[~inside].any()
    assert set(np.unique(result.labels)) <= {0, 1, 2, 3}
    assert result.prompts_record()["boxes"][2] == {
        "slice": 0,
        "box": [0.0, 900.0, 100.0, 1100.0],
    }  # 100 x 200
