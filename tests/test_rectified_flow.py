"""dlcourse.rectified_flow against answers that can be checked independently: the loss by hand on fixed draws
(and the mistakes it must not equal), the known minimum of the loss for Gaussian data, the moments of SD3's
logit-normal t, straightness in closed form, the exact Gaussian flow's path, reflow pairs from one ODE path,
a small flow trained and reflowed on two moons, and the model fed on its own device.

For x_0 ~ N(mu, s^2 I) and u = eps - x_0 (per coordinate, jointly Gaussian with x_t): Var(x_t) =
v_t = (1 - t)^2 s^2 + t^2, Var(u) = 1 + s^2, Cov(u, x_t) = t - (1 - t) s^2, so the best possible
loss at time t is Var(u | x_t) = 1 + s^2 - (t - (1 - t) s^2)^2 / v_t = s^2 / v_t, and over t ~ U(0, 1)
int_0^1 s^2 / v_t dt = s (arctan(1 / s) + arctan(s)) = pi s / 2. A field f off the ideal f* by a
constant Delta at time t costs exactly Delta^2 more on average (the cross term has mean zero).
"""

import copy
import math

import pytest
import torch

from dlcourse.data import make_toy
from dlcourse.metrics import reference_distance, sample_distance
from dlcourse.models import MLPDenoiser
from dlcourse.rectified_flow import (Coupling, flow_matching_loss, one_step_distillation_loss, reflow_pairs, sample_flow,
                                     sample_times, straightness, train_flow, trajectories)
from dlcourse.samplers import FlowDenoiser, flow_times
from dlcourse.tensors import seeded_noise

from test_denoiser import MU, S, ExactGaussianFlow
from test_device_placement import MetaModel, fed_on_the_models_device

pytestmark = pytest.mark.usefixtures("one_thread")
T_MAX = flow_times(1)[0]                                  # 0.999: where the samplers start


class Affine(torch.nn.Module):
    """A stand-in velocity network with a known answer: ``a x_t + b t`` (t as the network sees it)."""

    def __init__(self, a=0.5, b=1.0):
        super().__init__()
        self.a, self.b, self.seen_t = a, b, None

    def forward(self, x_t, t, cond=None):
        self.seen_t = t
        return self.a * x_t + self.b * t.reshape(-1, 1).to(x_t.dtype)


def gaussian_data(n, seed=0):
    return MU + S * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- the loss ---------------------------------------------------------------------------------------

X0 = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], dtype=torch.float64)
EPS = torch.tensor([[0.3, 0.1], [-1.2, 0.8], [0.0, -0.5]], dtype=torch.float64)
T = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)


def by_hand(x_t, t, target, a=0.5, b=1.0):
    return ((a * x_t + b * t[:, None] - target) ** 2).mean().item()


def test_the_loss_is_the_velocity_error_at_the_straight_line_point():
    got = flow_matching_loss(Affine(), X0, eps=EPS, t=T).item()
    right = by_hand((1 - T[:, None]) * X0 + T[:, None] * EPS, T, EPS - X0)
    mistakes = {
        "velocity sign (x_0 - eps)": by_hand((1 - T[:, None]) * X0 + T[:, None] * EPS, T, X0 - EPS),
        "t reversed (noise at t = 0)": by_hand(T[:, None] * X0 + (1 - T[:, None]) * EPS, T, X0 - EPS),
        "x_t mixed the wrong way": by_hand(T[:, None] * X0 + (1 - T[:, None]) * EPS, T, EPS - X0),
        "target eps (epsilon prediction)": by_hand((1 - T[:, None]) * X0 + T[:, None] * EPS, T, EPS),
        "variance-preserving x_t": by_hand(torch.sqrt(1 - T[:, None]) * X0 + torch.sqrt(T[:, None]) * EPS, T,
                                           EPS - X0),
    }
    assert got == pytest.approx(right, rel=1e-6)          # the loss is taken in float32
    for name, value in mistakes.items():
        assert abs(value - right) > 0.05, f"the check cannot tell the loss from the mistake: {name}"


