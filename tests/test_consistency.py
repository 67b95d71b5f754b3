"""dlcourse.consistency against answers that can be checked independently: the boundary condition exactly, the
coefficients as the least-squares split of x_0 measured on Gaussian draws, the exact consistency function of a
Gaussian flow (zero loss with an exact teacher step, and the plausible mistakes that are not zero), the order of
the Euler and Heun teacher steps, the re-noising of multistep sampling in distribution, a short distillation on
two moons, and clear errors.

For x_0 ~ N(mu, s^2 I) the flow's ODE keeps ``z = (x_t - (1 - t) mu) / sqrt(v_t)`` constant, ``v_t = (1 - t)^2 s^2
+ t^2`` (tests/test_rectified_flow.py), so the step from t to s is ``(1 - s) mu + sqrt(v_s) z`` and the
consistency function with its boundary at t_min is the step to t_min.
"""

import copy
import math

import pytest
import torch

from dlcourse.consistency import (T_MIN, ConsistencyModel, FlowFromVP, boundary_coefficients,
                                  consistency_distillation_loss,
                                  consistency_levels, flow_teacher, multistep_sample, multistep_times,
                                  train_consistency)
from dlcourse.data import make_toy
from dlcourse.metrics import reference_distance, sample_distance
from dlcourse.models import MLPDenoiser
from dlcourse.rectified_flow import train_flow

from test_denoiser import MU, S, ExactGaussianFlow
from test_device_placement import MetaModel, fed_on_the_models_device

pytestmark = pytest.mark.usefixtures("one_thread")


def v(t):
    return (1 - t) ** 2 * S ** 2 + t ** 2


def exact_step(x, t, s):
    """The Gaussian flow's ODE from time t to time s (numbers or (B,) tensors)."""
    t, s = (torch.as_tensor(a, dtype=x.dtype).reshape(-1, 1) for a in (t, s))
    z = (x - (1 - t) * MU) / v(t).sqrt()
    return (1 - s) * MU + v(s).sqrt() * z


class ExactF(torch.nn.Module):
    """The exact consistency function, written as the network F of a ``ConsistencyModel`` (this t_min, sigma_data)."""

    def __init__(self, t_min=T_MIN, sigma_data=0.5):
        super().__init__()
        self.t_min, self.sigma_data = t_min, sigma_data

    def forward(self, x, t, cond=None):
        c_skip, c_out = boundary_coefficients(t, self.t_min, self.sigma_data)
        c_skip, c_out = c_skip.reshape(-1, 1), c_out.reshape(-1, 1)
        f = exact_step(x, t, torch.full_like(t, self.t_min))
        return torch.where(c_out > 0, (f - c_skip * x) / c_out.clamp_min(1e-300), torch.zeros_like(x))


def exact_model(t_min=T_MIN):
    return ConsistencyModel(ExactF(t_min), t_min=t_min)


def gaussian(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MU + S * torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g,
                                                                                       dtype=torch.float64)


# --- the parametrisation --------------------------------------------------------------------------------

@pytest.mark.parametrize("t_min,sigma_data", [(T_MIN, 0.5), (0.0, 1.0), (0.1, 0.7)])
def test_the_boundary_condition_holds_exactly_for_any_network(t_min, sigma_data):
    torch.manual_seed(0)
    model = ConsistencyModel(MLPDenoiser(hidden=32, layers=2), t_min=t_min, sigma_data=sigma_data, time_scale=1000)
    x = 3 * torch.randn(64, 2)
    assert torch.equal(model(x, t_min), x)
    t = torch.where(torch.arange(64) % 2 == 0, torch.tensor(t_min), torch.tensor(0.6))     # mixed times in a batch
    out = model(x, t)
    assert torch.equal(out[::2], x[::2]) and not torch.allclose(out[1::2], x[1::2])


