"""Tests of dlcourse.score against answers that can be checked independently.

- the mixture's log density against torch.distributions, and its score against autograd of it;
- the noised and smoothed mixtures against the moments of noised samples, and the score of a
  noised Gaussian against -E[eps | x_t] / sqrt(1 - ab), with the known linear E[eps | x_t];
- Langevin on a Gaussian N(mu, s^2): the chain x' = x - h (x - mu) / (2 s^2) + sqrt(h) z is an
  AR(1) process whose stationary law is exactly N(mu, s^2 / (1 - h / (4 s^2)));
- annealed Langevin with the exact scores of a mixture with unequal weights recovers the weights,
  which plain Langevin from a uniform start does not (Song & Ermon 2019, sec. 3.2.2).
"""

import math

import pytest
import torch

from dlcourse.data import make_toy
from dlcourse.parameterization import score_from_eps as param_score_from_eps
from dlcourse.schedules import linear_schedule
from dlcourse.score import (GaussianMixture, annealed_langevin, eight_gaussians_mixture, eps_from_score,
                            gaussian_mixture_log_prob, gaussian_mixture_score, langevin, langevin_step, model_score,
                            noise_levels, score_from_eps)

pytestmark = pytest.mark.usefixtures("one_thread")


def random_mixture(seed, K=3, D=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(K, D, generator=g, dtype=dtype) * 2
    stds = 0.3 + torch.rand(K, generator=g, dtype=dtype)
    w = 0.2 + torch.rand(K, generator=g, dtype=dtype)
    return means, stds, w / w.sum()


@pytest.mark.parametrize("seed, K, D", [(0, 3, 2), (1, 1, 2), (2, 5, 3)])
def test_log_prob_matches_torch_distributions(seed, K, D):
    means, stds, weights = random_mixture(seed, K, D)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=weights),
        torch.distributions.Independent(torch.distributions.Normal(means, stds[:, None].expand(K, D)), 1))
    x = torch.randn(50, D, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
    assert torch.allclose(gaussian_mixture_log_prob(x, means, stds, weights), ref.log_prob(x), atol=1e-10)


@pytest.mark.parametrize("seed, K, D", [(0, 3, 2), (3, 8, 2), (2, 5, 3)])
def test_score_is_the_gradient_of_the_log_density(seed, K, D):
    means, stds, weights = random_mixture(seed, K, D)
    x = (torch.randn(64, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3).requires_grad_()
    grad, = torch.autograd.grad(gaussian_mixture_log_prob(x, means, stds, weights).sum(), x)
    assert torch.allclose(gaussian_mixture_score(x.detach(), means, stds, weights), grad, atol=1e-10)


def test_single_gaussian_score_is_linear():
    mu, s = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    x = torch.randn(10, 2, dtype=torch.float64)
    assert torch.allclose(gaussian_mixture_score(x, mu, s, torch.ones(1, dtype=torch.float64)), -(x - mu) / 0.25)


def test_noised_and_smoothed_mixtures_match_noised_samples():
    gm = GaussianMixture(torch.tensor([[2.0, 0.0], [-1.0, 1.0]]), torch.tensor([0.2, 0.5]), torch.tensor([0.3, 0.7]))
    g = torch.Generator().manual_seed(0)
    n, ab, sigma = 200_000, 0.4, 0.8
    x_0 = gm.sample(n, g)
    z = torch.randn(n, 2, generator=g)
    for mixture, noisy in [(gm.noised(ab), math.sqrt(ab) * x_0 + math.sqrt(1 - ab) * z),
                           (gm.smoothed(sigma), x_0 + sigma * z)]:
        # the mixture's exact mean and covariance: sum_k w_k mu_k, sum_k w_k (std_k^2 I + mu_k mu_k^T) - m m^T
        w, mu, var = mixture.weights, mixture.means, mixture.stds ** 2
        mean = (w[:, None] * mu).sum(0)
        cov = (w[:, None, None] * (var[:, None, None] * torch.eye(2) + mu[:, :, None] * mu[:, None, :])).sum(0)
        cov = cov - mean[:, None] * mean[None, :]
        # standard errors here: at most 0.004 for the means, 0.01 for the covariances
        assert torch.allclose(noisy.mean(0), mean, atol=0.015)
        assert torch.allclose(torch.cov(noisy.T), cov, atol=0.04)
        ref = mixture.sample(n, g)
        # and the average log density of the noised samples is that of the mixture's own samples
        assert abs(float(mixture.log_prob(noisy).mean() - mixture.log_prob(ref).mean())) < 0.02


def test_score_of_noised_gaussian_is_minus_posterior_mean_eps_over_sigma():
    # For x_0 ~ N(mu, s^2 I): E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)
    mu, s = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.7
    gm = GaussianMixture(mu, torch.tensor([s], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    x_t = torch.randn(20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for ab in (0.99, 0.5, 0.01):
        eps = math.sqrt(1 - ab) * (x_t - math.sqrt(ab) * mu) / (ab * s ** 2 + 1 - ab)
        assert torch.allclose(score_from_eps(eps, ab), gm.noised(ab).score(x_t), atol=1e-12)
        assert torch.allclose(eps_from_score(gm.noised(ab).score(x_t), ab), eps, atol=1e-12)


def test_score_conversions_are_the_parameterization_ones():
    assert score_from_eps is param_score_from_eps
    eps = torch.randn(4, 2, dtype=torch.float64)
    ab = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=torch.float64)
    assert torch.allclose(score_from_eps(eps, ab), -eps / (1 - ab)[:, None].sqrt())


def test_eight_gaussians_mixture_matches_the_toy():
    gm = eight_gaussians_mixture()
    data = make_toy("eight_gaussians", 20_000, seed=0)
    k = gm.component(data)
    counts = torch.bincount(k, minlength=8).float() / len(data)
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.01)       # 3.5 standard errors
    assert abs(float((data - gm.means[k]).std()) - 0.1) < 0.005
    assert torch.allclose(data.var(0), torch.ones(2), atol=0.03)           # unit variance per axis
    assert torch.allclose(eight_gaussians_mixture(weights=torch.arange(1.0, 9.0)).weights.sum(), torch.tensor(1.0))


def test_langevin_step_is_the_formula():
    x, s, z = torch.tensor([[1.0, 2.0]]), torch.tensor([[-4.0, 0.5]]), torch.tensor([[0.3, -1.0]])
    assert torch.allclose(langevin_step(x, s, 0.04, z), x + 0.02 * s + 0.2 * z)


@pytest.mark.parametrize("mu, s, h", [(1.5, 0.5, 0.05), (-2.0, 2.0, 0.4)])
def test_langevin_on_a_gaussian_reaches_its_mean_and_variance(mu, s, h):
    n = 20_000
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 4
    x = langevin(lambda x: -(x - mu) / s ** 2, x, h, 1500, generator=torch.Generator().manual_seed(1),
                 progress=False)
    var = s ** 2 / (1 - h / (4 * s ** 2))                                  # exact for the discretised chain
    # standard errors: sqrt(var / n) for the mean, var sqrt(2 / n) for the variance (about 1% of var)
    assert abs(float(x.mean()) - mu) < 4 * math.sqrt(var / n)
    assert abs(float(x.var()) / var - 1) < 4 * math.sqrt(2 / n)


def test_langevin_calls_back_after_every_step_and_keeps_dtype():
    seen = []
    x = langevin(lambda x: -x, torch.zeros(3, 2), 0.1, 5, callback=lambda k, x: seen.append(k), progress=False)
    assert seen == [0, 1, 2, 3, 4] and x.dtype == torch.float32


def test_annealed_langevin_draws_noise_level_by_level_as_documented():
    sigmas = [2.0, 0.5, 0.1]
    score_fn = lambda x, sigma: -x / (1 + sigma ** 2) + 0.1 * sigma
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    got = annealed_langevin(score_fn, x0, sigmas, 1e-3, 4, generator=torch.Generator().manual_seed(5), progress=False)
    g, x = torch.Generator().manual_seed(5), x0
    for sigma in sigmas:
        h = 1e-3 * sigma ** 2 / 0.1 ** 2
        for _ in range(4):
            x = x + h / 2 * score_fn(x, sigma) + math.sqrt(h) * torch.randn(x.shape, generator=g)
    assert torch.allclose(got, x, atol=1e-6)
    # one level is plain Langevin
    one = annealed_langevin(lambda x, s: -x, x0, [0.3], 0.01, 7, generator=torch.Generator().manual_seed(2),
                            progress=False)
    assert torch.allclose(one, langevin(lambda x: -x, x0, 0.01, 7, generator=torch.Generator().manual_seed(2),
                                        progress=False))


def test_annealed_langevin_on_a_gaussian_ends_at_the_last_smoothed_law():
    # data N(mu, s0^2): smoothed by sigma it is N(mu, s0^2 + sigma^2), whose score is known. With
    # s0 = sigma_L, every level's step is at least 5% of its law's variance, so 200 steps per level
    # forget the start, and the last level's chain has the AR(1) law N(mu, var / (1 - h / (4 var))).
    mu, s0, n = 1.0, 0.05, 20_000
    sigmas = torch.logspace(1, math.log10(s0), 8, dtype=torch.float64)
    h = 0.2 * s0 ** 2
    x = sigmas[0] * torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = annealed_langevin(lambda x, sig: -(x - mu) / (s0 ** 2 + sig ** 2), x, sigmas, h, 200,
                          generator=torch.Generator().manual_seed(1), progress=False)
    var = s0 ** 2 + float(sigmas[-1]) ** 2
    var_chain = var / (1 - h / (4 * var))
    assert abs(float(x.mean()) - mu) < 4 * math.sqrt(var / n)
    assert abs(float(x.var()) / var_chain - 1) < 4 * math.sqrt(2 / n)


def test_annealed_langevin_recovers_the_weights_that_plain_langevin_misses():
    w = torch.arange(1.0, 9.0)
    gm = eight_gaussians_mixture(weights=w)
    n = 4000
    g = torch.Generator().manual_seed(0)
    sigmas = torch.logspace(math.log10(3.0), -2, 10)
    x = annealed_langevin(lambda x, s: gm.smoothed(s).score(x), sigmas[0] * torch.randn(n, 2, generator=g), sigmas,
                          5e-5, 100, generator=g, progress=False)
    freq = torch.bincount(gm.component(x), minlength=8).float() / n
    tv = 0.5 * float((freq - gm.weights).abs().sum())
    # the total variation of the frequencies of n true samples is about 0.02 (sampling error)
    assert tv < 0.05, freq
    assert abs(float((x - gm.means[gm.component(x)]).std()) - math.hypot(0.1, 0.01)) < 0.01
    # plain Langevin with the clean score, from a uniform start: every chain stays near the mode it
    # falls into first, so the frequencies follow the starting box, not the weights
    x = langevin(gm.score, torch.rand(n, 2, generator=g) * 6 - 3, 1e-3, 500, generator=g, progress=False)
    freq = torch.bincount(gm.component(x), minlength=8).float() / n
    assert 0.5 * float((freq - gm.weights).abs().sum()) > 0.15


class GaussianEps(torch.nn.Module):
    """The ideal eps-predictor for x_0 ~ N(mu, s^2 I): E[eps | x_t]."""

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.ab, self.mu, self.s = schedule.alphas_cumprod.double(), mu, s

    def forward(self, x_t, t, cond=None):
        ab = self.ab[t][:, None].to(x_t.dtype)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.s ** 2 + 1 - ab)


def test_model_score_is_the_variance_exploding_score_at_the_schedules_levels():
    schedule = linear_schedule(1000)
    mu, s = 0.5, 0.8
    score_fn = model_score(GaussianEps(schedule, mu, s), schedule)
    ts, sigmas = noise_levels(schedule, 12, 20.0, 0.05)
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    for sigma in sigmas.tolist():
        # x = x_t / sqrt(ab) ~ N(mu, s^2 + sigma^2)
        assert torch.allclose(score_fn(x, sigma), -(x - mu) / (s ** 2 + sigma ** 2), atol=1e-9)


def test_model_score_runs_the_model_on_its_device_and_answers_on_the_callers(meta_probe):
    # the model lives elsewhere ("meta", as a GPU model does for CPU data): x, t and the labels
    # must be moved there, and the score come back where x is, in x's dtype
    schedule = linear_schedule(1000)
    probe = meta_probe(output=torch.ones)                        # eps = 1
    score_fn = model_score(probe, schedule, cond=torch.tensor([1, 2, 3]))
    ts, sigmas = noise_levels(schedule, 3, 5.0, 0.1)
    x = torch.randn(3, 2, dtype=torch.float64)
    for sigma in sigmas.tolist():
        score = score_fn(x, sigma)
        assert score.device == x.device and score.dtype == torch.float64
        assert torch.allclose(score, torch.full_like(x, -1 / sigma))    # -eps / sigma_t
    assert probe.calls == 3
    # a plain function (no parameters) runs on the CPU; its score too comes back on x's device
    assert torch.equal(model_score(lambda x_t, t, c: torch.zeros_like(x_t), schedule)(x, 1.0), torch.zeros_like(x))


def test_langevin_stays_on_the_device_of_x():
    # x on "meta" (shapes, no data) stands for a GPU: noise made on the CPU, or a score left
    # where the score function made it, would meet x there and fail
    gm = eight_gaussians_mixture()
    x = torch.zeros(5, 2, device="meta")
    g = torch.Generator().manual_seed(0)                          # a CPU generator, as notebooks make
    assert langevin(gm.score, x, 0.01, 2, generator=g, progress=False).device.type == "meta"
    on_cpu = lambda x, *sigma: torch.zeros(x.shape)                # noqa: E731  a score made on the CPU
    assert langevin(on_cpu, x, 0.01, 2, progress=False).device.type == "meta"
    assert annealed_langevin(on_cpu, x, [1.0, 0.5], 0.01, 2, generator=g, progress=False).device.type == "meta"


def test_noise_levels_are_the_schedules_nearest_to_a_geometric_sequence():
    schedule = linear_schedule(1000)
    ts, sigmas = noise_levels(schedule, 10, 5.0, 0.01)
    ab = schedule.alphas_cumprod.double()
    assert torch.all(ts[1:] < ts[:-1]) and torch.all(sigmas[1:] < sigmas[:-1])
    assert torch.allclose(sigmas, ((1 - ab[ts]) / ab[ts]).sqrt())
    # each is the schedule's level nearest (in log) to its target 5 * (0.01 / 5)^(k / 9)
    targets = 5.0 * (0.01 / 5.0) ** (torch.arange(10, dtype=torch.float64) / 9)
    all_log = ((1 - ab) / ab).sqrt().log()
    best = (all_log[None] - targets.log()[:, None]).abs().min(1).values
    assert len(ts) == 10 and torch.allclose((sigmas.log() - targets.log()).abs(), best)
    assert ts[-1] == 0 and abs(float(sigmas[0]) - 5.0) < 0.05


@pytest.mark.parametrize("call, name", [
    (lambda: annealed_langevin(lambda x, s: x, torch.zeros(2, 2), [0.1, 1.0], 0.1, 2), "sigmas"),
    (lambda: annealed_langevin(lambda x, s: x, torch.zeros(2, 2), [1.0, -0.1], 0.1, 2), "sigmas"),
    (lambda: annealed_langevin(lambda x, s: x, torch.zeros(2, 2), [1.0], 0.1, 0), "steps_per_level"),
    (lambda: langevin(lambda x: x, torch.zeros(2, 2), -0.1, 3), "step_size"),
    (lambda: langevin(lambda x: x, torch.zeros(2, 2, dtype=torch.long), 0.1, 3), "x"),
    (lambda: langevin_step(torch.zeros(2, 2), torch.zeros(2, 3), 0.1, torch.zeros(2, 2)), "score"),
    (lambda: langevin_step(torch.zeros(2, 2), torch.zeros(2, 2), 0.1, torch.zeros(3, 2)), "z"),
    (lambda: gaussian_mixture_score(torch.zeros(4, 3), *random_mixture(0)), "x"),
    (lambda: gaussian_mixture_score(torch.zeros(4, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64),
                                    torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)), "weights"),
    (lambda: GaussianMixture(torch.zeros(2, 2), torch.tensor([0.1, -1.0]), torch.tensor([0.5, 0.5])), "stds"),
    (lambda: eight_gaussians_mixture().noised(1.5), "alpha_bar"),
    (lambda: eight_gaussians_mixture().smoothed(-1.0), "sigma"),
    (lambda: noise_levels(linear_schedule(10), 5, 0.01, 1.0), "sigma_max"),
    (lambda: model_score(None, "linear"), "schedule"),
])
def test_errors_name_the_argument(call, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        call()
