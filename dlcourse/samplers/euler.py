"""Euler's method on the probability-flow ODE (Karras et al. 2022, "Elucidating the Design Space").

Divide ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps`` by ``sqrt(ab)``: the scaled sample
``x~ = x_t / sqrt(ab) = x_0 + sigma eps`` is data plus noise of standard deviation
``sigma = sqrt((1 - ab) / ab)``, Karras et al.'s variance-exploding form. Its
probability-flow ODE (their eq. 1 with sigma(t) = t, and the score of eq. 3) is::

    dx~ / dsigma = (x~ - D(x~, sigma)) / sigma = eps_guess,

with ``D`` the denoiser (the model's x_0 guess). Euler's method takes one step of
this slope from each visited sigma to the next, down to sigma = 0: the Euler step
(line 5) of Algorithm 1, without its correction. On the same timesteps it is
exactly DDIM with eta = 0 (Song et al. 2021, eq. 14). First order: the error
shrinks like 1 / steps. Written for ``x_t`` itself (multiply back by ``sqrt(ab_s)``)::

    x_s = sqrt(ab_s) (x_t / sqrt(ab_t) + (sigma_s - sigma_t) eps_guess)
"""

from __future__ import annotations

import math

import torch

from ..parameterization import sigma_from_alpha_bar
from ..schedules import NoiseSchedule
from .common import run_loop, vp_setup


def euler_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float) -> torch.Tensor:
    """One Euler step of ``dx~/dsigma = eps`` from t to s, written for x_t (notebook 04's exercise).

    Args:
        x_t: (B, ...) the current sample.
        eps: (B, ...) the noise guess at (x_t, t), the slope of the ODE.
        alpha_bar_t: alpha_bar at t.
        alpha_bar_s: alpha_bar at s (larger); 1.0 for the last step.

    Returns:
        (B, ...) ``x_s = sqrt(ab_s) (x_t / sqrt(ab_t) + (sigma_s - sigma_t) eps)``, ``sigma = sqrt((1 - ab) / ab)``.
    """
    x_tilde = x_t / math.sqrt(alpha_bar_t)                                     # x~ = x_0 + sigma eps
    x_tilde = x_tilde + (sigma_from_alpha_bar(alpha_bar_s) - sigma_from_alpha_bar(alpha_bar_t)) * eps
    return math.sqrt(alpha_bar_s) * x_tilde


@torch.no_grad()
def euler_loop(denoiser, x_T: torch.Tensor, times, *, callback=None, progress: bool = True) -> torch.Tensor:
    """Euler's method on the probability-flow ODE through ``times`` to clean data, with any ``Denoiser``.

    Other arguments as in ``ddim_loop``; deterministic.
    """
    def update(x, step):
        x_0, eps = denoiser(x, step.t)
        return euler_step(x, eps, step.alpha_bar_t, step.alpha_bar_s), x_0

    return run_loop(denoiser, x_T, times, update, desc="Euler", callback=callback, progress=progress)


def sample_euler(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                 guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                 clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                 progress: bool = True) -> torch.Tensor:
    """Generate samples with Euler's method on the probability-flow ODE (deterministic).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise (moved to the model's device; the samples come back on x_T's).
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: unused (the sampler adds no noise); accepted for the shared signature.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0)
    return euler_loop(denoiser, x_T, times, callback=callback, progress=progress)