def test_the_coefficients_by_hand_and_at_the_ends():
    t_min, sd = 0.1, 0.5
    t = torch.tensor([0.1, 0.28, 0.55, 1.0], dtype=torch.float64)
    tau = (t - 0.1) / 0.9                                                  # 0, 0.2, 0.5, 1
    want_skip = (1 - tau) * 0.25 / ((1 - tau) ** 2 * 0.25 + tau ** 2)
    want_out = 0.5 * tau / ((1 - tau) ** 2 * 0.25 + tau ** 2).sqrt()
    c_skip, c_out = boundary_coefficients(t, t_min, sd)
    assert torch.allclose(c_skip, want_skip, atol=1e-12) and torch.allclose(c_out, want_out, atol=1e-12)
    assert c_skip[0] == 1 and c_out[0] == 0 and c_skip[-1] == 0 and c_out[-1] == pytest.approx(sd)
    assert c_skip[2].item() == pytest.approx(0.125 / 0.3125) and c_out[2].item() == pytest.approx(0.25 / 0.3125 ** 0.5)
    # Song et al.'s EDM formula with sigma read as t (c_skip = sd^2 / ((t - t_min)^2 + sd^2)) is another function
    edm = 0.25 / ((t[2] - t_min) ** 2 + 0.25)
    assert abs(edm - c_skip[2]) > 0.1


@pytest.mark.parametrize("t", [0.2, 0.5, 0.9])
def test_c_skip_is_the_least_squares_coefficient_and_c_out_the_std_of_what_is_left(t):
    """x_0 ~ N(0, sd^2), x on the flow's path at the clock tau: regress x_0 on x over 400,000 draws (the slope's
    standard error is below 0.0012, 0.005 allowed; the residual std's below 0.2%, 1% allowed)."""
    t_min, sd = 0.05, 0.7
    g = torch.Generator().manual_seed(int(100 * t))
    x_0, eps = sd * torch.randn(400_000, generator=g, dtype=torch.float64), torch.randn(400_000, generator=g,
                                                                                       dtype=torch.float64)
    tau = (t - t_min) / (1 - t_min)
    x = (1 - tau) * x_0 + tau * eps
    slope = (x * x_0).mean() / (x * x).mean()
    c_skip, c_out = boundary_coefficients(t, t_min, sd)
    assert c_skip.item() == pytest.approx(slope.item(), abs=0.005)      # standard error 0.0012 at most
    assert c_out.item() == pytest.approx((x_0 - slope * x).std().item(), rel=0.01)


def test_the_network_sees_t_times_time_scale_and_w_only_with_a_guidance_input():
    class Recorder(torch.nn.Module):
        def forward(self, x, t, cond=None, w=None):
            self.seen = (t, cond, w)
            return torch.zeros_like(x)

    net = Recorder()
    x = torch.randn(3, 2)
    ConsistencyModel(net, time_scale=1000)(x, torch.tensor([0.5, 0.25, 1.0]), cond="c")
    assert torch.allclose(net.seen[0], torch.tensor([500.0, 250.0, 1000.0])) and net.seen[1:] == ("c", None)
    ConsistencyModel(net, guidance_input=True)(x, 0.5, w=torch.tensor([1.0, 2.0, 7.5]))
    assert torch.equal(net.seen[2], torch.tensor([1.0, 2.0, 7.5])) and torch.equal(net.seen[0], torch.full((3,), 0.5))
    ConsistencyModel(net, guidance_input=True)(x, 0.5)
    assert torch.equal(net.seen[2], torch.ones(3))                     # no w: 1, no guidance


# --- the distillation loss --------------------------------------------------------------------------------

