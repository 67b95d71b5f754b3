"""Prediction types and the denoising loss, against closed forms.

The analytic case: for x_0 ~ N(0, s^2 I), x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps is
Gaussian with variance ab s^2 + 1 - ab, and the optimal (posterior-mean) predictors
are linear in x_t:
    E[eps | x_t] = sqrt(1 - ab) x_t / (ab s^2 + 1 - ab),   MSE ab s^2 / (ab s^2 + 1 - ab)
    E[x_0 | x_t] = sqrt(ab) s^2 x_t / (ab s^2 + 1 - ab),   MSE s^2 (1 - ab) / (ab s^2 + 1 - ab)
    E[v | x_t]   = sqrt(ab) E[eps|x_t] - sqrt(1 - ab) E[x_0|x_t],  MSE (eps MSE) / ab
(the x_0 and eps errors are tied by sqrt(ab) e_x0 + sqrt(1 - ab) e_eps = 0, so the v
error is e_eps / sqrt(ab)).
"""

import math

import pytest
import torch

from dlcourse.parameterization import (
    PREDICTION_TYPES, diffusion_loss, eps_from_score, eps_from_v, eps_from_x0, prediction_target,
    score_from_eps, to_x0_eps, v_from_x0_eps, x0_from_eps, x0_from_v,
)
from dlcourse.schedules import cosine_schedule, linear_schedule

ALPHA_BARS = [0.7, torch.tensor(0.02), torch.tensor([0.999, 0.5, 0.1, 1e-3])]


def _triple(alpha_bar, shape=(4, 3, 5, 5)):
    g = torch.Generator().manual_seed(1)
    x_0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    abx = ab.reshape(-1, 1, 1, 1) if ab.ndim == 1 else ab
    x_t = abx.sqrt() * x_0 + (1 - abx).sqrt() * eps
    return x_0, eps, x_t