def test_the_network_sees_t_times_time_scale_and_one_t_may_serve_all():
    model = Affine()
    flow_matching_loss(model, X0, eps=EPS, t=T, time_scale=1000.0)
    assert torch.allclose(model.seen_t, 1000 * T)
    flow_matching_loss(model, X0, eps=EPS, t=0.5)
    assert torch.equal(model.seen_t, torch.full((3,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal"])
def test_drawn_t_and_eps_come_from_the_generator_t_first(sampling):
    model = Affine()
    got = flow_matching_loss(model, X0, t_sampling=sampling, logit_mean=0.3, logit_std=0.7,
                             generator=torch.Generator().manual_seed(4)).item()
    g = torch.Generator().manual_seed(4)
    t = sample_times(3, sampling, logit_mean=0.3, logit_std=0.7, generator=g).double()
    eps = torch.randn(X0.shape, generator=g, dtype=torch.float64)
    assert torch.allclose(model.seen_t, t)
    assert got == pytest.approx(by_hand((1 - t[:, None]) * X0 + t[:, None] * eps, t, eps - X0), rel=1e-6)


@pytest.mark.parametrize("t", [0.1, 0.3, 0.7, 0.95])
def test_the_exact_gaussian_velocity_reaches_the_known_minimum_and_a_wrong_one_pays_its_error(t):
    """Minimum s^2 / v_t (module docstring); 800,000 squared residuals: relative std sqrt(2 / 8e5) = 0.16%,
    1% allowed."""
    x_0 = gaussian_data(400_000, seed=1)
    eps = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v_t = (1 - t) ** 2 * S ** 2 + t ** 2
    best = flow_matching_loss(ExactGaussianFlow(MU, S), x_0, eps=eps, t=t).item()
    assert best == pytest.approx(S ** 2 / v_t, rel=0.01)
    # mu off by delta: the field moves by -delta (1 + c_t (1 - t)), c_t = (t - (1 - t) s^2) / v_t, at every x
    delta = 0.3
    shift = delta * (1 + (t - (1 - t) * S ** 2) / v_t * (1 - t))
    wrong = flow_matching_loss(ExactGaussianFlow(MU + delta, S), x_0, eps=eps, t=t).item()
    assert wrong - best == pytest.approx(shift ** 2, rel=0.05, abs=2e-3)
    reversed_sign = flow_matching_loss(lambda x, tt, c=None: -ExactGaussianFlow(MU, S)(x, tt), x_0, eps=eps, t=t)
    assert reversed_sign.item() > best + 0.1


def test_over_uniform_t_the_exact_velocity_reaches_pi_s_over_2():
    x_0 = gaussian_data(400_000, seed=3)
    got = flow_matching_loss(ExactGaussianFlow(MU, S), x_0, generator=torch.Generator().manual_seed(5)).item()
    assert got == pytest.approx(math.pi * S / 2, rel=0.015)         # std of the estimate ~0.3% here


def test_logit_normal_t_has_sd3s_median_and_spread():
    """t = sigmoid(u), u ~ N(m, s^2): median sigmoid(m), quartiles sigmoid(m -+ 0.6745 s). 200,000 draws: the
    sample quantiles' std is about 0.001 in t, 0.005 allowed; logit(t)'s mean and std within 5 standard errors."""
    m, s, n = 0.5, 0.8, 200_000
    t = sample_times(n, "logit_normal", logit_mean=m, logit_std=s, generator=torch.Generator().manual_seed(0))
    assert t.shape == (n,) and bool(((t > 0) & (t < 1)).all())
    q = torch.quantile(t.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    want = [1 / (1 + math.exp(-(m + z * s))) for z in (-0.6745, 0.0, 0.6745)]
    assert q.tolist() == pytest.approx(want, abs=0.005)
    u = torch.logit(t.double())
    assert abs(u.mean().item() - m) < 5 * s / math.sqrt(n) and u.std().item() == pytest.approx(s, rel=0.01)
    uniform = sample_times(n, generator=torch.Generator().manual_seed(1)).double()
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.005) and uniform.var().item() == pytest.approx(1 / 12,
                                                                                                          rel=0.02)


# --- sampling and paths -------------------------------------------------------------------------------

def test_one_euler_step_is_x_minus_t_v():
    """From the flow's point s x_T at t_max, one step to t = 0: x_0 = s x_T - t_max v(s x_T, t_max)."""
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = FlowDenoiser.scale(T_MAX) * x_T
    want = start - T_MAX * (0.5 * start + T_MAX)
    assert torch.allclose(sample_flow(Affine(), x_T, 1), want, atol=1e-12)


def exact_path(x_start, t_start, t, mu=MU, s=S):
    """The exact Gaussian flow's ODE keeps (x_t - (1 - t) mu) / sqrt(v_t) constant (tests/test_denoiser.py)."""
    def v(t):
        return (1 - t) ** 2 * s ** 2 + t ** 2
    z = (x_start - (1 - t_start) * mu) / math.sqrt(v(t_start))
    return (1 - t) * mu + math.sqrt(v(t)) * z


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_trajectories_are_the_ode_path_at_the_stated_times(shift):
    """Heun with 200 steps follows the exact flow to 1e-3; point k is at (flow_times + [0])[k], in the flow's x."""
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    class Scaled(ExactGaussianFlow):                  # expects t * 1000, as the course's networks do
        def forward(self, x_t, t, cond=None):
            return super().forward(x_t, t / 1000, cond)

    path = trajectories(Scaled(MU, S), x_T, 200, solver="heun", time_scale=1000, shift=shift)
    times = flow_times(200, shift=shift) + [0.0]
    assert path.shape == (201, 64, 2)
    assert torch.equal(path[0], FlowDenoiser.scale(times[0]) * x_T)          # times[0] = 0.999 before the shift
    for k in (0, 1, 100, 199, 200):
        assert (path[k] - exact_path(path[0], times[0], times[k])).abs().max() < 1e-3, k
    assert torch.equal(path[-1], sample_flow(Scaled(MU, S), x_T, 200, solver="heun", time_scale=1000, shift=shift))


def test_straightness_in_closed_form():
    tau = torch.linspace(0, 1, 1001, dtype=torch.float64)
    d = torch.tensor([[2.0, -1.0], [0.5, 0.5]], dtype=torch.float64)                    # two paths (B = 2)
    line = tau[:, None, None] * d                                                      # (1001, 2, 2)
    assert straightness(line) == pytest.approx(0.0, abs=1e-20)
    # the same line reached at times that are not evenly spaced, at constant speed in those times: still 0
    t = torch.tensor([1.0, 0.9, 0.5, 0.45, 0.0], dtype=torch.float64)
    assert straightness((1 - t)[:, None, None] * d, times=t) == pytest.approx(0.0, abs=1e-20)
    # ... and taken as evenly spaced it is not (speed varies)
    assert straightness((1 - t)[:, None, None] * d) > 0.1
    # a right angle (0, 0) -> (1, 0) -> (1, 1): each half's velocity is off the chord's by (1, -1) or (-1, 1): 2
    corner = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)[:, None, :]
    assert straightness(corner) == pytest.approx(2.0, rel=1e-12)
    # half a unit circle: int |d - pi (-sin, cos)|^2 = 4 - 8 + pi^2
    circle = torch.stack([torch.cos(math.pi * tau), torch.sin(math.pi * tau)], -1)[:, None, :]
    assert straightness(circle) == pytest.approx(math.pi ** 2 - 4, rel=1e-4)
    # a straight line at speed 2 tau: int |d - 2 tau d|^2 = |d|^2 / 3 (|d|^2 = 5 and 0.5, mean 2.75)
    assert straightness(tau[:, None, None] ** 2 * d) == pytest.approx(2.75 / 3, rel=1e-5)
    assert straightness(corner[[0, 2]]) == 0.0                           # one segment is its own chord


def test_reflow_pairs_are_the_start_and_end_of_one_ode_path():
    torch.manual_seed(0)
    model = MLPDenoiser(hidden=32, layers=2).eval()
    pairs = reflow_pairs(model, 300, steps=7, seed=3, time_scale=1000)
    assert isinstance(pairs, Coupling) and pairs.eps.shape == pairs.x_0.shape == (300, 2)
    assert torch.equal(pairs.eps, seeded_noise((300, 2), 3))
    assert torch.equal(pairs.x_0, sample_flow(model, pairs.eps, 7, time_scale=1000))
    assert torch.equal(pairs.x_0, trajectories(model, pairs.eps, 7, time_scale=1000)[-1])
    chunked = reflow_pairs(model, 300, steps=7, seed=3, time_scale=1000, batch_size=64)
    assert torch.allclose(chunked.x_0, pairs.x_0, atol=1e-6)
    assert not torch.allclose(reflow_pairs(model, 300, steps=7, seed=4, time_scale=1000).eps, pairs.eps)


# --- a small flow, trained and reflowed -----------------------------------------------------------------

def test_a_small_flow_samples_two_moons_and_one_reflow_makes_one_step_land_where_fifty_do():
    """Measured (tiny MLP, 400 steps each, 1 thread, ~5 s): 50 Euler steps at 2.3-2.8x the floor (n = 1000);
    mean squared distance from each 1-step sample to its 50-step sample 1.5-1.7 before reflow, 0.006-0.007
    after; straightness of the 50-step path 0.82-0.83 before, 0.002 after (three initialisations)."""
    common = dict(steps=400, batch_size=256, time_scale=1000, ema_decay=None, precision="fp32", device="cpu",
                  progress=False)
    torch.manual_seed(0)
    flow = train_flow(MLPDenoiser(hidden=64, layers=2), make_toy("two_moons", 8000, seed=0), **common).model
    reflowed = train_flow(copy.deepcopy(flow), reflow_pairs(flow, 8000, steps=50, time_scale=1000), **common).model

    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))
    floor = reference_distance("two_moons", 1000)
    fresh = make_toy("two_moons", 1000, seed=1)
    gap, bend = {}, {}
    for name, model in (("1-RF", flow), ("2-RF", reflowed)):
        path = trajectories(model, x_T, 50, time_scale=1000)
        one = sample_flow(model, x_T, 1, time_scale=1000)
        assert sample_distance(path[-1], fresh) < 5 * floor, name
        gap[name] = (one - path[-1]).square().sum(1).mean().item()
        bend[name] = straightness(path)
    assert gap["1-RF"] > 0.5 and gap["2-RF"] < 0.05 and gap["2-RF"] < gap["1-RF"] / 20
    assert bend["2-RF"] < bend["1-RF"] / 20
    assert sample_distance(sample_flow(reflowed, x_T, 1, time_scale=1000), fresh) < 5 * floor