def test_the_exact_consistency_function_is_exact_and_has_zero_loss_with_an_exact_teacher_step():
    model = exact_model()
    x_0, eps = gaussian(4000, seed=1)
    t = torch.rand(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * (1 - T_MIN) + T_MIN
    x_t = (1 - t[:, None]) * x_0 + t[:, None] * eps
    assert torch.allclose(model(x_t, t), exact_step(x_t, t, torch.full_like(t, T_MIN)), atol=1e-10)

    def teacher(x, t, s, cond=None, w=1.0):
        return exact_step(x, t, s)

    loss = consistency_distillation_loss(model, model, teacher, x_0, levels=consistency_levels(20), eps=eps)
    assert loss.item() < 1e-20
    huber = consistency_distillation_loss(model, model, teacher, x_0, levels=consistency_levels(20), eps=eps,
                                          distance="pseudo_huber")
    assert huber.item() < 1e-12


def test_the_loss_by_hand_and_the_mistakes_it_must_not_equal():
    """One solver step from the SAME point x_{t_{n+1}}: fresh noise for x_{t_n}, the target at t_{n+1}, or a
    step up instead of down give a loss far from 0 with the exact function."""
    model = exact_model()
    x_0, eps = gaussian(4000, seed=3)
    levels = consistency_levels(10)
    n = torch.randint(0, 10, (4000,), generator=torch.Generator().manual_seed(4))
    t1, t0 = levels[n + 1], levels[n]
    x1 = (1 - t1[:, None]) * x_0 + t1[:, None] * eps
    teacher = flow_teacher(ExactGaussianFlow(MU, S))
    got = consistency_distillation_loss(model, model, teacher, x_0, levels=levels, n=n, eps=eps).item()
    want = (model(x1, t1) - model(x1 + (t0 - t1)[:, None] * ExactGaussianFlow(MU, S)(x1, t1), t0)).square().mean()
    assert got == pytest.approx(want.item(), rel=1e-5)
    assert got < 1e-4                                                   # Euler's local error only

    fresh = torch.randn(4000, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mistakes = {
        "fresh noise for x_{t_n}": model((1 - t0[:, None]) * x_0 + t0[:, None] * fresh, t0),
        "the target at t_{n+1}": model(teacher(x1, t1, t0), t1),
        "the teacher stepping up": model(teacher(x1, t1, torch.clamp(2 * t1 - t0, max=1.0)), t0),
        "target on the student's point": model(x1, t0),
    }
    for name, wrong in mistakes.items():
        assert (model(x1, t1) - wrong).square().mean().item() > 30 * got, name     # measured 60x and more


def test_the_target_gets_no_gradient_and_sees_the_teachers_output_at_t_n():
    seen = {}

    def teacher(x, t, s, cond=None, w=1.0):
        seen["teacher"] = (x.clone(), t.clone(), s.clone(), cond, w)
        return x + 0.01

    class Target(torch.nn.Module):
        t_min = T_MIN

        def forward(self, x, t, cond=None):
            seen["target"] = (x.clone(), t.clone(), torch.is_grad_enabled())
            return x

    class Lin(torch.nn.Module):                                        # a network that ignores cond
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x, t, cond=None):
            return self.lin(torch.cat([x, t[:, None]], 1))

    student = ConsistencyModel(Lin())
    x_0 = torch.randn(8, 2)
    levels = consistency_levels(4)
    g = torch.Generator().manual_seed(7)
    loss = consistency_distillation_loss(student, Target(), teacher, x_0, levels=levels, cond="c", w=3.0,
                                         generator=torch.Generator().manual_seed(7))
    n = torch.randint(0, 4, (8,), generator=g)                         # n first, then eps
    eps = torch.randn(8, 2, generator=g)
    t1 = levels[n + 1].float()
    x, t, s, cond, w = seen["teacher"]
    assert torch.allclose(x, (1 - t1[:, None]) * x_0 + t1[:, None] * eps, atol=1e-6)
    assert torch.equal(t, t1) and torch.equal(s, levels[n].float()) and cond == "c" and w == 3.0
    assert torch.equal(seen["target"][0], x + 0.01) and torch.equal(seen["target"][1], s)
    assert seen["target"][2] is False
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2)])
def test_the_teacher_step_has_its_order(solver, order):
    """A step of length h errs by O(h^(order + 1)), so the loss with the exact function falls by 2^(2 order + 2)
    when N doubles: 16 for Euler, 64 for Heun (20,000 points; measured 15.8 and 62; 25% allowed)."""
    model = exact_model()
    x_0, eps = gaussian(20_000, seed=6)
    teacher = flow_teacher(ExactGaussianFlow(MU, S), solver=solver)
    losses = [consistency_distillation_loss(model, model, teacher, x_0, levels=consistency_levels(N), eps=eps,
                                            generator=torch.Generator().manual_seed(8)).item() for N in (40, 80)]
    assert losses[0] / losses[1] == pytest.approx(2 ** (2 * order + 2), rel=0.25)


def test_the_teachers_guidance_is_applied_per_example():
    class TwoFields(torch.nn.Module):                                  # velocity a with cond None, b with cond
        def forward(self, x, t, cond=None):
            return torch.full_like(x, 1.0) if cond is None else x * t.reshape(-1, 1) / 1000

    x = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64)
    s, w = t - 0.1, torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    got = flow_teacher(TwoFields(), time_scale=1000)(x, t, s, cond="c", w=w)
    v_u, v_c = torch.ones_like(x), x * t[:, None]
    assert torch.allclose(got, x - 0.1 * (v_u + w[:, None] * (v_c - v_u)), atol=1e-12)
    assert torch.allclose(flow_teacher(TwoFields(), time_scale=1000)(x, t, s), x - 0.1)   # no cond: unguided


# --- sampling ------------------------------------------------------------------------------------------

