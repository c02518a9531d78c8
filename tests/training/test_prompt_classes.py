"""How a multi-class model's classes map to prompted objects (a real 3-class tiny model).

The rule (``prompted.py``, docs/user-guide.md): a binary model labels object i with i (prompt order);
a K-class model labels each object's pixels with their class 1..K-1 (the argmax over the
foreground classes of that object's crop), an object's foreground being
``1 - P(background) > threshold``; where crops overlap, the object with the lower
background probability wins; object ids are not kept.
"""

from __future__ import annotations

import numpy as np
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import Box, CropRule

SHAPE = (300, 500)
# the first two overlap; three boxes, so an object id 3 could not pass for a class
BOXES = [Box(20, 30, 120, 110), Box(90, 60, 200, 150), Box(300, 150, 420, 260)]
RULE = CropRule(margin_px=10, margin_fraction=0.0)


def segmenter(tmp_path, num_classes: int) -> Segmenter:
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny", num_classes=num_classes))
    folder = save_checkpoint(
        tmp_path / f"m{num_classes}", model, DiffusionConfig(), PreprocessConfig(crop_rule=RULE)
    )
    return Segmenter(load_checkpoint(folder), device="cpu")


def by_the_rule(result, threshold: float) -> np.ndarray:
    """The label map the stated rule gives from each object's own class probabilities."""
    expected = np.zeros(SHAPE, np.int32)
    best = np.zeros(SHAPE, np.float32)
    for found, window in zip(result.objects, result.windows, strict=True):
        probabilities = found.probabilities
        assert probabilities.shape == (3, *window.shape)  # every class, at the crop's size
        foreground, classes = 1 - probabilities[0], probabilities[1:].argmax(0) + 1
        image_slices, crop_slices = window.overlap(SHAPE)
        foreground, classes = foreground[crop_slices], classes[crop_slices]
        for (row, column), value in np.ndenumerate(foreground):
            y, x = image_slices[0].start + row, image_slices[1].start + column
            if value > threshold and value > best[y, x]:
                best[y, x], expected[y, x] = value, classes[row, column]
    return expected


def test_a_three_class_model_labels_each_objects_pixels_with_their_class(tmp_path):
    image = np.random.default_rng(0).normal(100, 20, SHAPE).astype(np.float32)
    settings = SamplingSettings(sampler="ddim", steps=2, ensemble=2, seed=0, threshold=0.5)
    result = segment_prompts(segmenter(tmp_path, 3), image, BOXES, settings, keep_objects=True)
    assert result.label_meaning == "classes" and result.prompts_record()["labels"] == "classes"
    labels = result.labels
    assert np.array_equal(labels, by_the_rule(result, settings.threshold))
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels > 0).any()  # classes, never the object id 3
    third = result.windows[2]
    assert (labels[third.top : third.bottom, third.left : third.right] > 0).any()  # the third object: classes
    inside = np.zeros(SHAPE, bool)
    for window in result.windows:
        image_slices, _ = window.overlap(SHAPE)
        inside[image_slices] = True
    assert not labels[~inside].any()  # nothing outside the crops


def test_a_binary_model_labels_objects_by_prompt_order(tmp_path):
    image = np.random.default_rng(0).normal(100, 20, SHAPE).astype(np.float32)
    settings = SamplingSettings(sampler="ddim", steps=2, ensemble=1, seed=0, threshold=0.01)
    result = segment_prompts(segmenter(tmp_path, 2), image, BOXES, settings)
    assert result.label_meaning == "objects" and result.prompts_record()["labels"] == "objects"
    assert set(np.unique(result.labels)) == {0, 1, 2, 3}
    third = result.windows[2]
    assert (result.labels[third.top : third.bottom, third.left : third.right] == 3).mean() > 0.9
