"""The sampler against a Gaussian whose optimal denoiser is known (the training loss: test_training_loss.py)."""

from __future__ import annotations

import pytest
import torch

from omfa.diffusion import NUM_TRAIN_TIMESTEPS, SCHEDULERS, alphas_cumprod, make_scheduler, sample

# Data: x0 ~ N(mu, Sigma) in 2-D with correlation.
MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
SIGMA = torch.tensor([[0.30, 0.12], [0.12, 0.20]], dtype=torch.float64)
ABAR = alphas_cumprod().double()


def abar_at(t: float) -> float:
    """alpha-bar at a (possibly fractional) timestep, interpolating sigma linearly as diffusers does."""
    sigmas = ((1 - ABAR) / ABAR).sqrt()
    lo = int(torch.floor(torch.tensor(t)).clamp(0, NUM_TRAIN_TIMESTEPS - 1))
    hi = min(lo + 1, NUM_TRAIN_TIMESTEPS - 1)
    sigma = sigmas[lo] + (t - lo) * (sigmas[hi] - sigmas[lo])
    return float(1 / (1 + sigma**2))


def tweedie(x_t: torch.Tensor, t_index: float) -> torch.Tensor:
    """E[x0 | x_t] for x_t = a x0 + s eps: mu + Sigma a (a^2 Sigma + s^2 I)^-1 (x_t - a mu)."""
    abar = abar_at(t_index)
    a, s2 = abar**0.5, 1 - abar
    gain = SIGMA @ torch.linalg.inv(a * a * SIGMA + s2 * torch.eye(2, dtype=torch.float64)) * a
    return MU + (x_t.double() - a * MU) @ gain.T


def gaussian_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return tweedie(x_t, float(t[0]) * NUM_TRAIN_TIMESTEPS).float()


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_previews_are_tweedie_and_samples_match_the_data(scheduler):
    n = 6000
    sched = make_scheduler(scheduler)
    steps = list(sample(gaussian_denoiser, (n, 2), sched, 40, torch.Generator().manual_seed(0)))
    assert len(steps) == 40 and steps[-1].final and not any(s.final for s in steps[:-1])
    for s in steps[:-1:7]:
        # recompute the estimate from the state the sampler was in: the sampler
        # must pass the right timestep and scaling to the model
        x_vp = s.x * abar_at(s.timestep) ** 0.5 if scheduler == "euler" else s.x  # Euler keeps x = x0 + sigma eps
        assert torch.allclose(s.x0, tweedie(x_vp, s.timestep).float(), atol=1e-4)
    assert steps[0].timestep == NUM_TRAIN_TIMESTEPS - 1 and steps[-1].timestep <= 25
    if scheduler != "dpm++":  # first-order final steps land exactly on the model's x0
        last = steps[-1]
        x_vp = last.x * abar_at(last.timestep) ** 0.5 if scheduler == "euler" else last.x
        assert torch.allclose(last.x0, tweedie(x_vp, last.timestep).float(), atol=1e-4)
    x = steps[-1].x0.double()
    mean, cov = x.mean(0), torch.cov(x.T)
    assert torch.allclose(mean, MU, atol=0.03), mean
    assert torch.allclose(cov, SIGMA, atol=0.03), cov
    # an early preview is close to the data mean (the posterior shrinks to mu at high noise)
    assert steps[0].x0.double().std(0).max() < 0.1