def test_one_step_is_one_call_and_two_steps_renoise_as_stated():
    torch.manual_seed(1)
    model = ConsistencyModel(MLPDenoiser(hidden=32, layers=2), time_scale=1000)
    x_T = torch.randn(50, 2)
    assert torch.equal(multistep_sample(model, x_T, [1.0]), model(x_T, 1.0))
    got = multistep_sample(model, x_T, [1.0, 0.4], generator=torch.Generator().manual_seed(3))
    a = 0.6 / (1 - T_MIN)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(3))
    want = model(a * model(x_T, 1.0) + math.sqrt(0.16 - a ** 2 * T_MIN ** 2) * z, 0.4)
    assert torch.allclose(got, want, atol=1e-6)
    assert multistep_times(4) == [1.0, 0.75, 0.5, 0.25] and multistep_times(1) == [1.0]


def test_renoising_a_point_at_t_min_gives_the_forward_process_at_t():
    """x = (1 - t_min) x_0 + t_min eps re-noised to t must be N((1 - t) x_0, t^2): mean and std over 200,000 draws
    within 5 standard errors."""
    seen = []

    class Identity(torch.nn.Module):
        t_min = 0.1

        def forward(self, x, t, cond=None):
            seen.append(x)
            return x

    x_0 = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    x = 0.9 * x_0 + 0.1 * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    multistep_sample(Identity(), x, [1.0, 0.6], generator=torch.Generator().manual_seed(1))
    x_t = seen[1]
    se = 0.6 / math.sqrt(200_000)
    assert (x_t.mean(0) - 0.4 * x_0[0]).abs().max() < 5 * se
    assert x_t.std(0).tolist() == pytest.approx([0.6, 0.6], rel=0.01)


def test_a_short_distillation_improves_one_step_samples_on_two_moons():
    """Measured (64 x 2 MLP, 400 flow steps, 400 distillation steps with N = 20, 1 thread, ~5 s; three seeds): the
    untrained student's 1-step samples at 129-165x the floor (n = 1000), after distillation 5.6-6.2x; the
    teacher's own 1-step Euler 156-167x, its 50 steps 2.3-2.8x."""
    common = dict(batch_size=256, device="cpu", progress=False)
    torch.manual_seed(0)
    data = make_toy("two_moons", 8000, seed=0)
    flow = train_flow(MLPDenoiser(hidden=64, layers=2), data, steps=400, time_scale=1000, ema_decay=None,
                      precision="fp32", **common).model.requires_grad_(False)
    torch.manual_seed(1)
    student = ConsistencyModel(MLPDenoiser(hidden=64, layers=2), sigma_data=1.0, time_scale=1000)
    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))
    fresh = make_toy("two_moons", 1000, seed=1)
    floor = reference_distance("two_moons", 1000)
    before = sample_distance(multistep_sample(student, x_T, [1.0]), fresh)
    result = train_consistency(student, flow_teacher(flow, time_scale=1000), data, N=20, steps=400, ema_decay=None,
                               **common)
    after = sample_distance(multistep_sample(result.model, x_T, [1.0]), fresh)
    assert after < before / 10 and after < 10 * floor, (before / floor, after / floor)


def test_guidance_range_gives_each_example_its_w():
    class Labelled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.ws = []

        def forward(self, x, t, cond=None, w=None):
            self.ws.append(w)
            return self.lin(x)

    net = Labelled()
    student = ConsistencyModel(net, guidance_input=True)
    teacher = flow_teacher(lambda x, t, cond=None: x)
    train_consistency(student, teacher, torch.randn(64, 2), labels=torch.randint(0, 3, (64,)),
                      guidance_range=(2.0, 6.0), steps=3, batch_size=16, device="cpu", progress=False, ema_decay=None)
    ws = torch.cat(net.ws)
    assert ws.min() >= 2.0 and ws.max() <= 6.0 and ws.std() > 0.5


# --- devices and arguments --------------------------------------------------------------------------------

def test_the_loss_and_the_sampler_feed_the_model_on_its_device():
    x_0 = torch.randn(4, 2)
    fed_on_the_models_device(lambda m: consistency_distillation_loss(
        ConsistencyModel(m), ConsistencyModel(m), flow_teacher(m), x_0, levels=consistency_levels(5)), MetaModel())
    fed_on_the_models_device(lambda m: multistep_sample(ConsistencyModel(m), torch.randn(3, 2), [1.0, 0.5]),
                             MetaModel())