# --- devices and arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("with_eps", [False, True])
def test_the_loss_feeds_the_model_on_its_device(with_eps):
    x_0 = torch.randn(4, 2)
    eps = torch.randn(4, 2) if with_eps else None
    fed_on_the_models_device(lambda m: flow_matching_loss(m, x_0, eps=eps, t_sampling="logit_normal",
                                                          generator=torch.Generator().manual_seed(0)), MetaModel())
    fed_on_the_models_device(lambda m: flow_matching_loss(m, x_0, eps=eps, t=torch.rand(4)), MetaModel())


# --- one-step distillation (k = 1) ------------------------------------------------------------------

def test_one_step_distillation_predicts_what_the_one_step_sampler_returns():
    model, eps, x_0 = Affine(a=0.5, b=1e-3), EPS.clone(), X0.clone()
    loss = one_step_distillation_loss(model, eps, x_0, time_scale=1000)
    sample = sample_flow(model, eps, 1, time_scale=1000)
    assert loss.item() == pytest.approx(((sample - x_0) ** 2).mean().item(), rel=1e-6)     # the loss is in float32
    x = math.hypot(1 - T_MAX, T_MAX) * eps                               # the sampler's start, by hand
    x_0_hat = x - T_MAX * (0.5 * x + 1e-3 * T_MAX * 1000)
    assert loss.item() == pytest.approx(((x_0_hat - x_0) ** 2).mean().item(), rel=1e-6)
    for wrong in (eps - T_MAX * (0.5 * eps + 1e-3 * T_MAX * 1000),     # no scale at the start
                  x - 1.0 * (0.5 * x + 1e-3 * 1.0 * 1000),              # t = 1 instead of t_max
                  x + T_MAX * (0.5 * x + 1e-3 * T_MAX * 1000)):         # stepped along the velocity
        assert loss.item() != pytest.approx(((wrong - x_0) ** 2).mean().item(), rel=1e-4)


