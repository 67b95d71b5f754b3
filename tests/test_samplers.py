"""Samplers against exact answers: Gaussian data, whose ideal denoiser is known in closed form.

For data x_0 ~ N(mu, s^2) the noised marginal is x_t ~ N(sqrt(ab) mu, ab s^2 + 1 - ab), so the
ideal noise predictor E[eps | x_t] is linear in x_t (``ExactGaussianDenoiser``), and so is the
probability-flow ODE: in Karras et al.'s variables x~ = x_t / sqrt(ab), sigma^2 = (1 - ab) / ab,
it reads dx~/dsigma = (x~ - mu) sigma / (s^2 + sigma^2), whose solutions keep
(x~ - mu) / sqrt(s^2 + sigma^2) constant. From x_T at the last timestep the ODE therefore ends at

    x_0 = mu + s (x_T - sqrt(ab_T) mu) / sqrt(ab_T s^2 + 1 - ab_T)          (``pf_ode_solution``)

(verified against a fine Runge-Kutta integration below before it is used).
"""

import math

import pytest
import torch

from dlcourse.models import MLPDenoiser
from dlcourse.samplers import (SAMPLERS, SPACINGS, ancestral_sigmas, euler_ancestral_step, euler_step, get_sampler,
                               model_output, respace, sample_ddim, sample_ddpm, sample_euler, timesteps_for)
from dlcourse.schedules import cosine_schedule, linear_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

DETERMINISTIC = ["ddim", "euler", "heun", "dpmpp_2m"]


class ExactGaussianDenoiser(torch.nn.Module):
    """For x_0 ~ N(mu, s^2 I): E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab)."""

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.ab, self.mu, self.s = schedule.alphas_cumprod, mu, s

    def forward(self, x_t, t, cond=None):
        ab = self.ab[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.s ** 2 + 1 - ab)


class ExactClassGaussians(ExactGaussianDenoiser):
    """Class c has data N(mus[c], s^2); the null label (and no label) has N(mus[-1], s^2).

    eps is affine in mu, so guidance with weight w gives exactly the denoiser of
    N(mu_null + w (mu_c - mu_null), s^2): the answer for guided sampling.
    """

    def __init__(self, schedule, mus, s):
        super().__init__(schedule, 0.0, s)
        self.mus, self.num_classes = torch.tensor(mus), len(mus) - 1

    def forward(self, x_t, t, cond=None):
        label = torch.full((x_t.shape[0],), self.num_classes) if cond is None else cond
        self.mu = self.mus[label].reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
        return super().forward(x_t, t)


def pf_ode_solution(x_T, schedule, mu, s):
    """Where the probability-flow ODE takes x_T (at timestep T-1) for N(mu, s^2) data (module docstring)."""
    ab_T = float(schedule.alphas_cumprod[-1])
    return mu + s * (x_T - math.sqrt(ab_T) * mu) / math.sqrt(ab_T * s ** 2 + 1 - ab_T)


def run(name, model, x_T, schedule, steps, seed=0, **kwargs):
    kwargs.setdefault("clip_x0", False)
    return get_sampler(name)(model, x_T, schedule, steps, generator=torch.Generator().manual_seed(seed),
                             progress=False, **kwargs)


# --- timesteps --------------------------------------------------------------------------------