def test_bad_arguments_are_named():
    model = exact_model()
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"t: expected flow times in \[t_min, 1\] = \[0.002, 1\], got values from 0"):
        model(x, 0.0)
    with pytest.raises(ValueError, match="t: expected flow times"):
        boundary_coefficients(1.5, 0.1)
    with pytest.raises(ValueError, match="t: expected shape"):
        model(x, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="t_min"):
        ConsistencyModel(MLPDenoiser(), t_min=1.0)
    with pytest.raises(ValueError, match="net output: expected shape"):
        ConsistencyModel(lambda x, t, cond=None: x[:, :1])(x, 0.5)
    with pytest.raises(ValueError, match="w: this consistency model takes no guidance scale"):
        model(x, 0.5, w=2.0)
    teacher = flow_teacher(ExactGaussianFlow(MU, S))
    with pytest.raises(ValueError, match="distance: expected one of 'l2', 'pseudo_huber', got 'l1'"):
        consistency_distillation_loss(model, model, teacher, x, distance="l1")
    with pytest.raises(ValueError, match="eps: expected shape"):
        consistency_distillation_loss(model, model, teacher, x, eps=x[:2])
    with pytest.raises(ValueError, match="levels"):
        consistency_distillation_loss(model, model, teacher, x, levels=torch.tensor([0.5, 0.2, 1.0]))
    with pytest.raises(ValueError, match=r"n: expected level indices in 0..4"):
        consistency_distillation_loss(model, model, teacher, x, levels=consistency_levels(5),
                                      n=torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="solver"):
        flow_teacher(ExactGaussianFlow(MU, S), solver="rk4")
    with pytest.raises(ValueError, match="times: expected at least one time, strictly decreasing"):
        multistep_sample(model, x, [0.5, 1.0])
    with pytest.raises(ValueError, match=r"times: expected flow times in \[t_min, 1\]"):
        multistep_sample(model, x, [1.0, 0.001])
    with pytest.raises(TypeError, match="student: expected a ConsistencyModel"):
        train_consistency(MLPDenoiser(), teacher, x.float(), steps=1)
    with pytest.raises(ValueError, match="precision"):
        train_consistency(copy.deepcopy(model), teacher, x.float(), steps=1, precision="auto")
    with pytest.raises(ValueError, match="guidance_range"):
        train_consistency(copy.deepcopy(model), teacher, x.float(), steps=1, guidance_range=(1.0, 5.0))


# --- LCM's guidance input for a network without one --------------------------------------------------------

def small_unet(seed=0):
    from dlcourse.models import UNet, UNetConfig
    torch.manual_seed(seed)
    net = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), num_heads=2, groups=4, num_classes=4))
    with torch.no_grad():                                              # a trained-looking net: outputs not all zero
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_a_new_guidance_input_is_the_wrapped_network_at_every_w():
    from dlcourse.consistency import GuidanceInput
    net = small_unet()
    wrapped = GuidanceInput(net)
    x, t, labels = torch.randn(4, 3, 8, 8), torch.full((4,), 700.0), torch.arange(4)
    assert wrapped.dim == 4 * 16
    for w in (1.0, 3.0, torch.tensor([0.0, 1.0, 2.0, 7.5])):
        assert torch.equal(wrapped(x, t, labels, w), net(x, t, labels))


def test_w_changes_the_output_and_a_fixed_w_is_a_plain_network_with_a_shifted_time_embedding():
    """With w fixed the wrapper is the network whose time embedding has the constant MLP(w - 1) added: rebuilt by
    hand here as a copy of the network whose time_embed adds it; w = 2 and w = 3 differ; no hook is left behind."""
    from dlcourse.consistency import GuidanceInput
    net = small_unet()
    wrapped = GuidanceInput(net)
    torch.nn.init.normal_(wrapped.w_embed[2].weight, std=0.1)
    x, t, labels = torch.randn(4, 3, 8, 8), torch.full((4,), 300.0), torch.arange(4)
    out2, out3 = wrapped(x, t, labels, 2.0), wrapped(x, t, labels, 3.0)
    assert (out2 - out3).abs().max() > 1e-3 and (out2 - net(x, t, labels)).abs().max() > 1e-3

    class Shifted(torch.nn.Module):
        def __init__(self, time_embed, shift):
            super().__init__()
            self.time_embed, self.shift = time_embed, shift

        def forward(self, t):
            return self.time_embed(t) + self.shift

    plain = copy.deepcopy(net)
    plain.time_embed = Shifted(plain.time_embed, wrapped.w_embed(torch.tensor([[1.0]])))   # w - 1 = 1
    assert torch.allclose(out2, plain(x, t, labels), atol=1e-6)
    assert torch.equal(net(x, t, labels), small_unet()(x, t, labels))   # the wrapped net is unchanged afterwards
    rebuilt = GuidanceInput.from_config(wrapped.get_config())
    rebuilt.load_state_dict(wrapped.state_dict())
    assert torch.equal(rebuilt(x, t, labels, 2.0), out2)
    per_example = wrapped(x, t, labels, torch.tensor([2.0, 3.0, 2.0, 3.0]))
    assert torch.allclose(per_example[::2], out2[::2], atol=1e-6) and torch.allclose(per_example[1::2], out3[1::2],
                                                                                       atol=1e-6)


