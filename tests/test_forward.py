"""The forward process against its closed forms, statistically and exactly."""

import pytest
import torch

from dlcourse.forward import add_noise, corrupt_and_restore, q_posterior, q_posterior_sample, q_sample, q_step
from dlcourse.schedules import cosine_schedule, linear_schedule


def test_closed_form_agrees_with_iterated_steps_statistically():
    """N samples of x_0 = c: iterating q_step t+1 times and jumping with q_sample give the
    same Gaussian. Tolerance: 5 standard errors of the mean and of the variance."""
    g = torch.Generator().manual_seed(0)
    sched = linear_schedule(1000)
    N = 40_000
    x_0 = torch.full((N, 1), 1.5)
    x = x_0
    checkpoints = {10, 100, 400, 999}
    for t in range(1000):
        x = q_step(x, t, sched, torch.randn(x.shape, generator=g))
        if t in checkpoints:
            jump = q_sample(x_0, t, sched, torch.randn(x.shape, generator=g))
            ab = sched.alphas_cumprod[t].item()
            mean, var = 1.5 * ab ** 0.5, 1 - ab
            se_mean, se_var = (var / N) ** 0.5, var * (2 / (N - 1)) ** 0.5
            for sample in (x, jump):
                assert abs(sample.mean().item() - mean) < 5 * se_mean
                assert abs(sample.var().item() - var) < 5 * se_var + 1e-6


def test_q_sample_exact_values_and_batched_t():
    sched = cosine_schedule(100)
    x_0 = torch.randn(3, 2, 4, 4)
    eps = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 50, 99])
    out = q_sample(x_0, t, sched, eps)
    for i in range(3):
        ab = sched.alphas_cumprod[t[i]]
        assert torch.allclose(out[i], ab.sqrt() * x_0[i] + (1 - ab).sqrt() * eps[i])
    assert torch.equal(add_noise(x_0, eps, t, sched), out)
    assert torch.equal(q_sample(x_0, 7, sched, eps), q_sample(x_0, torch.full((3,), 7), sched, eps))


def test_q_step_single_step_formula():
    sched = linear_schedule(10)
    x = torch.randn(5, 2)
    eps = torch.randn(5, 2)
    out = q_step(x, 3, sched, eps)
    assert torch.allclose(out, (1 - sched.betas[3]).sqrt() * x + sched.betas[3].sqrt() * eps)
    # t = 0 from clean data is the closed form at t = 0
    assert torch.allclose(q_step(x, 0, sched, eps), q_sample(x, 0, sched, eps))


def test_posterior_matches_formula_and_bayes():
    sched = linear_schedule(1000)
    x_0, x_t = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 1, 500, 999])
    mean, var = q_posterior(x_t, x_0, t, sched)
    betas = sched.betas.double()
    alpha_bar = torch.cumprod(1 - betas, 0)
    for i, ti in enumerate(t.tolist()):
        b, a, ab = betas[ti], 1 - betas[ti], alpha_bar[ti]
        ab_prev = alpha_bar[ti - 1] if ti > 0 else torch.tensor(1.0, dtype=torch.float64)
        m = ab_prev.sqrt() * b / (1 - ab) * x_0[i].double() + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t[i].double()
        assert torch.allclose(mean[i].double(), m, atol=1e-5)
        assert var[i].item() == pytest.approx(((1 - ab_prev) / (1 - ab) * b).item(), rel=1e-5)
    assert var[0].item() == 0 and torch.allclose(mean[0], x_0[0], atol=1e-4)


