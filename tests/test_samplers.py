"""Samplers against an exact answer: Gaussian data, whose ideal denoiser is known in closed form."""

import pytest
import torch

from dlcourse.samplers import respace, sample_ddpm, timesteps_for
from dlcourse.schedules import cosine_schedule, linear_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


class ExactGaussianDenoiser(torch.nn.Module):
    """For x_0 ~ N(mu, s^2 I): E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)."""

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.ab, self.mu, self.s = schedule.alphas_cumprod, mu, s

    def forward(self, x_t, t, cond=None):
        ab = self.ab[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.s ** 2 + 1 - ab)


@pytest.mark.parametrize("steps", [None, 100])
def test_ddpm_samples_have_the_data_mean_and_variance(steps):
    """All 1000 steps: mean and std exact. 100 respaced steps: the mean is exact, but the
    posterior variance beta_tilde ignores the uncertainty of the x_0 guess, so the spread
    comes out a little low (Nichol & Dhariwal 2021 learn the variance to fix this)."""
    torch.manual_seed(0)
    sched = linear_schedule(1000)
    mu, s = 0.5, 0.3
    model = ExactGaussianDenoiser(sched, mu, s)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(20_000, 1, generator=g)
    x = sample_ddpm(model, x_T, sched, steps, clip_x0=False, generator=g, progress=False)
    # 20,000 samples: standard error of the mean 0.002, of the std ~0.0015
    assert x.mean().item() == pytest.approx(mu, abs=0.01)
    if steps is None:
        assert x.std().item() == pytest.approx(s, abs=0.01)
    else:
        assert 0.85 * s < x.std().item() < s


def test_ddpm_other_prediction_types_agree():
    sched = cosine_schedule(50)
    eps_model = ExactGaussianDenoiser(sched, 0.0, 0.5)

    class AsX0(torch.nn.Module):
        def forward(self, x_t, t, cond=None):
            ab = sched.alphas_cumprod[t][:, None]
            return (x_t - (1 - ab).sqrt() * eps_model(x_t, t)) / ab.sqrt()

    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    a = sample_ddpm(eps_model, x_T, sched, clip_x0=False, generator=torch.Generator().manual_seed(2), progress=False)
    b = sample_ddpm(AsX0(), x_T, sched, prediction_type="sample", clip_x0=False,
                    generator=torch.Generator().manual_seed(2), progress=False)
    assert torch.allclose(a, b, atol=1e-4)


def test_timesteps_and_respacing():
    sched = linear_schedule(1000)
    taus = timesteps_for(sched, 10)
    assert taus[0] == 0 and taus[-1] == 999 and len(taus) == 10 and bool((taus.diff() > 0).all())
    sub = respace(sched, taus)
    assert torch.allclose(sub.alphas_cumprod, sched.alphas_cumprod[taus], rtol=1e-5)
    assert torch.equal(timesteps_for(sched), torch.arange(1000))
    with pytest.raises(ValueError, match="steps: expected at most the schedule's T = 1000, got 2000"):
        timesteps_for(sched, 2000)


def test_callback_sees_every_step():
    sched = linear_schedule(100)
    seen = []
    sample_ddpm(ExactGaussianDenoiser(sched, 0.0, 1.0), torch.randn(4, 2), sched, 10,
                callback=lambda i, t, x, x0: seen.append((i, t)), progress=False)
    assert [i for i, _ in seen] == list(range(9, -1, -1)) and seen[0][1] == 99 and seen[-1][1] == 0