def test_the_velocity_parametrization_is_one_euler_step_to_t_min_with_the_boundary_exact():
    """f = x - (t - t_min) F: at t_min exactly x; elsewhere by hand; a flow teacher's own weights then give its
    one-step guess x - t v up to t_min v (the exact Gaussian flow here)."""
    torch.manual_seed(2)
    net = MLPDenoiser(hidden=32, layers=2)
    model = ConsistencyModel(net, time_scale=1000, parametrization="velocity")
    x, t = 3 * torch.randn(64, 2), torch.rand(64) * 0.9 + 0.1
    assert torch.equal(model(x, T_MIN), x)
    assert torch.allclose(model(x, t), x - (t - T_MIN)[:, None] * net(x, t * 1000), atol=1e-6)
    flow = ExactGaussianFlow(MU, S)
    student = ConsistencyModel(flow, parametrization="velocity")
    x = torch.randn(8, 2, dtype=torch.float64)
    v = flow(x, torch.full((8,), 0.7, dtype=torch.float64))
    assert torch.allclose(student(x, 0.7), x - 0.7 * v + T_MIN * v, atol=1e-12)
    with pytest.raises(ValueError, match="parametrization"):
        ConsistencyModel(net, parametrization="x0")


class _VNet(torch.nn.Module):
    """A stand-in VP network with v-prediction: any smooth function of (z, timestep) will do."""

    def forward(self, z, t, cond=None):
        return torch.tanh(z) * (1 + t[:, None, None, None].to(z) / 1000) + 0.1


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_an_euler_step_of_a_vp_network_read_as_a_flow_is_ddims_step(prediction_type):
    from dlcourse.parameterization import to_x0_eps
    from dlcourse.schedules import get_schedule

    schedule = get_schedule("cosine", 1000)
    ab = schedule.alphas_cumprod.double()
    net = _VNet().double()
    flow = FlowFromVP(net, schedule, prediction_type=prediction_type)
    step = flow_teacher(flow)
    g = torch.Generator().manual_seed(0)
    for a, b in ((999, 979), (600, 400), (20, 0)):
        z = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)
        # DDIM (eta = 0) from timestep a to b, written out
        x_0, eps = to_x0_eps(net(z, torch.full((3,), float(a), dtype=torch.float64)), z, float(ab[a]), prediction_type)
        z_b = ab[b].sqrt() * x_0 + (1 - ab[b]).sqrt() * eps
        # the same in flow time: x_t = z / (sqrt(ab) + sqrt(1 - ab)) at t = sqrt(1 - ab) / (sqrt(ab) + sqrt(1 - ab))
        c_a, c_b = ab[a].sqrt() + (1 - ab[a]).sqrt(), ab[b].sqrt() + (1 - ab[b]).sqrt()
        t_a, t_b = (1 - ab[a]).sqrt() / c_a, (1 - ab[b]).sqrt() / c_b
        x_b = step(z / c_a, torch.full((3,), float(t_a), dtype=torch.float64),
                   torch.full((3,), float(t_b), dtype=torch.float64))
        torch.testing.assert_close(x_b * c_b, z_b, atol=1e-9, rtol=0)
    # the wrapper asks the network at the timestep of each flow time, fractional in between
    times = flow.timesteps(flow.flow_times[[0, 250, 999]])
    torch.testing.assert_close(times, torch.tensor([0.0, 250.0, 999.0], dtype=torch.float64))
    mid = float(flow.timesteps(((flow.flow_times[500] + flow.flow_times[501]) / 2)[None]))
    assert 500 < mid < 501
    with pytest.raises(ValueError, match="prediction_type"):
        FlowFromVP(net, schedule, prediction_type="velocity")