def test_posterior_is_the_conditional_of_the_joint():
    """Independent check by Bayes' rule on the Gaussian joint of (x_{t-1}, x_t) given x_0."""
    sched = cosine_schedule(50)
    t = 20
    x_0 = torch.tensor([[0.7]])
    x_t = torch.tensor([[-0.3]])
    ab_prev, a, ab = sched.alphas_cumprod[t - 1].double(), sched.alphas[t].double(), sched.alphas_cumprod[t].double()
    # x_{t-1} = sqrt(ab_prev) x_0 + sqrt(1-ab_prev) e1 ; x_t = sqrt(a) x_{t-1} + sqrt(1-a) e2
    var_prev, cov, var_t = 1 - ab_prev, a.sqrt() * (1 - ab_prev), 1 - ab
    m_prev, m_t = ab_prev.sqrt() * 0.7, ab.sqrt() * 0.7
    cond_mean = m_prev + cov / var_t * (-0.3 - m_t)
    cond_var = var_prev - cov ** 2 / var_t
    mean, var = q_posterior(x_t, x_0, t, sched)
    assert mean.item() == pytest.approx(cond_mean.item(), rel=1e-4)
    assert var.item() == pytest.approx(cond_var.item(), rel=1e-3)


def test_posterior_sampling_statistics():
    g = torch.Generator().manual_seed(1)
    sched = linear_schedule(100)
    N = 50_000
    x_0, x_t = torch.full((N, 1), 0.5), torch.full((N, 1), -1.0)
    samples = q_posterior_sample(x_t, x_0, 40, sched, torch.randn(N, 1, generator=g))
    mean, var = q_posterior(x_t[:1], x_0[:1], 40, sched)
    assert abs(samples.mean().item() - mean.item()) < 5 * (var.item() / N) ** 0.5
    assert samples.var().item() == pytest.approx(var.item(), rel=0.03)


def test_corrupt_and_restore_returns_to_data():
    g = torch.Generator().manual_seed(0)
    x_0 = torch.rand(1, 3, 8, 8) * 2 - 1
    forward, backward = corrupt_and_restore(x_0, linear_schedule(200), generator=g)
    assert forward.shape == (200, 1, 3, 8, 8)
    end = forward[-1].flatten()
    corr = torch.corrcoef(torch.stack([end, x_0.flatten()]))[0, 1]
    assert abs(corr) < 0.3 and 0.7 < end.std() < 1.3
    assert (backward[0] - x_0).abs().max() < 0.1


def test_corrupt_and_restore_stays_on_the_device_of_x_0():
    # x_0 on "meta" (shapes, no data) stands for a GPU tensor: anything made on the CPU fails
    x_0 = torch.zeros(2, 3, 4, 4, device="meta")
    for g in (None, torch.Generator().manual_seed(0)):           # noise drawn on x_0's device or the CPU's
        forward, backward = corrupt_and_restore(x_0, linear_schedule(5), generator=g)
        assert forward.device == backward.device == x_0.device
        assert forward.shape == backward.shape == (5, 2, 3, 4, 4)
    # with a CPU generator the noise, and so the chain, is the same wherever x_0 is
    x_0 = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    a = corrupt_and_restore(x_0, linear_schedule(5), generator=torch.Generator().manual_seed(1))
    eps = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(1), dtype=x_0.dtype)
    assert torch.equal(a[0][0], q_step(x_0, 0, linear_schedule(5), eps))


def test_bad_input_names_the_argument():
    sched = linear_schedule(10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t: expected timesteps in 0..9, got values from 10 to 10"):
        q_sample(x, 10, sched)
    with pytest.raises(ValueError, match=r"t: expected timesteps in 0..9, got values from -1"):
        q_step(x, torch.tensor([-1, 0]), sched)
    with pytest.raises(ValueError, match=r"t: expected an int or a tensor of shape \(2,\)"):
        q_sample(x, torch.tensor([1, 2, 3]), sched)
    with pytest.raises(TypeError, match="t: expected integer timesteps"):
        q_sample(x, torch.tensor([0.5, 0.5]), sched)
    with pytest.raises(ValueError, match=r"eps: expected shape \(2, 3\), got \(3, 2\)"):
        q_sample(x, 1, sched, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"x_0: expected shape \(2, 3\)"):
        q_posterior(x, torch.zeros(2, 4), 1, sched)
    with pytest.raises(TypeError, match="x_0: expected a torch.Tensor, got list"):
        q_sample([1.0, 2.0], 1, sched)
