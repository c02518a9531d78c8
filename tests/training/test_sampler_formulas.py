"""Each sampler's update, one step at a time, against its closed form written out here.

An exact noise predictor makes every predicted x_0 right whatever the update rule, so these
tests use a predictor that is wrong in a known way and recompute each step from the paper's
formulas with a schedule built independently of the package (DDPM's linear betas).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsegdiff_training.config import DiffusionConfig
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.samplers import RECOMMENDED_STEPS, log_snr_grid, run_to_end, sample, timestep_grid
from medsegdiff_training.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule(DiffusionConfig())
# DDPM's linear schedule (Ho et al.), T = 1000, beta from 1e-4 to 0.02
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))


def abar(t: int | None) -> float:
    return 1.0 if t is None else float(ABAR[t])


def half_log_snr(t: int) -> float:
    return 0.5 * math.log(abar(t) / (1 - abar(t)))


def crooked_predictor(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Not the true noise of any data set: a fixed nonlinear function of x_t and t."""
    assert t.shape == (x_t.shape[0],) and t.dtype == torch.long  # one timestep per image
    scale = 0.6 + 0.3 * (t.float() / 1000).view(-1, 1, 1, 1)
    return scale * x_t + 0.2 * torch.sin(3 * x_t)


def x0_and_eps(x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's documented reading of one network call: x_0 clipped to [-1, 1], eps to match."""
    eps = crooked_predictor(x_t, torch.full((x_t.shape[0],), t))
    a = abar(t)
    x0 = ((x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
    return x0, (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)


def steps_of(sampler: str, steps: int, eta: float = 0.0, shape=(2, 1, 16, 16)):
    generator = sample(
        crooked_predictor,
        SCHEDULE,
        shape,
        sampler=sampler,
        steps=steps,
        eta=eta,
        generator=torch.Generator().manual_seed(7),
    )
    seen = []
    final = run_to_end(generator, seen.append)
    return seen, final


def test_the_package_schedule_is_ddpms_linear_one():
    assert np.allclose(SCHEDULE.alphas_cumprod.numpy(), ABAR, rtol=1e-12)


def test_deterministic_ddim_steps_follow_ddim_equation_12():
    seen, final = steps_of("ddim", 6)
    for step, following in zip(seen, seen[1:], strict=False):
        x0, eps = x0_and_eps(step.x_t, step.t)
        assert torch.allclose(step.predicted_x0, x0, atol=1e-5)
        a_prev = abar(following.t)
        expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
        assert torch.allclose(following.x_t, expected, atol=1e-4), (step.t, following.t)
    assert torch.equal(final, seen[-1].predicted_x0)  # the last step lands on x_0 itself


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_stochastic_steps_have_the_closed_form_mean_and_variance(sampler):
    # x_{t'} = mean + sigma z: the residual from the closed-form mean must be pure noise of
    # the closed-form size, uncorrelated with the eps the step used.
    eta = 0.7
    seen, _ = steps_of(sampler, 5, eta=eta, shape=(4, 1, 64, 64))
    for step, following in zip(seen, seen[1:], strict=False):
        x0, eps = x0_and_eps(step.x_t, step.t)
        a, a_prev = abar(step.t), abar(following.t)
        if sampler == "ddim":  # DDIM eq. 16 with eta, then eq. 12
            variance = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
            mean = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - variance) * eps
        else:  # the posterior q(x_{t'} | x_t, x_0) of the respaced chain, DDPM eq. 6-7
            beta = 1 - a / a_prev
            mean = (math.sqrt(a_prev) * beta / (1 - a)) * x0 + (
                math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
            ) * step.x_t
            variance = beta * (1 - a_prev) / (1 - a)
        residual = (following.x_t - mean).double()
        assert residual.std().item() == pytest.approx(math.sqrt(variance), rel=0.03), (step.t, following.t)
        assert abs(residual.mean().item()) < 0.03 * math.sqrt(variance)
        correlation = np.corrcoef(residual.flatten().numpy(), eps.double().flatten().numpy())[0, 1]
        assert abs(correlation) < 0.03


def test_dpm_solver_pp_steps_follow_the_2m_update():
    seen, final = steps_of("dpm++", 6)
    previous_x0, previous_h = None, None
    for step, following in zip(seen, seen[1:], strict=False):
        x0, _ = x0_and_eps(step.x_t, step.t)
        assert torch.allclose(step.predicted_x0, x0, atol=1e-5)
        s, t = step.t, following.t
        h = half_log_snr(t) - half_log_snr(s)
        if previous_x0 is None:  # first order (DPM-Solver++ 1 = DDIM in x_0 form)
            data = x0
        else:  # Lu et al., DPM-Solver++(2M), Algorithm 2
            r = previous_h / h
            data = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * previous_x0
        sigma_s, sigma_t = math.sqrt(1 - abar(s)), math.sqrt(1 - abar(t))
        expected = sigma_t / sigma_s * step.x_t - math.sqrt(abar(t)) * (math.exp(-h) - 1) * data
        assert torch.allclose(following.x_t, expected, atol=1e-4), (s, t)
        previous_x0, previous_h = x0, h
    assert torch.equal(final, seen[-1].predicted_x0)


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpm_solver_pp_walks_a_grid_even_in_log_snr_not_in_time(steps):
    seen, _ = steps_of("dpm++", steps)
    times = [step.t for step in seen]
    assert times[0] == 999 and times[-1] == 0 and times == log_snr_grid(SCHEDULE, steps)
    # lambda targets evenly spaced from lambda(999) to lambda(0); each step sits at the
    # integer timestep nearest its target (one off where lambda is steep near t = 0)
    lam = np.array([half_log_snr(t) for t in range(1000)])
    targets = np.linspace(lam[999], lam[0], steps)
    nearest = [int(np.argmin(np.abs(lam - target))) for target in targets]
    assert all(abs(t - n) <= 1 for t, n in zip(times, nearest, strict=True)), (times, nearest)
    even = np.linspace(999, 0, steps).round().astype(int).tolist()
    assert sum(abs(t - n) > 1 for t, n in zip(even, nearest, strict=True)) >= steps // 2  # tells them apart


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_ddim_and_ddpm_walk_an_even_time_grid(sampler):
    seen, _ = steps_of(sampler, 10)
    assert [step.t for step in seen] == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]


def test_by_default_it_is_ddim_with_its_recommended_steps():
    def run(**options):
        seen = []
        final = run_to_end(
            sample(
                crooked_predictor,
                SCHEDULE,
                (1, 1, 8, 8),
                generator=torch.Generator().manual_seed(0),
                **options,
            ),
            seen.append,
        )
        return [step.t for step in seen], final

    times, final = run()
    assert times == timestep_grid(1000, RECOMMENDED_STEPS["ddim"]) and len(times) == RECOMMENDED_STEPS["ddim"]
    explicit_times, explicit = run(sampler="ddim", steps=RECOMMENDED_STEPS["ddim"])
    assert times == explicit_times and torch.equal(final, explicit)


def test_a_log_snr_grid_of_every_step_is_every_timestep():
    assert log_snr_grid(SCHEDULE, 1000) == list(range(999, -1, -1))


def test_bad_sampler_settings_are_named():
    with pytest.raises(ConfigError, match="steps must be between 1 and 1000, got 0"):
        log_snr_grid(SCHEDULE, 0)
    with pytest.raises(ConfigError, match="steps must be between 1 and 1000, got 1001"):
        timestep_grid(1000, 1001)
    with pytest.raises(ConfigError, match="Unknown sampler 'euler': choose one of ddpm, ddim, dpm"):
        sample(crooked_predictor, SCHEDULE, (1, 1, 4, 4), sampler="euler")
