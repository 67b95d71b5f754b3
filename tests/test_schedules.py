"""Schedules against their published formulas."""

import math

import pytest
import torch

from dlcourse.schedules import (NoiseSchedule, cosine_alpha_bar, cosine_schedule, flow_time_shift, get_schedule,
                                linear_schedule, shift_schedule)


def test_linear_endpoints_and_spacing():
    s = linear_schedule(1000)
    assert s.T == 1000
    assert s.betas[0].item() == pytest.approx(1e-4, rel=1e-5)
    assert s.betas[-1].item() == pytest.approx(0.02, rel=1e-5)
    steps = s.betas.double().diff()
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-3)


def test_linear_scales_with_T():
    s = linear_schedule(100)  # 10x fewer steps, 10x larger betas: still ends in noise
    assert s.betas[0].item() == pytest.approx(1e-3, rel=1e-5)
    assert s.betas[-1].item() == pytest.approx(0.2, rel=1e-5)
    assert s.alphas_cumprod[-1] < 1e-3


@pytest.mark.parametrize("make", [linear_schedule, cosine_schedule])
def test_alpha_bar_monotone_in_unit_interval(make):
    s = make(1000)
    ab = s.alphas_cumprod
    assert bool((ab > 0).all()) and bool((ab < 1).all())
    assert bool((ab.diff() < 0).all()), "alpha_bar must decrease with t"
    assert bool((s.log_snr.diff() < 0).all())
    assert ab[0] > 0.999 and ab[-1] < 1e-4
    assert s.alphas_cumprod_prev[0] == 1.0
    assert torch.equal(s.alphas_cumprod_prev[1:], ab[:-1])


def test_alpha_bar_is_cumulative_product():
    s = linear_schedule(50)
    prod = 1.0
    for t in range(50):
        prod *= 1 - s.betas[t].double().item()
        assert s.alphas_cumprod[t].item() == pytest.approx(prod, rel=1e-5)


def test_cosine_formula():
    T, s_ = 1000, 0.008
    sched = cosine_schedule(T, s_)
    f = lambda u: math.cos((u + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    for t in [0, 1, 10, 250, 500, 750, 990]:
        assert sched.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-4, abs=1e-7)
    # betas are clipped at 0.999: only the very last step is affected
    assert sched.betas.max().item() == pytest.approx(0.999, rel=1e-6)
    assert int((sched.betas > 0.99).sum()) <= 2
    assert cosine_alpha_bar(torch.tensor(0.0)).item() == pytest.approx(1.0)


def test_cosine_keeps_more_signal_midway():
    lin, cos = linear_schedule(1000), cosine_schedule(1000)
    assert cos.alphas_cumprod[500] > 3 * lin.alphas_cumprod[500]


def test_shift_moves_log_snr_by_two_log_k():
    base = cosine_schedule(1000)
    shifted = shift_schedule(base, 2.0)
    middle = slice(10, 900)  # away from the clipped last step
    diff = (base.log_snr - shifted.log_snr)[middle]
    assert torch.allclose(diff, torch.full_like(diff, 2 * math.log(2.0)), atol=1e-3)
    same = shift_schedule(base, 1.0)
    assert torch.allclose(same.alphas_cumprod, base.alphas_cumprod, rtol=1e-5, atol=1e-8)


def test_flow_time_shift_matches_log_snr_shift():
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    k = 3.0
    t2 = flow_time_shift(t, k)
    log_snr = lambda u: 2 * torch.log((1 - u) / u)  # noqa: E731
    assert torch.allclose(log_snr(t) - log_snr(t2), torch.full_like(t, 2 * math.log(k)))
    assert flow_time_shift(torch.tensor(0.0), k) == 0 and flow_time_shift(torch.tensor(1.0), k) == 1


def test_from_alphas_cumprod_round_trip():
    s = linear_schedule(200)
    again = NoiseSchedule.from_alphas_cumprod(s.alphas_cumprod.double())
    assert torch.allclose(again.betas, s.betas, rtol=1e-4)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="name: expected one of 'linear', 'cosine', got 'quadratic'"):
        get_schedule("quadratic")
    with pytest.raises(ValueError, match="betas: expected values in"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="betas: expected a tensor with 1 dimensions"):
        NoiseSchedule(torch.ones(2, 2) * 0.1)
    with pytest.raises(TypeError, match="T: expected a positive int"):
        linear_schedule(10.5)
    with pytest.raises(ValueError, match="shift: expected a positive value"):
        shift_schedule(linear_schedule(10), -1.0)


def test_get_schedule():
    assert torch.equal(get_schedule("cosine", 100).betas, cosine_schedule(100).betas)
    assert torch.equal(get_schedule("linear", 100).betas, linear_schedule(100).betas)


TENSORS = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "log_snr", "posterior_variance",
           "posterior_mean_coef1", "posterior_mean_coef2")


def test_to_moves_every_tensor_and_keeps_values_and_name():
    s = shift_schedule(cosine_schedule(1000), 2.0)
    # "meta" stands for another device (a GPU): every tensor must go there, and the name come along
    meta = s.to("meta")
    assert isinstance(meta, NoiseSchedule) and meta.name == s.name and meta.T == s.T
    for name in TENSORS:
        assert getattr(meta, name).device.type == "meta", name
        assert getattr(meta, name).shape == getattr(s, name).shape, name
    # moved, not recomputed: exactly the same numbers (recomputing from the float32 betas would differ)
    back = s.to(torch.device("cpu"))
    for name in TENSORS:
        assert torch.equal(getattr(back, name), getattr(s, name)), name
    assert back.name == s.name
