"""The denoiser interface: one set of loops for a discrete VP model and a rectified flow, checked on Gaussian data.

For x_0 ~ N(mu, s^2 I) the rectified flow x_t = (1 - t) x_0 + t eps has the Gaussian marginal
N((1 - t) mu, v_t), v_t = (1 - t)^2 s^2 + t^2, and its ideal velocity is
E[eps - x_0 | x_t] = (t - (1 - t) s^2) (x_t - (1 - t) mu) / v_t - mu. Its ODE keeps
(x_t - (1 - t) mu) / sqrt(v_t) constant, so from x at t = t_max it ends at
x_0 = mu + s (x - (1 - t_max) mu) / sqrt(v_{t_max}).
"""

import math

import pytest
import torch

from dlcourse.parameterization import half_log_snr
from dlcourse.samplers import (LOOPS, FlowDenoiser, VPDenoiser, ddim_step, ddpm_step, dpmpp_2m_step, euler_loop,
                               euler_step, flow_times, heun_step, sample_ddim, sample_dpmpp_2m, sample_euler,
                               timesteps_for, vp_times)
from dlcourse.samplers import denoiser as denoiser_module
from dlcourse.schedules import cosine_schedule, linear_schedule

from test_samplers import ExactGaussianDenoiser, pf_ode_solution

pytestmark = pytest.mark.usefixtures("one_thread")
MU, S = 0.7, 0.4
DETERMINISTIC = ["ddim", "euler", "heun", "dpmpp_2m"]


class ExactGaussianFlow(torch.nn.Module):
    """The ideal velocity of the rectified flow for N(mu, s^2) data (module docstring); t is a (B,) float."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x_t, t, cond=None):
        t = t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
        v_t = (1 - t) ** 2 * self.s ** 2 + t ** 2
        return (t - (1 - t) * self.s ** 2) * (x_t - (1 - t) * self.mu) / v_t - self.mu


def flow_solution(x, t_max, mu=MU, s=S):
    v = (1 - t_max) ** 2 * s ** 2 + t_max ** 2
    return mu + s * (x - (1 - t_max) * mu) / math.sqrt(v)


def test_flow_alpha_bar_and_scale_put_the_flow_in_variance_preserving_form():
    den = FlowDenoiser(ExactGaussianFlow(MU, S))
    for t in (0.1, 0.5, 0.9):
        s, ab = den.scale(t), den.alpha_bar(t)
        assert math.isclose(math.sqrt(ab) * s, 1 - t) and math.isclose(math.sqrt(1 - ab) * s, t)


@pytest.mark.parametrize("prediction_type", ["velocity", "epsilon", "sample"])
def test_flow_denoiser_reads_every_prediction_type_as_the_same_x0_and_eps(prediction_type):
    x_0, eps, t = torch.randn(5, 3), torch.randn(5, 3), 0.3

    class Oracle(torch.nn.Module):            # answers with the true value of each target for these x_0, eps
        def forward(self, x_t, tt, cond=None):
            return {"velocity": eps - x_0, "epsilon": eps, "sample": x_0}[prediction_type]

    den = FlowDenoiser(Oracle(), prediction_type=prediction_type)
    x_vp = ((1 - t) * x_0 + t * eps) / den.scale(t)
    got_x0, got_eps = den(x_vp, t)
    assert torch.allclose(got_x0, x_0, atol=1e-5) and torch.allclose(got_eps, eps, atol=1e-5)


@pytest.mark.parametrize("name,steps,atol", [("euler", 400, 8e-3), ("heun", 40, 1e-3), ("dpmpp_2m", 40, 1e-2),
                                             ("ddim", 400, 8e-3)])
def test_the_same_loops_solve_a_rectified_flow(name, steps, atol):
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = flow_times(steps)
    den = FlowDenoiser(ExactGaussianFlow(MU, S))
    got = LOOPS[name](den, x_T, times, progress=False)
    want = flow_solution(den.scale(times[0]) * x_T, times[0])       # the flow's own x_t is scale * x
    assert (got - want).abs().max() < atol


@pytest.mark.parametrize("name,atol", [("ddim", 0.03), ("euler", 0.03), ("heun", 0.003), ("dpmpp_2m", 0.01)])
def test_vp_and_flow_models_of_the_same_data_end_at_the_same_samples(name, atol):
    """Both ODEs carry the noise's quantile to the data's: x_0 = mu + s z, up to where each starts."""
    z = torch.randn(128, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sched = linear_schedule(1000)
    vp = LOOPS[name](VPDenoiser(ExactGaussianDenoiser(sched, MU, S), sched), z, vp_times(sched, 200),
                     progress=False)
    flow = LOOPS[name](FlowDenoiser(ExactGaussianFlow(MU, S)), z, flow_times(200), progress=False)
    assert (vp - (MU + S * z)).abs().max() < atol and (flow - (MU + S * z)).abs().max() < atol
    assert (vp - pf_ode_solution(z, sched, MU, S)).abs().max() < atol


def test_flow_heun_converges_at_second_order_and_euler_at_first():
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    den = FlowDenoiser(ExactGaussianFlow(MU, S))
    err = {}
    for name in ("euler", "heun"):
        for steps in (10, 40):
            times = flow_times(steps)
            err[name, steps] = float((LOOPS[name](den, x_T, times, progress=False)
                                      - flow_solution(den.scale(times[0]) * x_T, times[0])).abs().max())
    assert 2.5 < err["euler", 10] / err["euler", 40] < 6          # about 4 = 40 / 10
    assert err["heun", 10] / err["heun", 40] > 9                  # about 16 = (40 / 10)^2


def test_flow_times_are_evenly_spaced_and_shifted_like_sd3():
    assert flow_times(4, t_max=1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    shifted = flow_times(4, shift=3.0, t_max=1.0)
    assert shifted == pytest.approx([3 * t / (1 + 2 * t) for t in (1.0, 0.75, 0.5, 0.25)])
    assert all(a > b for a, b in zip(shifted[1:], [0.75, 0.5, 0.25]))      # shift > 1: more time at high noise
    with pytest.raises(ValueError, match="steps: expected an int >= 1, got 0"):
        flow_times(0)


# --- the learner's step is the package's step -----------------------------------------------------

@pytest.mark.parametrize("sampler,step,spacing", [(sample_euler, "euler", "linspace"),
                                                  (sample_ddim, "ddim", "trailing")])
def test_the_loops_call_the_exported_step(monkeypatch, sampler, step, spacing):
    """Replace the module's step by one that counts its calls: the sampler must go through it."""
    import importlib

    module = importlib.import_module(f"dlcourse.samplers.{step}")
    original, calls = getattr(module, f"{step}_step"), []

    def counting(*args, **kwargs):
        calls.append(args[2:4])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, f"{step}_step", counting)
    sched = linear_schedule(100)
    sampler(ExactGaussianDenoiser(sched, MU, S), torch.randn(8, 2), sched, 7, spacing=spacing, clip_x0=False,
            progress=False)
    ab = sched.alphas_cumprod.double()
    taus = timesteps_for(sched, 7, spacing).flip(0).tolist()
    assert [pytest.approx((float(ab[t]), s)) for t, s in zip(taus, [float(ab[t]) for t in taus[1:]] + [1.0])] \
        == list(calls)


