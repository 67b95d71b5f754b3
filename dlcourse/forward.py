"""The forward (noising) process and its exact posterior.

One step (Ho et al. 2020, eq. 2):
    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)
Closed form, many steps at once (eq. 4):
    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
Posterior, the step back when x_0 is known (eqs. 6-7):
    q(x_{t-1} | x_t, x_0) = N(mu_t, beta_tilde_t I)
    mu_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
           + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

Timesteps are indices ``t = 0 .. T-1`` into the schedule's tensors (see
``dlcourse.schedules``); ``x_{-1}`` below means the clean ``x_0``.
"""

from __future__ import annotations

import torch

from .schedules import NoiseSchedule
from .tensors import expand_like, noise_like
from .validation import check_tensor, check_timesteps


def _per_sample(name: str, x: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """Validate ``t`` against ``x`` and the schedule; return int64 indices of shape () or (B,)."""
    check_tensor(name, x, floating=True)
    if x.ndim == 0:
        raise ValueError(f"{name}: expected a tensor with a batch dimension, got a scalar")
    t = check_timesteps("t", t, schedule.T)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x.shape[0]):
        raise ValueError(f"t: expected an int or a tensor of shape ({x.shape[0]},) "
                         f"matching {name}'s batch size, got shape {tuple(t.shape)}")
    return t.to(schedule.betas.device)


def q_step(x_prev: torch.Tensor, t, schedule: NoiseSchedule, eps: torch.Tensor | None = None) -> torch.Tensor:
    """One forward step: ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``.

    Args:
        x_prev: (B, ...) the sample at step t-1 (clean data when t = 0).
        t: int or (B,) int64 timestep in 0..T-1.
        schedule: the noise schedule.
        eps: (B, ...) standard normal noise; drawn if None.

    Returns:
        (B, ...) x_t.
    """
    t = _per_sample("x_prev", x_prev, t, schedule)
    if eps is None:
        eps = torch.randn_like(x_prev)
    check_tensor("eps", eps, shape=x_prev.shape)
    alpha = expand_like(schedule.alphas[t], x_prev)
    beta = expand_like(schedule.betas[t], x_prev)
    return alpha.sqrt() * x_prev + beta.sqrt() * eps


def q_sample(x_0: torch.Tensor, t, schedule: NoiseSchedule, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Jump straight to step t: ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``.

    Args:
        x_0: (B, ...) clean data.
        t: int or (B,) int64 timestep in 0..T-1.
        schedule: the noise schedule.
        eps: (B, ...) standard normal noise; drawn if None.

    Returns:
        (B, ...) x_t. diffusers calls this ``add_noise(x_0, eps, t)``.
    """
    t = _per_sample("x_0", x_0, t, schedule)
    if eps is None:
        eps = torch.randn_like(x_0)
    check_tensor("eps", eps, shape=x_0.shape)
    alpha_bar = expand_like(schedule.alphas_cumprod[t], x_0)
    return alpha_bar.sqrt() * x_0 + (1 - alpha_bar).sqrt() * eps


def add_noise(x_0: torch.Tensor, eps: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """diffusers' name and argument order for :func:`q_sample`."""
    return q_sample(x_0, t, schedule, eps)


def q_posterior(x_t: torch.Tensor, x_0: torch.Tensor, t, schedule: NoiseSchedule):
    """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (Ho et al. 2020, eq. 7).

    Args:
        x_t: (B, ...) noisy sample at step t.
        x_0: (B, ...) clean data (or a model's estimate of it).
        t: int or (B,) int64 timestep in 0..T-1.

    Returns:
        ``(mean, variance)``: mean (B, ...); variance broadcastable to it
        (zero at t = 0, where the step back lands on x_0 itself).
    """
    t = _per_sample("x_t", x_t, t, schedule)
    check_tensor("x_0", x_0, shape=x_t.shape)
    # the coefficients are precomputed in float64 by the schedule
    coef1 = expand_like(schedule.posterior_mean_coef1[t], x_t)
    coef2 = expand_like(schedule.posterior_mean_coef2[t], x_t)
    mean = coef1 * x_0 + coef2 * x_t
    variance = expand_like(schedule.posterior_variance[t], x_t)
    return mean, variance


def q_posterior_sample(x_t: torch.Tensor, x_0: torch.Tensor, t, schedule: NoiseSchedule,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw ``x_{t-1} ~ q(x_{t-1} | x_t, x_0)``; shapes as in :func:`q_posterior`."""
    mean, variance = q_posterior(x_t, x_0, t, schedule)
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + variance.sqrt() * noise


def corrupt_and_restore(x_0: torch.Tensor, schedule: NoiseSchedule, generator: torch.Generator | None = None):
    """Run the forward chain to t = T-1 and back with the exact posterior.

    The backward half cheats: it knows ``x_0``. It shows what a perfect denoiser
    would do; a network will have to guess ``x_0`` from ``x_t`` alone.

    Args:
        x_0: (B, ...) clean data, on any device.
        generator: optional torch.Generator for reproducible noise (on the CPU or x_0's
            device; the noise is drawn on its device and moved to x_0's).

    Returns:
        ``(forward, backward)``, each a (T, B, ...) tensor on x_0's device: ``forward[t]`` is x_t
        from the one-step chain, ``backward[t]`` is x_t on the way back from
        ``forward[T-1]`` (``backward[T-1] = forward[T-1]``). The clean x_0 comes
        after backward[0] in the chain.
    """
    check_tensor("x_0", x_0, floating=True)
    T = schedule.T
    forward = x_0.new_empty((T,) + tuple(x_0.shape))                     # (T, B, ...)
    x = x_0
    for t in range(T):
        x = q_step(x, t, schedule, noise_like(x, generator))
        forward[t] = x
    backward = torch.empty_like(forward)
    backward[T - 1] = x
    for t in range(T - 1, 0, -1):
        x = q_posterior_sample(x, x_0, t, schedule, noise_like(x, generator))
        backward[t - 1] = x
    return forward, backward
