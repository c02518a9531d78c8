"""The optional soft-Dice loss on the predicted mask, beside the paper's MSE."""

from __future__ import annotations

import pytest
import torch

from medsegdiff_training.config import DiffusionConfig, named_config
from medsegdiff_training.data import SegmentationDataset
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss, mask_to_model_space, soft_dice_loss
from medsegdiff_training.trainer import TrainConfig, train

TINY = named_config("tiny")


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_output_converts_back_to_the_true_mask(prediction):
    schedule = NoiseSchedule(DiffusionConfig(prediction=prediction))
    x0 = torch.randint(0, 2, (5, 1, 6, 6)).float() * 2 - 1
    noise, t = torch.randn(5, 1, 6, 6), torch.tensor([0, 10, 300, 800, 990])
    x_t = schedule.q_sample(x0, t, noise)
    recovered = schedule.x0_from_output(schedule.training_target(x0, t, noise), x_t, t)
    assert torch.allclose(recovered, x0, atol=1e-3)


def test_soft_dice_is_zero_for_the_true_mask_and_near_one_for_its_opposite():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:4] = 1
    x0 = mask_to_model_space(labels, 2)
    assert float(soft_dice_loss(x0, x0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(-x0, x0)) > 0.95
    assert float(soft_dice_loss(x0 * 5, x0)) == pytest.approx(0.0, abs=1e-6)  # clamped to the mask range


def test_with_several_classes_the_background_channel_is_left_out():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4] = 1
    labels[0, 4:6] = 2
    x0 = mask_to_model_space(labels, 3)
    wrong_background = x0.clone()
    wrong_background[:, 0] = -wrong_background[:, 0]
    assert float(soft_dice_loss(wrong_background, x0)) == pytest.approx(0.0, abs=1e-6)
    wrong_class = x0.clone()
    wrong_class[:, 2] = -1
    assert float(soft_dice_loss(wrong_class, x0)) == pytest.approx(0.5, abs=0.05)


def test_the_mask_loss_adds_to_the_paper_loss_and_reaches_the_weights():
    torch.manual_seed(0)
    model = MedSegDiffUNet(TINY)
    schedule = NoiseSchedule(DiffusionConfig(prediction="v"))
    images = torch.randn(4, 1, 32, 32)
    x0 = mask_to_model_space(torch.randint(0, 2, (4, 32, 32)), 2)
    losses = []
    for weight in (0.0, 1.0):
        model.zero_grad()
        loss = diffusion_loss(model, schedule, images, x0, torch.Generator().manual_seed(3), weight)
        loss.backward()
        losses.append(float(loss.detach()))
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[1] > losses[0]  # the same noise and t: the soft-Dice term is what was added


def test_training_with_the_mask_loss_runs_and_the_weight_is_checked(tmp_path):
    labels = torch.zeros(8, 32, 32, dtype=torch.uint8)
    labels[:, 10:20, 8:24] = 1
    images = [(label.float() + 0.2 * torch.randn(32, 32)).numpy() for label in labels]
    data = SegmentationDataset.from_arrays(images, list(labels.numpy()), TINY)
    config = TrainConfig(steps=3, batch_size=4, mask_loss_weight=1.0, validate_every=10**6, device="cpu")
    result = train(TINY, data, tmp_path / "run", config=config)
    assert result.step == 3 and result.final_checkpoint is not None
    with pytest.raises(ConfigError, match="mask_loss_weight"):
        TrainConfig(mask_loss_weight=-1.0)
    assert TrainConfig().mask_loss_weight == 0.0  # the paper's loss by default
