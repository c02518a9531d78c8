"""Segmenting images: ensembles, K classes, bad input, checkpoints that load safely, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.device import resolve_device
from medsegdiff_training.errors import CheckpointError, DeviceError, InvalidImageError, InvalidMaskError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import dice, hd95, iou, multi_threshold_dice, score
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.preprocess import check_label_map, prepare_image


def segmenter(tmp_path, **changes) -> Segmenter:
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny", **changes))
    with torch.no_grad():  # a non-zero head, so that outputs depend on the input
        model.head[-1].weight.normal_(0, 0.05)
    folder = save_checkpoint(tmp_path / "m", model, DiffusionConfig(prediction="v"), PreprocessConfig())
    return Segmenter(load_checkpoint(folder), device="cpu")


def test_any_image_size_comes_back_at_its_own_size(tmp_path):
    result = segmenter(tmp_path).segment(np.random.rand(70, 45), SamplingSettings(steps=3, ensemble=1))
    assert result.labels.shape == (70, 45) and result.probabilities.shape == (70, 45)
    assert result.uncertainty is None


def test_an_ensemble_is_one_batch_with_mean_labels_and_uncertainty(tmp_path):
    seg = segmenter(tmp_path)
    calls = []
    seg.model.register_forward_hook(lambda module, args, output: calls.append(output.shape[0]))
    result = seg.segment(np.random.rand(40, 40), SamplingSettings(steps=4, ensemble=5))
    assert calls == [5, 5, 5, 5]  # five members per network call, one call per step
    assert result.uncertainty.shape == (40, 40) and result.uncertainty.max() > 0
    assert set(np.unique(result.labels)) <= {0, 1}
    same = seg.summarise(torch.ones(3, 1, 32, 32), SamplingSettings(ensemble=3))[0]
    assert np.all(same.uncertainty == 0) and np.all(same.labels == 1)  # members agree: no uncertainty


def test_seeds_repeat_a_segmentation(tmp_path):
    seg = segmenter(tmp_path)
    image = np.random.rand(32, 32)
    a = seg.segment(image, SamplingSettings(steps=3, seed=5, ensemble=1))
    b = seg.segment(image, SamplingSettings(steps=3, seed=5, ensemble=1))
    c = seg.segment(image, SamplingSettings(steps=3, seed=6, ensemble=1))
    assert np.array_equal(a.probabilities, b.probabilities) and not np.array_equal(
        a.probabilities, c.probabilities
    )


def test_k_class_models_return_argmax_label_maps(tmp_path):
    seg = segmenter(tmp_path, num_classes=3, image_channels=3)
    result = seg.segment(np.random.rand(50, 60, 3), SamplingSettings(steps=2, ensemble=1))
    assert result.probabilities.shape == (3, 50, 60)
    assert np.allclose(result.probabilities.sum(0), 1, atol=1e-4)
    assert result.labels.max() <= 2


def test_images_users_get_wrong_are_refused_or_converted():
    config = named_config("tiny")
    with pytest.raises(InvalidImageError, match="NaN"):
        prepare_image(np.full((20, 20), np.nan), config)
    with pytest.raises(InvalidImageError, match="volume"):
        prepare_image(np.random.rand(30, 20, 20), config)
    with pytest.raises(InvalidImageError, match="numbers"):
        prepare_image(np.array([["a"] * 4] * 4), config)
    with pytest.raises(InvalidImageError, match="2D image"):
        prepare_image(np.random.rand(2, 2, 8, 8), config)
    assert prepare_image(np.random.rand(40, 30, 3), config).shape == (1, 1, 32, 32)  # RGB -> gray
    assert prepare_image(np.random.rand(3, 40, 30), named_config("tiny", image_channels=3)).shape == (
        1,
        3,
        32,
        32,
    )
    assert torch.all(prepare_image(np.full((9, 9), 7.0), config) == 0)  # a constant image is not NaN


def test_masks_users_get_wrong_are_refused_and_0_255_masks_are_binary():
    assert set(np.unique(check_label_map(np.array([[0, 255], [255, 0]]), 2))) == {0, 1}
    with pytest.raises(InvalidMaskError, match="3 classes"):
        check_label_map(np.array([[0, 5]]), 3)
    with pytest.raises(InvalidMaskError, match="shape"):
        check_label_map(np.zeros((4, 4)), 2, image_shape=(5, 5))
    assert not check_label_map(np.zeros((4, 4)), 2).any()  # an empty mask is valid data


def test_checkpoints_round_trip_bit_exactly(tmp_path):
    model = MedSegDiffUNet(named_config("tiny"))
    with torch.no_grad():
        model.skip_parsers[0].weight.mul_(torch.complex(torch.tensor(0.5), torch.tensor(0.25)))
    folder = save_checkpoint(tmp_path / "c", model, DiffusionConfig(), PreprocessConfig(), version="v1")
    loaded = load_checkpoint(folder)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    x, t, image = torch.randn(1, 1, 32, 32), torch.tensor([7]), torch.randn(1, 1, 32, 32)
    assert torch.equal(model.eval()(x, t, image), loaded.model(x, t, image))
    assert loaded.version == "v1"
    with pytest.raises(CheckpointError, match="never overwritten"):
        save_checkpoint(folder, model, DiffusionConfig(), PreprocessConfig())


def test_a_pickle_is_refused_without_being_loaded(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save({"weights": torch.zeros(1), "note": str(marker)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(tmp_path / "model.pt")


def test_broken_checkpoints_give_checkpoint_errors(tmp_path):
    folder = save_checkpoint(
        tmp_path / "c", MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
    )
    config = json.loads((folder / "config.json").read_text())
    config["model"]["base_channels"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(folder)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(folder)
    other = save_checkpoint(
        tmp_path / "d", MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
    )
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_device_choice():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            resolve_device("cuda")


def test_metric_conventions():
    empty, blob = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    blob[2:6, 2:6] = True
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice(empty, blob) == 0.0 and np.isnan(hd95(empty, blob))
    assert multi_threshold_dice(blob * 0.6, blob) == pytest.approx(0.6)  # found at 0.1, 0.3, 0.5 only
    k = score(np.array([[0, 1, 2]]), np.array([[0, 1, 1]]), num_classes=3)
    assert k["dice_class1"] == pytest.approx(2 / 3) and k["dice_class2"] == 0.0
    assert k["dice"] == pytest.approx(1 / 3)


def test_what_a_step_shows_is_the_first_members_foreground():
    from medsegdiff_training.inference import first_member_foreground

    # three classes, two members; the first says background on the left, class 2 on the right
    first = [[[1.0, -1.0]], [[-1.0, -1.0]], [[-1.0, 1.0]]]
    second = [[[-1.0, -1.0]], [[1.0, 1.0]], [[-1.0, -1.0]]]
    shown = first_member_foreground(torch.tensor([first, second]))
    assert shown.dtype == np.float32
    np.testing.assert_allclose(shown, [[0.0, 1.0]])
    # a binary model: the foreground probability itself, (x + 1) / 2
    np.testing.assert_allclose(first_member_foreground(torch.tensor([[[[-0.5, 0.5]]]])), [[0.25, 0.75]])