@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
def test_conversions_round_trip(alpha_bar):
    x_0, eps, x_t = _triple(alpha_bar)
    v = v_from_x0_eps(x_0, eps, alpha_bar)
    tol = dict(atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(x0_from_eps(x_t, eps, alpha_bar), x_0, **tol)
    torch.testing.assert_close(eps_from_x0(x_t, x_0, alpha_bar), eps, **tol)
    torch.testing.assert_close(x0_from_v(x_t, v, alpha_bar), x_0, **tol)
    torch.testing.assert_close(eps_from_v(x_t, v, alpha_bar), eps, **tol)
    torch.testing.assert_close(eps_from_score(score_from_eps(eps, alpha_bar), alpha_bar), eps, **tol)


@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_target_and_back_for_every_prediction_type(alpha_bar, prediction_type):
    """A perfect model's output (the target) is read back as exactly (x_0, eps)."""
    x_0, eps, x_t = _triple(alpha_bar)
    target = prediction_target(x_0, eps, alpha_bar, prediction_type)
    x0_hat, eps_hat = to_x0_eps(target, x_t, alpha_bar, prediction_type)
    torch.testing.assert_close(x0_hat, x_0, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(eps_hat, eps, atol=1e-9, rtol=1e-9)


def test_v_matches_its_definition_at_hand_values():
    """v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho 2022): ab = 0.36 gives 0.6 eps - 0.8 x_0."""
    v = v_from_x0_eps(torch.tensor([[2.0]]), torch.tensor([[1.0]]), 0.36)
    assert v.item() == pytest.approx(0.6 * 1.0 - 0.8 * 2.0)
    score = score_from_eps(torch.tensor([[1.0]]), 0.36)
    assert score.item() == pytest.approx(-1.0 / 0.8)


def test_argument_errors_name_the_argument():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        x0_from_eps(x, x, torch.ones(3) * 0.5)
    with pytest.raises(ValueError, match="prediction_type"):
        to_x0_eps(x, x, 0.5, "noise")
    with pytest.raises(ValueError, match="model_output"):
        to_x0_eps(torch.zeros(4, 3), x, 0.5, "epsilon")


class GaussianOptimal(torch.nn.Module):
    """The posterior-mean predictor for x_0 ~ N(0, s^2 I), in any prediction type."""

    def __init__(self, s, schedule, prediction_type):
        super().__init__()
        self.s2, self.schedule, self.prediction_type = s * s, schedule, prediction_type

    def forward(self, x_t, t, cond=None):
        ab = self.schedule.alphas_cumprod[t].double()[:, None]
        var = ab * self.s2 + 1 - ab
        eps_hat = (1 - ab).sqrt() * x_t / var
        x0_hat = ab.sqrt() * self.s2 * x_t / var
        return prediction_target(x0_hat, eps_hat, ab[:, 0], self.prediction_type)


def gaussian_min_mse(ab: torch.Tensor, s: float, prediction_type: str) -> torch.Tensor:
    """Per-dimension minimum MSE at each alpha_bar (closed forms in the module docstring)."""
    var = ab * s * s + 1 - ab
    return {"epsilon": ab * s * s / var, "sample": s * s * (1 - ab) / var, "v_prediction": s * s / var}[prediction_type]


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_loss_of_the_optimal_predictor_matches_the_closed_form(prediction_type):
    """Monte-Carlo diffusion_loss of the optimal predictor vs E_t[min MSE_t].

    Tolerance: 4 standard errors, from the closed form: the per-example loss is
    m_t chi^2_d / d, so its variance is Var_t(m_t) + 2 E_t[m_t^2] / d.
    """
    s, d, B = 0.5, 8, 40_000
    schedule = cosine_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x_0 = s * torch.randn(B, d, generator=g, dtype=torch.float64)
    model = GaussianOptimal(s, schedule, prediction_type)
    loss = diffusion_loss(model, x_0, schedule, prediction_type=prediction_type, generator=g).item()
    m = gaussian_min_mse(schedule.alphas_cumprod.double(), s, prediction_type)
    exact = m.mean().item()
    se = math.sqrt((m.var(unbiased=False) + 2 * (m**2).mean() / d).item() / B)
    assert abs(loss - exact) < 4 * se, (loss, exact, se)


def test_diffusion_loss_is_reproducible_with_a_generator():
    schedule = linear_schedule(100)
    model = GaussianOptimal(1.0, schedule, "epsilon")
    x_0 = torch.randn(64, 2, dtype=torch.float64)
    a = diffusion_loss(model, x_0, schedule, generator=torch.Generator().manual_seed(3))
    b = diffusion_loss(model, x_0, schedule, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item()


@pytest.mark.parametrize("min_snr_gamma", [None, 5.0])
def test_diffusion_loss_runs_on_the_models_device(meta_probe, min_snr_gamma):
    # the model lives on "meta" (as a GPU model does for CPU data): x_t, t and the labels must reach it
    # there, made from x_0 on the CPU and noise from a CPU generator; the loss is where the model is
    model = meta_probe(output=lambda shape: torch.zeros(shape, device="meta"))
    loss = diffusion_loss(model, torch.randn(4, 2), linear_schedule(10), cond=torch.tensor([0, 1, 0, 1]),
                          generator=torch.Generator().manual_seed(0), min_snr_gamma=min_snr_gamma)
    assert loss.device.type == "meta" and loss.shape == () and model.calls == 1


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_min_snr_weighting_matches_an_independent_computation(prediction_type):
    """Min-SNR-gamma (Hang et al. 2023): the weight min(SNR, gamma) of the x_0 error, rewritten for each target.

    Checked by computing each example's weighted error by hand from the same draws of t and eps."""
    from dlcourse.parameterization import min_snr_weight
    schedule = cosine_schedule(1000)
    x_0 = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    model = lambda x_t, t, cond: 0.3 * x_t                                      # noqa: E731
    got = diffusion_loss(model, x_0, schedule, prediction_type=prediction_type, min_snr_gamma=5.0,
                         generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)                                         # the same draws, by hand
    t = torch.randint(0, 1000, (64,), generator=g)
    eps = torch.randn(x_0.shape, generator=g)
    ab = schedule.alphas_cumprod[t].float()
    x_t = ab.sqrt()[:, None, None, None] * x_0 + (1 - ab).sqrt()[:, None, None, None] * eps
    x0_err = []
    for i in range(64):                                                          # error in x_0 units, per example
        a = ab[i]
        out = 0.3 * x_t[i]
        if prediction_type == "epsilon":
            x0_hat = (x_t[i] - (1 - a).sqrt() * out) / a.sqrt()
        elif prediction_type == "sample":
            x0_hat = out
        else:
            x0_hat = a.sqrt() * x_t[i] - (1 - a).sqrt() * out
        x0_err.append((x0_hat - x_0[i]).square().mean())
    snr = ab / (1 - ab)
    expected = (snr.clamp(max=5.0) * torch.stack(x0_err)).mean()               # eq. 9: min(SNR, gamma) ||x_0 error||^2
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    plain = diffusion_loss(model, x_0, schedule, prediction_type=prediction_type,
                           generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(got, plain), "the weighting must change the loss"
    w = min_snr_weight(ab, 5.0, prediction_type)
    if prediction_type == "epsilon":                                              # 1 at every t with SNR <= gamma
        assert torch.all(w[snr <= 5] == 1) and torch.all(w[snr > 5] < 1)
    with pytest.raises(ValueError, match="gamma"):
        min_snr_weight(ab, 0.0)
