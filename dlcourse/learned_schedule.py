"""A learned noise schedule, in the style of Variational Diffusion Models.

Kingma et al. (2021) write the schedule as ``gamma(t) = -log SNR(t)`` for
continuous ``t`` in [0, 1] and learn it with a *monotone* network, so that noise
only ever grows with t:

    gamma(t) = gamma_0 + (gamma_1 - gamma_0) * (g(t) - g(0)) / (g(1) - g(0))

where ``g`` is increasing because every weight is kept positive. Then
``alpha_bar(t) = sigmoid(-gamma(t))``. Their continuous-time loss,

    L = 1/2 E_{t, eps} [ gamma'(t) || eps - eps_hat(x_t, t) ||^2 ],

has an expectation that depends on the schedule only through its endpoints; the
shape in between changes only the *variance* of the Monte-Carlo estimate. So we
fix the endpoints, train the denoiser on ``L`` and the schedule's shape on
``E[L^2]``, which is the variance plus a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .device import model_device
from .schedules import NoiseSchedule
from .validation import check_positive, check_tensor


class PositiveLinear(nn.Linear):
    """A linear layer whose weights are kept positive by a softplus."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.softplus(self.weight), self.bias)


class LearnedSchedule(nn.Module):
    """Monotone network for ``gamma(t) = -log SNR(t)``, t in [0, 1].

    Args:
        log_snr_min: log-SNR at t = 1 (noisiest), fixed.
        log_snr_max: log-SNR at t = 0 (cleanest), fixed.
        hidden: width of the monotone hidden layer.
    """

    def __init__(self, log_snr_min: float = -10.0, log_snr_max: float = 10.0, hidden: int = 64):
        super().__init__()
        if not log_snr_min < log_snr_max:
            raise ValueError(f"log_snr_min: expected less than log_snr_max={log_snr_max}, got {log_snr_min}")
        self.register_buffer("gamma_0", torch.tensor(-float(log_snr_max)))
        self.register_buffer("gamma_1", torch.tensor(-float(log_snr_min)))
        self.l1 = PositiveLinear(1, 1)
        self.l2 = PositiveLinear(1, hidden)
        self.l3 = PositiveLinear(hidden, 1)
        with torch.no_grad():  # start close to a straight line in log-SNR
            self.l3.weight.fill_(-5.0)

    def _g(self, t: torch.Tensor) -> torch.Tensor:
        h = self.l1(t[..., None])
        return (h + self.l3(torch.sigmoid(self.l2(h))))[..., 0]

    def gamma(self, t: torch.Tensor) -> torch.Tensor:
        """``-log SNR(t)`` for t (any shape) in [0, 1]; increasing in t."""
        ends = self._g(torch.tensor([0.0, 1.0], device=t.device, dtype=t.dtype))
        g = (self._g(t) - ends[0]) / (ends[1] - ends[0])
        return self.gamma_0 + (self.gamma_1 - self.gamma_0) * g

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``log SNR(t) = -gamma(t)``; decreasing in t."""
        return -self.gamma(t)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha_bar(t) = sigmoid(log SNR(t))``."""
        return torch.sigmoid(self.log_snr(t))

    @torch.no_grad()
    def to_schedule(self, T: int = 1000) -> NoiseSchedule:
        """Discretise to a :class:`NoiseSchedule` with ``alpha_bar_t = alpha_bar((t+1)/T)``."""
        check_positive("T", T, integer=True)
        t = torch.arange(1, T + 1, dtype=torch.float32, device=self.gamma_0.device) / T
        return NoiseSchedule.from_alphas_cumprod(self.alpha_bar(t).cpu().double(), name="learned")


def vdm_loss(denoiser: nn.Module, schedule: LearnedSchedule, x_0: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample continuous-time VDM loss ``1/2 gamma'(t) ||eps - eps_hat||^2``.

    Times are drawn with low discrepancy (one uniform offset, evenly spaced), which
    VDM uses to reduce variance further.

    Args:
        denoiser: called as ``denoiser(x_t, t)`` with t (B,) in [0, 1]; predicts eps.
        schedule: the learned schedule.
        x_0: (B, D) clean data; moved to the denoiser's device (``dlcourse.device.model_device``).

    Returns:
        (B,) loss per sample, on the denoiser's device. Minimise ``.mean()`` for the denoiser and
        ``.pow(2).mean()`` for the schedule (see :func:`vdm_step`).
    """
    check_tensor("x_0", x_0, ndim=2, floating=True)
    x_0 = x_0.to(model_device(denoiser))
    B = x_0.shape[0]
    u = torch.rand((), generator=generator).to(x_0.device)
    t = ((u + torch.arange(B, device=x_0.device) / B) % 1.0).requires_grad_(True)
    gamma = schedule.gamma(t)
    # gamma'(t) by autograd, kept in the graph so the schedule can learn from it
    dgamma = torch.autograd.grad(gamma.sum(), t, create_graph=True)[0]
    eps = torch.randn(x_0.shape, generator=generator).to(x_0.device)
    alpha_bar = torch.sigmoid(-gamma)[:, None]
    x_t = alpha_bar.sqrt() * x_0 + (1 - alpha_bar).sqrt() * eps
    eps_hat = denoiser(x_t, t.detach())
    return 0.5 * dgamma * (eps - eps_hat).pow(2).sum(dim=1)


def vdm_step(denoiser: nn.Module, schedule: LearnedSchedule, x_0: torch.Tensor,
             opt_model: torch.optim.Optimizer, opt_schedule: torch.optim.Optimizer) -> float:
    """One training step: the denoiser on ``L``, the schedule on ``E[L^2]``.

    ``opt_model`` holds the denoiser's parameters, ``opt_schedule`` the schedule's.
    Returns the mean loss.
    """
    loss = vdm_loss(denoiser, schedule, x_0)
    schedule_params = list(schedule.parameters())
    grads = torch.autograd.grad(loss.pow(2).mean(), schedule_params, retain_graph=True)
    opt_model.zero_grad()
    loss.mean().backward()
    for p, g in zip(schedule_params, grads):
        p.grad = g
    opt_model.step()
    opt_schedule.step()
    return loss.detach().mean().item()