def test_steps_agree_with_each_other_where_the_papers_say_they_must():
    g = torch.Generator().manual_seed(3)
    x_t, eps, z, eps2 = (torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(4))
    ab_t, ab_s = 0.3, 0.55
    assert torch.allclose(ddim_step(x_t, eps, ab_t, ab_s, 0.0), euler_step(x_t, eps, ab_t, ab_s))
    assert torch.allclose(ddim_step(x_t, eps, ab_t, ab_s, 1.0, z), ddpm_step(x_t, eps, ab_t, ab_s, z))
    x_0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    assert torch.allclose(dpmpp_2m_step(x_t, x_0, ab_t, ab_s), ddim_step(x_t, eps, ab_t, ab_s))   # first order
    assert torch.allclose(heun_step(x_t, eps, eps, ab_t, ab_s), euler_step(x_t, eps, ab_t, ab_s))
    assert not torch.allclose(heun_step(x_t, eps, eps2, ab_t, ab_s), euler_step(x_t, eps, ab_t, ab_s))


# --- checks once, not at every step ----------------------------------------------------------------

def test_the_model_output_is_checked_once_per_sampling_run(monkeypatch):
    calls = []
    original = denoiser_module.check_tensor
    monkeypatch.setattr(denoiser_module, "check_tensor", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    sched = linear_schedule(100)
    sample_dpmpp_2m(ExactGaussianDenoiser(sched, MU, S), torch.randn(4, 2), sched, 10, clip_x0=False,
                    progress=False)
    assert calls == ["model output"]


def test_a_wrong_output_shape_is_named_at_the_first_call():
    sched = linear_schedule(100)

    class Wrong(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return x[:, :1]

    with pytest.raises(ValueError, match=r"model output: expected shape \(4, 2\), got \(4, 1\)"):
        sample_ddim(Wrong(), torch.randn(4, 2), sched, 5, progress=False)


def test_bad_times_and_denoisers_are_named():
    sched = linear_schedule(100)
    den = VPDenoiser(ExactGaussianDenoiser(sched, MU, S), sched)
    with pytest.raises(ValueError, match="times: expected strictly decreasing"):
        euler_loop(den, torch.randn(2, 2), [10, 50], progress=False)
    with pytest.raises(ValueError, match=r"times: expected integer timesteps in 0..99"):
        euler_loop(den, torch.randn(2, 2), [100, 50], progress=False)
    with pytest.raises(ValueError, match=r"times: expected flow times in \(0, 1\)"):
        euler_loop(FlowDenoiser(ExactGaussianFlow(MU, S)), torch.randn(2, 2), [1.0, 0.5], progress=False)
    with pytest.raises(TypeError, match="denoiser: expected a Denoiser"):
        euler_loop(ExactGaussianFlow(MU, S), torch.randn(2, 2), [0.5], progress=False)
    with pytest.raises(ValueError, match="prediction_type: expected one of 'velocity', 'epsilon', 'sample'"):
        FlowDenoiser(ExactGaussianFlow(MU, S), prediction_type="v_prediction")


# --- the log-SNR spacing ------------------------------------------------------------------------

@pytest.mark.parametrize("schedule,middle", [(linear_schedule(1000), slice(2, -2)),
                                             (cosine_schedule(1000), slice(0, 6))])
def test_logsnr_spacing_is_even_in_half_log_snr(schedule, middle):
    t = timesteps_for(schedule, 12, "logsnr")
    assert t[-1] == 999 and t[0] == 0 and bool((t.diff() > 0).all())
    lam = half_log_snr(schedule.alphas_cumprod.double()[t])
    gaps = -lam.diff()
    # each timestep is the nearest to its target; where the schedule's own steps in lambda are
    # small (not at the ends, where lambda changes fast from one timestep to the next), the gaps
    # are all close to the even one
    even = float(lam[0] - lam[-1]) / 11
    assert float(gaps[middle].sub(even).abs().max()) < 0.1 * even
