"""Every sampler is a step generator that denoises correctly, stops when asked, and repeats."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsegdiff_training.config import DiffusionConfig
from medsegdiff_training.samplers import SAMPLERS, run_to_end, sample
from medsegdiff_training.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule(DiffusionConfig())


def oracle_for(x0: torch.Tensor):
    """The exact noise predictor when the clean mask is known."""

    def predict(x_t, t):
        abar = SCHEDULE.abar(t, x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    return predict


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 7, 25])
def test_each_sampler_yields_the_promised_steps_and_recovers_a_known_mask(sampler, steps):
    x0 = torch.where(torch.rand(2, 1, 8, 8) > 0.5, 1.0, -1.0)
    generator = sample(
        oracle_for(x0),
        SCHEDULE,
        x0.shape,
        sampler=sampler,
        steps=steps,
        eta=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    seen = []
    final = run_to_end(generator, seen.append)
    assert [s.index for s in seen] == list(range(steps))
    assert all(s.total == steps for s in seen)
    assert [s.t for s in seen] == sorted((s.t for s in seen), reverse=True) and seen[0].t == 999
    assert all(torch.allclose(s.predicted_x0, x0, atol=1e-3) for s in seen)  # every x0 estimate is right
    assert torch.allclose(final, x0, atol=1e-3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_with_gaussian_data_samples_have_the_data_spread(sampler):
    # x0 ~ N(0, s^2) per pixel: the ideal noise predictor is analytic.
    s = 0.3

    def ideal(x_t, t):
        abar = SCHEDULE.abar(t, x_t)
        return (1 - abar).sqrt() * x_t / (abar * s**2 + 1 - abar)

    steps = 100 if sampler == "ddpm" else 50
    final = run_to_end(
        sample(
            ideal,
            SCHEDULE,
            (4, 1, 64, 64),
            sampler=sampler,
            steps=steps,
            generator=torch.Generator().manual_seed(1),
        )
    )
    assert final.std().item() == pytest.approx(s, rel=0.1)
    assert abs(final.mean().item()) < 0.02


@pytest.mark.parametrize("steps", [2, 10, 100, 1000])
def test_the_log_snr_grid_of_dpm_solver_keeps_every_step(steps):
    from medsegdiff_training.samplers import log_snr_grid

    for schedule in (SCHEDULE, NoiseSchedule(DiffusionConfig(schedule="cosine"))):
        grid = log_snr_grid(schedule, steps)
        assert len(grid) == steps and grid[0] == 999 and grid[-1] == 0
        assert all(a > b for a, b in zip(grid, grid[1:], strict=False))


def test_closing_a_sampler_stops_all_further_network_calls():
    calls = []

    def counting(x_t, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x_t)

    generator = sample(counting, SCHEDULE, (1, 1, 8, 8), sampler="ddpm", steps=100)
    for step in generator:
        if step.index == 2:
            generator.close()
            break
    assert len(calls) == 3


def test_seeds_repeat_runs_and_different_seeds_differ():
    predict = lambda x_t, t: 0.9 * x_t  # noqa: E731  (any deterministic predictor)

    def run(seed):
        return run_to_end(
            sample(
                predict,
                SCHEDULE,
                (1, 1, 8, 8),
                sampler="ddpm",
                steps=10,
                generator=torch.Generator().manual_seed(seed),
            )
        )

    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


def test_v_prediction_converts_exactly_to_noise():
    schedule = NoiseSchedule(DiffusionConfig(prediction="v"))
    x0, noise, t = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 300, 800, 999])
    x_t = schedule.q_sample(x0, t, noise)
    assert torch.allclose(
        schedule.noise_from_output(schedule.training_target(x0, t, noise), x_t, t), noise, atol=1e-4
    )
    assert schedule.training_target(x0, t, noise) is not noise
    assert NoiseSchedule(DiffusionConfig()).training_target(x0, t, noise) is noise  # the paper's eps


def test_schedules_are_monotone_and_the_paper_default_is_linear_with_1000_steps():
    assert DiffusionConfig().timesteps == 1000 and DiffusionConfig().schedule == "linear"
    for name in ("linear", "cosine"):
        abar = NoiseSchedule(DiffusionConfig(schedule=name)).alphas_cumprod.numpy()
        assert np.all(np.diff(abar) < 0) and abar[0] > 0.99 and abar[-1] < 0.01
    assert math.isclose(float(NoiseSchedule(DiffusionConfig()).betas[-1]), 0.02)
