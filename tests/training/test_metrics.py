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
