"""The metric conventions written in metrics.py, checked on masks with known answers.

(Empty/empty Dice, one-empty HD95 and a 3-class score are in test_inference.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from medsegdiff_training.metrics import (
    OFFICIAL_THRESHOLDS,
    dice,
    hd95,
    iou,
    multi_threshold_dice,
    score,
    summarise_scores,
)


def square(top: int, left: int, side: int = 6, shape=(30, 30)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_dice_and_iou_of_overlapping_squares():
    a, b = square(5, 5), square(5, 8)  # 36 pixels each, 18 shared
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(18 / 54)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, square(20, 20)) == 0.0 and iou(a, square(20, 20)) == 0.0


def test_hd95_is_symmetric_scales_with_spacing_and_is_nan_when_exactly_one_mask_is_empty():
    a, b = square(5, 5), square(5, 9)  # shifted by 4 pixels along x
    assert hd95(a, b) == pytest.approx(4.0) and hd95(b, a) == pytest.approx(4.0)
    assert hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(2.0)  # x pixels are 0.5 mm wide
    assert hd95(a, a) == 0.0
    empty = np.zeros_like(a)
    assert np.isnan(hd95(a, empty)) and np.isnan(hd95(empty, a)) and hd95(empty, empty) == 0.0
    # a mask touching the border still has its border pixels as surface
    assert hd95(square(0, 0), square(0, 2)) == pytest.approx(2.0)


def test_the_official_5_threshold_dice_averages_over_0_1_to_0_9():
    assert OFFICIAL_THRESHOLDS == (0.1, 0.3, 0.5, 0.7, 0.9)
    truth = square(5, 5)
    probabilities = truth * 0.8  # found at thresholds 0.1 .. 0.7, lost at 0.9
    assert multi_threshold_dice(probabilities, truth) == pytest.approx(4 / 5)
    assert multi_threshold_dice(np.zeros((30, 30)), np.zeros((30, 30), bool)) == 1.0


def test_score_of_a_binary_model_counts_any_foreground_label():
    truth = square(5, 5).astype(np.uint8)
    result = score(truth * 1, truth, num_classes=2, probabilities=truth * 0.95)
    assert result["dice"] == result["dice_class1"] == 1.0 and result["hd95"] == 0.0
    assert result["dice_5threshold"] == 1.0
    assert "dice_class2" not in result
    with pytest.raises(ValueError, match="differ in shape"):
        score(truth, truth[:-1])


def test_k_class_means_skip_undefined_hd95():
    truth = np.zeros((30, 30), np.uint8)
    truth[square(5, 5)] = 1
    truth[square(18, 18)] = 2
    prediction = truth.copy()
    prediction[prediction == 2] = 0  # class 2 missed entirely: HD95 undefined
    result = score(prediction, truth, num_classes=3)
    assert result["dice_class1"] == 1.0 and result["dice_class2"] == 0.0 and result["dice"] == 0.5
    assert np.isnan(result["hd95_class2"]) and result["hd95"] == 0.0  # mean over the defined class
    assert "dice_5threshold" not in score(prediction, truth, num_classes=3, probabilities=np.zeros((30, 30)))


def test_summaries_skip_nans_and_count_undefined_hd95():
    scores = [
        {"dice": 1.0, "hd95": 2.0},
        {"dice": 0.0, "hd95": float("nan")},
        {"dice": 0.5, "hd95": 4.0},
    ]
    summary = summarise_scores(scores)
    assert summary["count"] == 3 and summary["dice"] == pytest.approx(0.5)
    assert summary["hd95"] == pytest.approx(3.0) and summary["hd95_undefined"] == 1
    assert summarise_scores([]) == {"count": 0.0}


def test_structures_score_unions_of_classes():
    from medsegdiff_training.metrics import parse_structures, structure_scores

    truth = np.zeros((20, 20), np.uint8)
    truth[2:18, 2:18] = 1
    truth[6:14, 6:14] = 2
    labels = truth.copy()
    labels[labels == 2] = 1  # the cup predicted as rim: the disc is still perfect
    scores = structure_scores(labels, truth, parse_structures("disc=1+2,cup=2"))
    assert scores["disc_dice"] == 1.0 and scores["disc_iou"] == 1.0 and scores["disc_hd95"] == 0.0
    assert scores["cup_dice"] == 0.0
    for text in ["disc", "disc=", "disc=0+1", "disc=a", "=1"]:
        with pytest.raises(ValueError, match="is not a structure"):
            parse_structures(text)


def test_integer_masks_count_as_their_foreground():
    a, b = square(5, 5), square(5, 8)
    as_255, as_2 = a.astype(np.uint8) * 255, b.astype(np.uint8) * 2
    assert dice(as_255, a) == 1.0 and dice(as_255, as_2) == pytest.approx(0.5)
    assert iou(as_255, as_2) == pytest.approx(18 / 54)
    assert hd95(as_255, a) == 0.0 and hd95(as_255, as_2) == hd95(a, b)


def test_iou_of_empty_and_single_pixel_masks():
    empty, pixel = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    pixel[1, 1] = True
    assert iou(empty, empty) == 1.0 and iou(pixel, empty) == 0.0 and iou(pixel, pixel) == 1.0


def test_hd95_is_the_95th_percentile_of_both_directed_surface_distances():
    one, other = np.zeros((12, 12), bool), np.zeros((12, 12), bool)
    one[2, 3], other[2, 7] = True, True
    assert hd95(one, other) == 4.0
    line, point = np.zeros((12, 12), bool), np.zeros((12, 12), bool)
    line[0, :10] = True  # a one-pixel line is all surface
    point[0, 0] = True
    distances = [*range(10), 0]  # line -> point, then point -> line
    assert hd95(line, point) == pytest.approx(np.percentile(distances, 95))  # 8.5
    assert hd95(line, point, spacing=(1.0, 2.0)) == pytest.approx(2 * np.percentile(distances, 95))


def test_a_soft_mask_exactly_at_a_threshold_is_background_there():
    probabilities, truth = np.full((2, 2), 0.5), np.zeros((2, 2), bool)
    # foreground at 0.1 and 0.3 (Dice 0 against an empty truth); empty at 0.5, 0.7, 0.9 (Dice 1)
    assert multi_threshold_dice(probabilities, truth) == pytest.approx(3 / 5)


def test_score_of_a_binary_label_map_and_of_an_undefined_hd95():
    labels, truth = square(5, 5).astype(np.uint8) * 255, square(5, 8).astype(np.uint8)
    result = score(labels, truth, spacing=(1.0, 2.0))
    assert set(result) == {"dice", "iou", "hd95", "dice_class1", "iou_class1", "hd95_class1"}
    assert result["dice"] == result["dice_class1"] == pytest.approx(0.5)
    assert result["iou"] == result["iou_class1"] == pytest.approx(18 / 54)
    assert result["hd95_class1"] == pytest.approx(hd95(labels > 0, truth > 0, spacing=(1.0, 2.0)))
    assert result["hd95_class1"] != pytest.approx(hd95(labels > 0, truth > 0))  # the spacing counts
    undefined = score(np.zeros((30, 30), np.uint8), truth)
    assert np.isnan(undefined["hd95"]) and undefined["dice"] == 0.0
