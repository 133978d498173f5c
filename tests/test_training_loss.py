"""The partial-diffusion loss: what it noises and scores, its per-timestep weightings and which timesteps it draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from engine_helpers import HW, tiny_model

from omfa.diffusion import NUM_TRAIN_TIMESTEPS, add_noise, alphas_cumprod
from omfa.training.batch import Batch
from omfa.training.loss import MIN_SNR_GAMMA, draw_timesteps, partial_diffusion_loss, timestep_weights

ABAR = alphas_cumprod().double()


def test_add_noise_matches_the_forward_process():
    x0 = torch.ones(20000, 1)
    t = torch.full((20000,), 500)
    x_t = add_noise(x0, t, torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)), ABAR.float())
    a = ABAR[500]
    assert abs(x_t.mean().item() - a.sqrt().item()) < 0.02
    assert abs(x_t.var().item() - (1 - a).item()) < 0.02


def _batch(g: torch.Generator) -> Batch:
    return Batch(
        targets=torch.rand(4, 1, 3, *HW, generator=g) * 2 - 1,
        target_slots=[0],
        conditions=torch.rand(4, 2, 3, *HW, generator=g) * 2 - 1,
        condition_slots=[1, 2],
        pose=torch.rand(4, 3, *HW, generator=g) * 2 - 1,
    )


@pytest.mark.parametrize("full_canvas", [False, True])
def test_loss_falls_when_overfitting_one_batch(full_canvas):
    torch.manual_seed(0)
    model = tiny_model(0).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = _batch(torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(80):
        loss = partial_diffusion_loss(model, batch, g, ABAR.float(), condition_dropout=0.0, full_canvas=full_canvas)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)


def test_loss_only_scores_targets_and_conditions_stay_clean():
    """Gradients reach the condition images only through attention, never through a loss on them,
    and the model sees the conditions exactly as given (timestep 0, no noise)."""
    model = tiny_model(1)
    seen = {}

    def spy(targets, target_slots, t, conditions, condition_slots, pose, keep):
        seen.update(conditions=conditions, t=t, keep=keep)
        return model(targets, target_slots, t, conditions, condition_slots, pose, keep)

    batch = _batch(torch.Generator().manual_seed(3))
    partial_diffusion_loss(spy, batch, torch.Generator().manual_seed(4), ABAR.float(), condition_dropout=0.5)
    assert seen["conditions"] is batch.conditions
    assert seen["t"].shape == (4,) and (seen["t"] >= 0).all() and (seen["t"] < 1).all()
    assert seen["keep"].dtype == torch.bool and seen["keep"].shape == (4, 2)


class Recorder:
    """A stand-in model: a fixed function of its input, remembering what it returned."""

    def __init__(self) -> None:
        self.pred = None

    def __call__(self, targets, target_slots, t, conditions, condition_slots, pose, keep=None):
        self.pred = 0.5 * targets.tanh()
        return self.pred


def _drawn_timesteps(seed: int, batch_size: int) -> torch.Tensor:
    """The timesteps the loss draws first from a generator seeded with `seed`."""
    return torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,), generator=torch.Generator().manual_seed(seed))


def test_uniform_weighting_is_the_plain_x0_mse():
    batch = _batch(torch.Generator().manual_seed(5))
    model = Recorder()
    default = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(6), ABAR.float())
    pred_default = model.pred
    uniform = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(6), ABAR.float(), weighting="uniform")
    assert torch.equal(model.pred, pred_default)  # the weighting does not change the random draws
    assert torch.equal(default, uniform)
    assert torch.equal(uniform, F.mse_loss(model.pred.float(), batch.targets.float()))
    assert torch.equal(
        timestep_weights(torch.arange(NUM_TRAIN_TIMESTEPS), ABAR.float(), "uniform"), torch.ones(NUM_TRAIN_TIMESTEPS)
    )


def test_min_snr_weights_follow_the_formula():
    abar = ABAR.float()
    t = torch.arange(NUM_TRAIN_TIMESTEPS)
    w = timestep_weights(t, abar, "min_snr")
    snr = abar / (1 - abar)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(MIN_SNR_GAMMA)) / MIN_SNR_GAMMA)
    # low noise (SNR >= gamma) keeps weight 1; high noise weighs SNR / gamma, falling to ~0 at t = 999
    assert w[0] == 1.0 and (w[snr >= MIN_SNR_GAMMA] == 1.0).all()
    assert w[-1] < 1e-3 and (w.diff() <= 0).all()
    crossing = int((snr >= MIN_SNR_GAMMA).sum())  # first timestep below gamma
    assert w[crossing] == pytest.approx(float(snr[crossing]) / MIN_SNR_GAMMA, rel=1e-6) and w[crossing] < 1


def test_min_snr_loss_weights_each_sample_by_its_timestep():
    batch = _batch(torch.Generator().manual_seed(7))
    model = Recorder()
    loss = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(8), ABAR.float(), weighting="min_snr")
    t = _drawn_timesteps(8, batch.targets.shape[0])
    per_sample = ((model.pred - batch.targets) ** 2).flatten(1).mean(1)
    snr = ABAR.float()[t] / (1 - ABAR.float()[t])
    expected = (snr.clamp(max=MIN_SNR_GAMMA) / MIN_SNR_GAMMA * per_sample).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)
    uniform = partial_diffusion_loss(model, batch, torch.Generator().manual_seed(8), ABAR.float())
    assert torch.allclose(uniform, per_sample.mean(), rtol=1e-6)
    if (snr < MIN_SNR_GAMMA).any():  # some sample drew a noisy timestep: min-SNR scores it lower
        assert loss < uniform


def test_unknown_weighting_is_an_error():
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'; choose one of uniform, min_snr"):
        partial_diffusion_loss(
            Recorder(), _batch(torch.Generator().manual_seed(0)), torch.Generator(), ABAR.float(), weighting="snr"
        )


def test_uniform_sampling_draws_what_the_shipped_models_drew():
    drawn = draw_timesteps(64, torch.Generator().manual_seed(9), torch.device("cpu"), "uniform")
    assert torch.equal(drawn, _drawn_timesteps(9, 64))


def test_high_noise_sampling_follows_its_density():
    """t = 1 - (1 - u)^2: P(t > s) = sqrt(1 - s), so half the draws lie above 0.75 and 1 - sqrt(0.7)
    (16.3%) below 0.3; every draw is a valid index and the draws are a function of the generator."""
    n = 40000
    t = draw_timesteps(n, torch.Generator().manual_seed(10), torch.device("cpu"), "high_noise")
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= NUM_TRAIN_TIMESTEPS - 1
    frac = t.double() / NUM_TRAIN_TIMESTEPS
    for s in (0.3, 0.5, 0.75, 0.9):
        assert (frac > s).double().mean().item() == pytest.approx((1 - s) ** 0.5, abs=0.01)
    again = draw_timesteps(n, torch.Generator().manual_seed(10), torch.device("cpu"), "high_noise")
    assert torch.equal(t, again)


def test_the_loss_uses_the_sampling_it_is_given():
    batch = _batch(torch.Generator().manual_seed(11))
    seen = []

    def spy(targets, target_slots, t, conditions, condition_slots, pose, keep):
        seen.append(t)
        return 0.5 * targets.tanh()

    partial_diffusion_loss(spy, batch, torch.Generator().manual_seed(12), ABAR.float(), sampling="high_noise")
    expected = draw_timesteps(4, torch.Generator().manual_seed(12), torch.device("cpu"), "high_noise")
    assert torch.equal(seen[0], expected.float() / NUM_TRAIN_TIMESTEPS)


def test_unknown_sampling_is_an_error():
    with pytest.raises(ValueError, match="unknown timestep sampling 'late'; choose one of uniform, high_noise"):
        draw_timesteps(2, torch.Generator(), torch.device("cpu"), "late")