def test_one_step_distillation_is_zero_on_the_flows_own_one_step_ends_and_trains():
    model, eps = Affine(a=0.5, b=1e-3), gaussian_data(8)
    x_0 = sample_flow(model, eps, 1, time_scale=1000)                  # where one step of this flow lands
    assert one_step_distillation_loss(model, eps, x_0, time_scale=1000).item() < 1e-20
    x_0_unscaled = eps - T_MAX * (0.5 * eps + 1e-3 * T_MAX * 1000)     # the step without the start's scale
    assert one_step_distillation_loss(model, eps, x_0_unscaled, time_scale=1000).item() > 1e-8
    net = MLPDenoiser()
    loss = one_step_distillation_loss(net, torch.randn(4, 2), torch.randn(4, 2), time_scale=1000)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    fed_on_the_models_device(lambda m: one_step_distillation_loss(m, torch.randn(4, 2), torch.randn(4, 2)), MetaModel())
    with pytest.raises(ValueError, match="eps"):
        one_step_distillation_loss(net, torch.randn(4, 3), torch.randn(4, 2))


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_sampling_paths_and_pairs_feed_the_model_on_its_device(solver):
    x_T = torch.randn(3, 2)
    fed_on_the_models_device(lambda m: sample_flow(m, x_T, 3, solver=solver, time_scale=1000), MetaModel())
    fed_on_the_models_device(lambda m: trajectories(m, x_T, 3, solver=solver), MetaModel())
    fed_on_the_models_device(lambda m: reflow_pairs(m, 5, steps=3, shape=(2,), solver=solver), MetaModel())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="solver"):
        sample_flow(Affine(), torch.randn(2, 2), 2, solver="ddpm")
    with pytest.raises(ValueError, match="sampling"):
        sample_times(4, "normal")
    with pytest.raises(ValueError, match="eps: expected shape"):
        flow_matching_loss(Affine(), X0, eps=EPS[:2])
    with pytest.raises(ValueError, match="t: expected shape"):
        flow_matching_loss(Affine(), X0, t=T[:2])
    with pytest.raises(ValueError, match="path"):
        straightness(torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="times"):
        straightness(torch.zeros(3, 1, 2), times=[0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="shape"):
        reflow_pairs(Affine(), 4)
