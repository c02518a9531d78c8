"""One sampling path: samplers convert raw outputs, one batch method, one home for defaults."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import mean_dice, score
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.samplers import PREDICTIONS, SAMPLERS, run_to_end, sample
from medsegdiff_training.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule(DiffusionConfig())


def oracle(x0: torch.Tensor, prediction: str):
    """The exact network for a known clean mask, in the given parameterisation."""

    def network(x_t, t):
        abar = SCHEDULE.abar(t, x_t)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        if prediction == "epsilon":
            return eps
        if prediction == "v":
            return abar.sqrt() * eps - (1 - abar).sqrt() * x0
        return x0.expand_as(x_t)

    return network


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_reads_every_prediction_type_from_the_raw_output(sampler, prediction):
    x0 = torch.where(torch.rand(2, 1, 8, 8) > 0.5, 1.0, -1.0)
    steps = run_to_end(
        sample(oracle(x0, prediction), SCHEDULE, x0.shape, sampler=sampler, steps=5, prediction=prediction)
    )
    assert torch.allclose(steps, x0, atol=1e-3)


def test_the_prediction_type_defaults_to_the_schedules_and_unknown_ones_are_refused():
    x0 = torch.where(torch.rand(1, 1, 8, 8) > 0.5, 1.0, -1.0)
    v_schedule = NoiseSchedule(DiffusionConfig(prediction="v"))
    # read as v (the v schedule's default), an eps oracle's first x_0 estimate is wrong;
    # told it is eps, the same output gives the mask
    first = next(sample(oracle(x0, "epsilon"), v_schedule, x0.shape, steps=3)).predicted_x0
    told = next(sample(oracle(x0, "epsilon"), v_schedule, x0.shape, steps=3, prediction="epsilon"))
    assert not torch.allclose(first, x0, atol=0.1) and torch.allclose(told.predicted_x0, x0, atol=1e-3)
    with pytest.raises(ConfigError, match="Unknown prediction type 'score'"):
        sample(oracle(x0, "epsilon"), SCHEDULE, x0.shape, prediction="score")


@pytest.fixture
def segmenter(tmp_path) -> Segmenter:
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config("tiny", num_classes=3))
    with torch.no_grad():
        model.head[-1].weight.normal_(0, 0.05)
    folder = save_checkpoint(tmp_path / "m", model, DiffusionConfig(prediction="v"), PreprocessConfig())
    return Segmenter(load_checkpoint(folder), device="cpu")


def test_a_batch_of_one_is_the_single_image_path_and_sizes_come_back_per_image(segmenter):
    image = np.random.rand(50, 40)
    settings = SamplingSettings(steps=2, ensemble=2, seed=4)
    single = segmenter.segment(image, settings)
    (batched,) = segmenter.segment_batch([image], settings)
    assert np.array_equal(single.probabilities, batched.probabilities)
    assert np.array_equal(single.uncertainty, batched.uncertainty)
    results = segmenter.segment_batch(
        [image, np.random.rand(30, 20, 3)], settings, output_sizes=[(50, 40), (15, 10)]
    )
    assert [r.labels.shape for r in results] == [(50, 40), (15, 10)]
    assert segmenter.segment_batch([], settings) == []


def test_mean_dice_is_the_dice_of_score_for_binary_and_k_classes():
    rng = np.random.default_rng(0)
    for classes in (2, 4):
        labels, truth = rng.integers(0, classes, (2, 20, 20))
        assert mean_dice(labels, truth, classes) == score(labels, truth, classes)["dice"]


def test_the_sampling_defaults_are_one_torch_free_module_read_by_the_settings_and_the_cli():
    from medsegdiff_training import sampling_defaults as defaults
    from medsegdiff_training.cli import build_parser

    args = build_parser().parse_args(["predict", "x.png", "--out", "o"])
    assert (args.sampler, args.ensemble, args.seed, args.threshold) == (
        defaults.DEFAULT_SAMPLER,
        defaults.RECOMMENDED_ENSEMBLE,
        defaults.DEFAULT_SEED,
        defaults.DEFAULT_THRESHOLD,
    )
    # one default (issue 31; SamplingSettings() used to mean one sample): the recommendation
    default = SamplingSettings()
    assert (default.ensemble, default.resolved_steps()) == (5, defaults.RECOMMENDED_STEPS["ddim"])
    assert defaults.RECOMMENDED_ENSEMBLE == 5 and defaults.SINGLE_SAMPLE == 1
    code = "import sys, medsegdiff_training.sampling_defaults; print('torch' in sys.modules)"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"