def test_timestep_spacings_match_diffusers():
    """The values diffusers' schedulers give for T = 1000 (Lin et al. 2024, Table 2, counted from 0)."""
    sched = linear_schedule(1000)
    assert timesteps_for(sched, 10).tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert timesteps_for(sched, 10, "leading").tolist() == list(range(0, 1000, 100))
    assert timesteps_for(sched, 10, "trailing").tolist() == list(range(99, 1000, 100))
    # 3 does not divide 1000: np.linspace rounds half to even, leading floors the ratio,
    # trailing rounds np.arange(1000, 0, -333.33) = 1000, 666.67, 333.33 and subtracts 1
    assert timesteps_for(sched, 3).tolist() == [0, 500, 999]
    assert timesteps_for(sched, 3, "leading").tolist() == [0, 333, 666]
    assert timesteps_for(sched, 3, "trailing").tolist() == [332, 666, 999]
    assert timesteps_for(sched, 1).tolist() == [999] == timesteps_for(sched, 1, "trailing").tolist()
    for spacing in SPACINGS:
        assert torch.equal(timesteps_for(sched, None, spacing), torch.arange(1000))
        for T, schedule in [(T, make(T)) for T in (7, 100, 1000) for make in (linear_schedule, cosine_schedule)]:
            for steps in sorted({1, 2, 3, T // 3 or 1, T // 2, T - 1, T}):
                taus = timesteps_for(schedule, steps, spacing)
                assert len(taus) == steps and taus.dtype == torch.int64, (spacing, T, steps)
                assert int(taus[0]) >= 0 and int(taus[-1]) <= T - 1 and bool((taus.diff() > 0).all())


def test_quadratic_spacings_are_squares_of_a_linspace_and_distinct():
    """(T-1) (i / (steps-1))^2, rounded; where two squares round alike near t = 0, at least t = i.
    "reversed_quadratic" is its mirror image, (T-1) (1 - (1 - i / (steps-1))^2), crowded near T-1."""
    sched = linear_schedule(1000)
    assert timesteps_for(sched, 10, "quadratic").tolist() == [0, 12, 49, 111, 197, 308, 444, 604, 789, 999]
    assert timesteps_for(sched, 10, "reversed_quadratic").tolist() == [0, 210, 395, 555, 691, 802, 888, 950, 987,
                                                                       999]
    assert timesteps_for(sched, 1, "quadratic").tolist() == [999] == timesteps_for(sched, 1,
                                                                                   "reversed_quadratic").tolist()
    assert timesteps_for(sched, 50, "quadratic")[:6].tolist() == [0, 1, 2, 4, 7, 10]    # squares: 0, .4, 1.7, 3.7
    assert timesteps_for(sched, 50, "reversed_quadratic")[-6:].tolist() == [989, 992, 995, 997, 998, 999]
    for steps in range(2, 1001):
        taus = timesteps_for(sched, steps, "quadratic")
        assert len(taus) == steps and int(taus[0]) == 0 and int(taus[-1]) == 999, steps
        assert bool((taus.diff() > 0).all()), steps
        assert torch.equal(timesteps_for(sched, steps, "reversed_quadratic"), 999 - taus.flip(0)), steps


def test_karras_spacing_follows_their_noise_levels_capped_at_80():
    """sigma = sqrt((1 - ab) / ab) evenly in sigma^(1/7) from min(80, sigma_max) down to sigma_min,
    the nearest timestep to each, the first replaced by T-1. Without the cap the cosine schedule's
    sigma_max (~20,000 at T-1) would crowd the steps at t > 950; with rho = 1 (evenly in sigma) or
    the sigmas reversed, the values below differ."""
    cosine = cosine_schedule(1000)
    assert timesteps_for(cosine, 10, "karras").tolist() == [0, 20, 117, 377, 697, 870, 941, 971, 984, 999]
    sigma = ((1 - cosine.alphas_cumprod.double()) / cosine.alphas_cumprod.double()).sqrt()
    assert float(sigma[-1]) > 10_000 and 50 < float(sigma[988]) < 80 < float(sigma[991])
    for steps in (5, 20, 50):
        taus = timesteps_for(cosine, steps, "karras")
        assert float(sigma[taus[-2]]) <= 80 and int(taus[0]) == 0 and int(taus[-1]) == 999
        root = sigma[taus[:-1]] ** (1 / 7)                          # evenly spaced up to rounding in t
        step = (80 ** (1 / 7) - float(sigma[0]) ** (1 / 7)) / (steps - 1)
        assert (root.diff() / step).sub(1).abs().max() < {5: 0.05, 20: 0.25, 50: 0.5}[steps], steps
    # a schedule whose largest sigma (3.44 here) is below 80 spans its whole range
    gentle = linear_schedule(1000, beta_end=0.005)
    assert timesteps_for(gentle, 6, "karras").tolist() == [0, 17, 100, 319, 668, 999]
    for steps in range(2, 1001):                                    # distinct even where sigmas crowd
        taus = timesteps_for(cosine, steps, "karras")
        assert len(taus) == steps and bool((taus.diff() > 0).all()), steps


def test_respacing_keeps_alpha_bar_at_the_visited_steps():
    sched = linear_schedule(1000)
    taus = timesteps_for(sched, 10)
    sub = respace(sched, taus)
    assert torch.allclose(sub.alphas_cumprod, sched.alphas_cumprod[taus], rtol=1e-5)


# --- the closed form we test against -------------------------------------------------------------

def test_pf_ode_closed_form_matches_a_fine_numerical_solution():
    """RK4 on dx~/dsigma = (x~ - mu) sigma / (s^2 + sigma^2) from sigma_T (~157) to 0 converges to the
    closed form at 4th order: measured errors 9.4e-6 with 2000 steps, 5.2e-7 with 4000."""
    sched, mu, s = linear_schedule(1000), 0.5, 0.3
    ab_T = float(sched.alphas_cumprod[-1])
    x_T = torch.linspace(-3, 3, 7, dtype=torch.float64)
    exact = pf_ode_solution(x_T, sched, mu, s)
    f = lambda x, sig: (x - mu) * sig / (s ** 2 + sig ** 2)            # noqa: E731
    errors = []
    for n in (2000, 4000):
        sig_T = math.sqrt((1 - ab_T) / ab_T)
        x, h = x_T / math.sqrt(ab_T), -sig_T / n
        for k in range(n):
            sig = sig_T + k * h
            k1 = f(x, sig)
            k2 = f(x + h / 2 * k1, sig + h / 2)
            k3 = f(x + h / 2 * k2, sig + h / 2)
            k4 = f(x + h * k3, sig + h)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        errors.append((x - exact).abs().max().item())
    assert errors[1] < 1e-6 and errors[0] / errors[1] > 12, errors      # 2^4 = 16 for RK4


def test_heun_with_every_timestep_reaches_the_closed_form():
    """The samplers' last step jumps from the smallest noise level, sigma_min^2 = (1 - ab_0) / ab_0,
    straight to the x_0 guess, an error of ~sigma_min^2 / (2 s^2) relative that no number of steps
    removes: 2e-4 at the linear schedule's beta_0 = 1e-4, 2e-6 at beta_0 = 1e-6."""
    mu, s = 0.5, 0.5
    x_T = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    for beta_start, tol in [(1e-4, 3e-4), (1e-6, 1e-5)]:
        sched = linear_schedule(1000, beta_start=beta_start)
        x = run("heun", ExactGaussianDenoiser(sched, mu, s), x_T, sched, None)
        err = (x - pf_ode_solution(x_T, sched, mu, s)).abs().max().item()
        assert err < tol, (beta_start, err)


# --- accuracy: convergence order of the deterministic samplers -----------------------------------

@pytest.mark.parametrize("name, order", [("ddim", 1), ("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_deterministic_samplers_converge_at_their_order(name, order):
    """Fit log(max error) against log(steps) over 40, 80, 160, 320 steps, in float64.

    Measured slopes: DDIM 0.991, Euler 0.991 (the two are the same method), Heun 2.009,
    DPM-Solver++(2M) 2.029; tolerance +-0.15. The schedule starts at beta_0 = 1e-6 so that the
    floor of the last jump to sigma = 0 (2e-6, see above) stays far below the errors measured
    (> 1e-4). Below ~40 steps DPM-Solver++ is not yet in its asymptotic regime (slope 1.8 over
    20-160 steps): with timesteps evenly spaced in t, its last steps are long in lambda."""
    sched, mu, s = linear_schedule(1000, beta_start=1e-6), 0.5, 0.5
    model = ExactGaussianDenoiser(sched, mu, s)
    x_T = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    exact = pf_ode_solution(x_T, sched, mu, s)
    steps = [40, 80, 160, 320]
    errors = []
    for n in steps:
        x = run(name, model, x_T, sched, n)
        assert x.dtype == torch.float64
        errors.append((x - exact).abs().max().item())
    log_n, log_e = torch.tensor(steps, dtype=torch.float64).log(), torch.tensor(errors).log()
    slope = -((log_n - log_n.mean()) * (log_e - log_e.mean())).sum() / ((log_n - log_n.mean()) ** 2).sum()
    assert slope.item() == pytest.approx(order, abs=0.15), (errors, slope)
    assert all(a > b for a, b in zip(errors, errors[1:]))


def test_ddim_without_noise_is_euler():
    """DDIM (eta = 0) is Euler's method on dx~/dsigma = eps (Song et al. 2021, eq. 14).

    In float64: the cosine schedule's last step has sigma ~2e4, and float32 rounding in the
    first step then differs between the two formulations by ~1e-4."""
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sched in (linear_schedule(1000), cosine_schedule(1000)):
        model = ExactGaussianDenoiser(sched, 0.5, 0.3)
        for spacing in ("linspace", "trailing"):
            a = sample_ddim(model, x_T, sched, 20, spacing=spacing, clip_x0=False, progress=False)
            b = sample_euler(model, x_T, sched, 20, spacing=spacing, clip_x0=False, progress=False)
            assert torch.allclose(a, b, atol=1e-9, rtol=0)


def test_euler_ancestral_step_is_the_ancestral_split():
    """sigma_up = min(sigma_s, eta sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2)), sigma_down^2 = sigma_s^2 -
    sigma_up^2, x~_s = x~_t + (sigma_down - sigma_t) eps + sigma_up z, written out here in float64."""
    g = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    for ab_t, ab_s in [(0.45, 0.6), (1e-4, 0.05), (0.9, 0.99), (0.3, 1.0)]:
        st, ss = math.sqrt((1 - ab_t) / ab_t), math.sqrt((1 - ab_s) / ab_s)
        for eta in (0.0, 0.5, 1.0, 3.0):
            up = min(ss, eta * ss * math.sqrt(st ** 2 - ss ** 2) / st)
            down = math.sqrt(ss ** 2 - up ** 2)
            assert down ** 2 + up ** 2 == pytest.approx(ss ** 2)
            assert ancestral_sigmas(st, ss, eta) == pytest.approx((down, up))
            want = math.sqrt(ab_s) * (x_t / math.sqrt(ab_t) + (down - st) * eps + up * z)
            got = euler_ancestral_step(x_t, eps, ab_t, ab_s, z, eta)
            assert torch.allclose(got, want, atol=1e-10, rtol=1e-10), (ab_t, ab_s, eta)
        # eta = 0 is Euler's step; the last step (sigma_s = 0) adds no noise and lands on the guess x_0
        assert torch.allclose(euler_ancestral_step(x_t, eps, ab_t, ab_s, z, 0.0), euler_step(x_t, eps, ab_t, ab_s))
    assert torch.allclose(euler_ancestral_step(x_t, eps, 0.3, 1.0, None),
                          (x_t - math.sqrt(0.7) * eps) / math.sqrt(0.3))
    # with eta = 1 the added variance is that of the variance-exploding posterior q(x~_s | x~_t, x_0)
    st, ss = 3.0, 1.0
    assert ancestral_sigmas(st, ss, 1.0)[1] ** 2 == pytest.approx(ss ** 2 * (st ** 2 - ss ** 2) / st ** 2)
    with pytest.raises(ValueError, match="z: expected standard normal noise"):
        euler_ancestral_step(x_t, eps, 0.45, 0.6, None, 1.0)


def test_euler_ancestral_is_euler_without_noise_ddim_with_its_eta_and_ddpm_with_eta_one():
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sched in (linear_schedule(1000), cosine_schedule(1000)):
        model = ExactGaussianDenoiser(sched, 0.5, 0.3)
        for spacing in ("linspace", "trailing"):
            a = run("euler_ancestral", model, x_T, sched, 20, spacing=spacing, eta=0.0)
            b = sample_euler(model, x_T, sched, 20, spacing=spacing, clip_x0=False, progress=False)
            assert torch.allclose(a, b, atol=1e-12, rtol=0)
        # the same sampler as DDIM with the same eta, and with eta = 1 as DDPM, given the same noise
        for spacing in ("linspace", "trailing"):
            for eta in (0.3, 1.0):
                a = run("euler_ancestral", model, x_T, sched, 20, seed=3, spacing=spacing, eta=eta)
                assert torch.allclose(a, run("ddim", model, x_T, sched, 20, seed=3, spacing=spacing, eta=eta),
                                      atol=1e-10, rtol=0)
            assert torch.allclose(run("euler_ancestral", model, x_T, sched, 20, seed=3, spacing=spacing),
                                  run("ddpm", model, x_T, sched, 20, seed=3, spacing=spacing), atol=1e-10, rtol=0)
        a, b = (run("euler_ancestral", model, x_T, sched, 20, seed=3) for _ in range(2))
        c = run("euler_ancestral", model, x_T, sched, 20, seed=4)
        assert torch.equal(a, b) and (a - c).abs().mean() > 1e-3


# --- the distribution of the samples -------------------------------------------------------------

# (sampler, steps, kwargs, std / s allowed range); measured with 20,000 samples: see the docstring
CASES = [
    ("ddpm", None, {}, (0.95, 1.05)),              # 0.99
    ("ddpm", 100, {}, (0.85, 1.0)),                # 0.90: respaced beta_tilde ignores the x_0 guess's spread
    ("ddim", 100, {"eta": 1.0}, (0.85, 1.0)),      # 0.90: the same chain as DDPM
    ("ddim", 100, {}, (0.93, 1.0)),                # 0.96: first order, the error shrinks the spread
    ("euler", 100, {}, (0.93, 1.0)),               # 0.96
    ("heun", 100, {}, (0.97, 1.03)),               # 1.006
    ("dpmpp_2m", 100, {}, (0.97, 1.06)),           # 1.035: second order, but widens at 20-50 steps
    ("euler_ancestral", 100, {}, (0.85, 0.95)),    # 0.90: with eta = 1 it is DDPM's chain
    ("euler_ancestral", None, {}, (0.95, 1.05)),   # 0.99
]


@pytest.mark.parametrize("name, steps, kwargs, std_range", CASES)
def test_samples_have_the_data_mean_and_spread(name, steps, kwargs, std_range):
    """Data N(0.5, 0.3^2), linear schedule. With 20,000 samples the standard error of the mean is 0.002
    and of the std ~0.005 s. The deterministic samplers' spread is off by their discretisation error
    (DDIM/Euler 0.92 s, Heun 1.01 s, DPM-Solver++(2M) 1.11 s at 50 steps); DDPM with all 1000 steps
    and, at 100 steps, DDPM and DDIM(eta=1) carry the respacing bias described in ``sample_ddpm``."""
    sched, mu, s = linear_schedule(1000), 0.5, 0.3
    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0))
    x = run(name, ExactGaussianDenoiser(sched, mu, s), x_T, sched, steps, seed=1, **kwargs)
    assert x.mean().item() == pytest.approx(mu, abs=0.01)
    lo, hi = std_range
    assert lo * s < x.std().item() < hi * s


def test_ddim_with_eta_one_is_ddpm():
    """Same timesteps and the same noise give the same samples (eta = 1 makes DDIM's variance DDPM's
    beta_tilde); with independent noise the two agree in distribution."""
    sched = linear_schedule(1000)
    model = ExactGaussianDenoiser(sched, 0.5, 0.3)
    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0))
    for spacing in ("linspace", "trailing"):
        a = run("ddpm", model, x_T[:256], sched, 20, seed=3, spacing=spacing)
        b = run("ddim", model, x_T[:256], sched, 20, seed=3, spacing=spacing, eta=1.0)
        assert torch.allclose(a, b, atol=1e-4)
    a = run("ddpm", model, x_T, sched, 20, seed=1)
    b = run("ddim", model, x_T, sched, 20, seed=2, eta=1.0)
    # each mean has standard error ~0.0015, each std ~0.001
    assert a.mean().item() == pytest.approx(b.mean().item(), abs=0.007)
    assert a.std().item() == pytest.approx(b.std().item(), abs=0.005)
    assert b.std().item() < 0.25                     # at 20 steps both are clearly too narrow (0.21)


# --- guidance --------------------------------------------------------------------------------

class LabelModel(torch.nn.Module):
    """Output depends on the label (the null label is num_classes); counts calls and batch sizes."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.num_classes, self.batches = num_classes, []

    def forward(self, x_t, t, cond=None):
        self.batches.append(x_t.shape[0])
        label = cond["label"] if isinstance(cond, dict) else cond
        if label is None:
            label = torch.full((x_t.shape[0],), 3)
        return 0.7 * x_t + t.reshape(-1, 1) / 1000 + (label.reshape(-1, 1) + 1.0) ** 2


def test_guidance_weights_one_and_zero_are_exactly_the_conditional_and_unconditional_models():
    model = LabelModel()
    x, t, labels = torch.randn(5, 2), torch.tensor([3, 7, 9, 9, 1]), torch.tensor([0, 1, 2, 1, 0])
    cond_out, uncond_out = model(x, t, labels), model(x, t, None)
    for cond in (labels, {"label": labels}):
        model.batches.clear()
        assert torch.equal(model_output(model, x, t, cond, 1.0), cond_out)
        assert torch.equal(model_output(model, x, t, cond, 0.0), uncond_out)
        guided = model_output(model, x, t, cond, 2.5)
        assert torch.allclose(guided, uncond_out + 2.5 * (cond_out - uncond_out))
        assert model.batches == [5, 5, 10]           # w = 2.5: one call on a batch of 2B
    assert torch.equal(model_output(model, x, t, None, 4.0), uncond_out)    # nothing to guide towards


def test_guidance_with_a_real_model_and_without_batching():
    """The 2B batch uses the null label explicitly; a model's own reading of ``cond=None`` must agree."""
    torch.manual_seed(0)
    model = MLPDenoiser(num_classes=4).eval()
    x, t, labels = torch.randn(6, 2), torch.randint(0, 1000, (6,)), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        expected = model(x, t, None) + 3.0 * (model(x, t, labels) - model(x, t, None))
        assert torch.allclose(model_output(model, x, t, labels, 3.0), expected, atol=1e-5)
        plain = LabelModel(num_classes=None)          # null label not known: two calls of B
        model_output(plain, x, t, labels, 3.0)
        assert plain.batches == [6, 6]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_guided_sampling_of_gaussian_classes_reaches_the_guided_mean(name):
    """w = 3 between N(0.2, 0.3^2) (null) and N(0.4, 0.3^2) (class 1): samples centred on 0.2 + 3 * 0.2."""
    sched = linear_schedule(1000)
    model = ExactClassGaussians(sched, [-0.5, 0.4, 0.2], 0.3)
    x_T = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    labels = torch.ones(4000, dtype=torch.long)
    x = run(name, model, x_T, sched, 100, cond=labels, guidance_scale=3.0)
    assert x.mean().item() == pytest.approx(0.8, abs=0.02)              # standard error 0.005
    x = run(name, model, x_T, sched, 100, cond=labels, guidance_scale=0.0)
    assert x.mean().item() == pytest.approx(0.2, abs=0.02)


# --- prediction types, callbacks, clipping, arguments ------------------------------------------

@pytest.mark.parametrize("name", list(SAMPLERS))
def test_prediction_types_give_the_same_samples(name):
    sched = linear_schedule(1000)
    eps_model = ExactGaussianDenoiser(sched, 0.3, 0.5)

    class As(torch.nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind = kind

        def forward(self, x_t, t, cond=None):
            ab = sched.alphas_cumprod[t][:, None]
            eps = eps_model(x_t, t)
            x_0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
            return x_0 if self.kind == "sample" else ab.sqrt() * eps - (1 - ab).sqrt() * x_0

    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    a = run(name, eps_model, x_T, sched, 20, seed=2)
    for kind in ("sample", "v_prediction"):
        b = run(name, As(kind), x_T, sched, 20, seed=2, prediction_type=kind)
        assert torch.allclose(a, b, atol=1e-4), kind


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_sees_every_step(name):
    sched = linear_schedule(100)
    seen = []
    x = get_sampler(name)(ExactGaussianDenoiser(sched, 0.0, 1.0), torch.randn(4, 2), sched, 10,
                          spacing="trailing", callback=lambda i, t, x, x0: seen.append((i, t, x, x0)),
                          progress=False)
    assert [i for i, *_ in seen] == list(range(9, -1, -1))
    assert [t for _, t, *_ in seen] == list(range(99, 0, -10))
    assert all(x_i.shape == x0.shape == (4, 2) for *_, x_i, x0 in seen)
    assert torch.equal(seen[-1][2], x)               # the last callback sees the final sample


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_clip_x0_keeps_samples_in_the_image_range(name):
    """Every sampler's last step returns the (clipped) x_0 guess. Data N(2, 0.3^2) lies outside [-1, 1]."""
    sched = linear_schedule(1000)
    model = ExactGaussianDenoiser(sched, 2.0, 0.3)
    x_T = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    x = get_sampler(name)(model, x_T, sched, 10, progress=False)                  # clip_x0=True by default
    assert float(x.abs().max()) <= 1.0 and float(x.mean()) > 0.9
    assert float(run(name, model, x_T, sched, 10).mean()) > 1.5


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bad_arguments_are_named(name):
    sched, x_T = linear_schedule(1000), torch.randn(4, 2)
    model = ExactGaussianDenoiser(sched, 0.0, 1.0)
    sampler = get_sampler(name)
    with pytest.raises(ValueError, match="spacing: expected one of 'linspace', 'leading', 'trailing', 'quadratic', "
                                         "'reversed_quadratic', 'karras', 'logsnr', got 'cosine'"):
        sampler(model, x_T, sched, 10, spacing="cosine", progress=False)
    with pytest.raises(ValueError, match="steps: expected at most the schedule's T = 1000, got 2000"):
        sampler(model, x_T, sched, 2000, progress=False)
    with pytest.raises(ValueError, match="steps: expected a positive value, got 0"):
        sampler(model, x_T, sched, 0, progress=False)
    with pytest.raises(ValueError, match="prediction_type: expected one of"):
        sampler(model, x_T, sched, 10, prediction_type="eps", progress=False)
    with pytest.raises(ValueError, match="x_T: expected a tensor with"):
        sampler(model, torch.randn(4), sched, 10, progress=False)


def test_sampler_registry():
    assert list(SAMPLERS) == ["ddpm", "ddim", "euler", "heun", "dpmpp_2m", "euler_ancestral"]
    assert get_sampler("ddim") is sample_ddim and get_sampler("ddpm") is sample_ddpm
    with pytest.raises(ValueError, match="name: expected one of 'ddpm', 'ddim', 'euler', 'heun', 'dpmpp_2m', "
                                         "'euler_ancestral', got 'dpm'"):
        get_sampler("dpm")
    with pytest.raises(ValueError, match="eta: expected a number >= 0, got -1"):
        sample_ddim(ExactGaussianDenoiser(linear_schedule(10), 0.0, 1.0), torch.randn(2, 1), linear_schedule(10),
                    eta=-1, progress=False)
