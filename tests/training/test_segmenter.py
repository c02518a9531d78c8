"""The Segmenter's step generator: what it yields, how it stops, which settings it refuses.

(Ensembles, seeds, K classes and output sizes are in test_inference.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.samplers import RECOMMENDED_STEPS, SAMPLERS, sample
from medsegdiff_training.schedule import NoiseSchedule


def make_segmenter(tmp_path, diffusion=None, **changes) -> Segmenter:
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny", **changes))
    with torch.no_grad():
        model.head[-1].weight.normal_(0, 0.05)
    folder = save_checkpoint(tmp_path / "m", model, diffusion or DiffusionConfig(), PreprocessConfig())
    return Segmenter(load_checkpoint(folder), device="cpu")


def count_calls(segmenter: Segmenter) -> list[int]:
    calls: list[int] = []
    segmenter.model.register_forward_hook(lambda module, args, output: calls.append(output.shape[0]))
    return calls


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_closing_the_segmenters_steps_stops_the_network_at_once(tmp_path, sampler):
    segmenter = make_segmenter(tmp_path)
    calls = count_calls(segmenter)
    steps = segmenter.steps(np.random.rand(32, 32), SamplingSettings(sampler=sampler, steps=20, ensemble=1))
    for step in steps:
        if step.index == 3:
            steps.close()
            break
    assert len(calls) == 4  # the four steps seen, none after


def test_steps_yield_the_ensemble_in_model_space_and_default_to_the_recommended_count(tmp_path):
    segmenter = make_segmenter(tmp_path, num_classes=3)
    seen = []
    result = segmenter.segment(np.random.rand(32, 32), SamplingSettings(ensemble=2), on_step=seen.append)
    assert len(seen) == RECOMMENDED_STEPS["ddim"] == SamplingSettings().resolved_steps()
    assert all(step.x_t.shape == (2, 3, 32, 32) for step in seen)
    assert all(step.predicted_x0.abs().max() <= 1 for step in seen)
    assert 0 <= result.uncertainty.min() and result.uncertainty.max() <= 0.5
    assert result.settings["steps"] == RECOMMENDED_STEPS["ddim"] and result.settings["ensemble"] == 2


def test_epsilon_models_segment_multichannel_images_with_a_channel_axis(tmp_path):
    segmenter = make_segmenter(tmp_path, DiffusionConfig(prediction="epsilon"), image_channels=3)
    image = np.random.rand(3, 50, 40)
    one = SamplingSettings(steps=2, ensemble=1)
    first = segmenter.segment(image, one)
    moved = segmenter.segment(np.moveaxis(image, 0, -1), one, channel_axis=-1)
    assert first.labels.shape == (50, 40) and np.array_equal(first.probabilities, moved.probabilities)


def test_a_run_without_a_seed_is_not_repeated(tmp_path):
    segmenter = make_segmenter(tmp_path)
    image = np.random.rand(32, 32)
    a = segmenter.segment(image, SamplingSettings(steps=2, seed=None, ensemble=1))
    b = segmenter.segment(image, SamplingSettings(steps=2, seed=None, ensemble=1))
    assert not np.array_equal(a.probabilities, b.probabilities)


def test_settings_that_cannot_run_are_refused_by_name(tmp_path):
    schedule = NoiseSchedule(DiffusionConfig())
    zeros = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ConfigError, match="Unknown sampler 'euler'"):
        sample(zeros, schedule, (1, 1, 8, 8), sampler="euler")
    for sampler in SAMPLERS:
        for steps in (0, 1001):
            with pytest.raises(ConfigError, match="between 1 and 1000"):
                sample(zeros, schedule, (1, 1, 8, 8), sampler=sampler, steps=steps)
    segmenter = make_segmenter(tmp_path)
    with pytest.raises(ConfigError, match="ensemble size must be at least 1"):
        segmenter.segment(np.random.rand(32, 32), SamplingSettings(ensemble=0))


def test_device_choices_say_why_they_are_unavailable():
    from medsegdiff_training.device import device_availability, resolve_device
    from medsegdiff_training.errors import DeviceError

    reasons = device_availability()
    assert reasons["cpu"] is None and reasons["auto"] is None
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu") or reasons["mps"] is None
        assert "CUDA" in reasons["cuda"]
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (mixed precision path)")
def test_cuda_mixed_precision_agrees_with_the_cpu(tmp_path):
    cpu = make_segmenter(tmp_path)
    cuda = Segmenter(load_checkpoint(cpu.checkpoint.path), device="cuda")  # its own copy of the model
    image = np.random.rand(32, 32)
    # start noise differs between devices, so compare the deterministic network itself
    x_t, t, prepared = torch.randn(2, 1, 32, 32), torch.tensor([10, 700]), cpu.prepare(image)
    with torch.inference_mode():
        expected = cpu.model(x_t, t, prepared)
        with cuda._autocast():
            got = cuda.model(x_t.cuda(), t.cuda(), prepared.cuda()).float().cpu()
    assert torch.allclose(got, expected, atol=5e-2)
    assert cuda.segment(image, SamplingSettings(steps=5, ensemble=2)).labels.shape == (32, 32)
