"""Euler-ancestral sampling: Euler's method on the probability-flow ODE with fresh noise at every step.

The common few-step stochastic sampler of image-generation tools ("Euler a"; Karras et al.
2022 describe the family, k-diffusion's ``sample_euler_ancestral`` and diffusers'
``EulerAncestralDiscreteScheduler`` implement it). In Karras et al.'s variables
``x~ = x_t / sqrt(ab)``, ``sigma = sqrt((1 - ab) / ab)`` (see ``euler.py``), one step from
``sigma_t`` to ``sigma_s`` splits the target noise level into a part reached
deterministically and a part added as fresh noise (the ancestral split)::

    sigma_up   = min(sigma_s, eta sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2))
    sigma_down = sqrt(sigma_s^2 - sigma_up^2)
    x~_s = x~_t + (sigma_down - sigma_t) eps_guess + sigma_up z,        z ~ N(0, I)

an Euler step down to ``sigma_down`` (below ``sigma_s``), then noise back up to ``sigma_s``:
``sigma_down^2 + sigma_up^2 = sigma_s^2``. With ``eta = 0``, ``sigma_up = 0`` and the step is
exactly Euler's. The last step, to ``sigma_s = 0``, adds no noise and lands on the guess ``x_0``.
Written for ``x_t`` itself (multiply back by ``sqrt(ab_s)``)::

    x_s = sqrt(ab_s) (x_t / sqrt(ab_t) + (sigma_down - sigma_t) eps_guess + sigma_up z)

On the same timesteps it is DDIM with the same ``eta`` (while ``sigma_up < sigma_s``), written in
sigma: ``x~_t - sigma_t eps_guess`` is the guess ``x_0``, so ``x~_s = x_0 + sigma_down eps_guess +
sigma_up z``, and ``sqrt(ab_s) sigma_up`` is DDIM's ``eta sqrt(beta_tilde)`` (eq. 16), because
``sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2 = (1 - ab_s) (1 - ab_t / ab_s) / (ab_s (1 - ab_t))``.
With ``eta = 1`` it is therefore DDPM's ancestral step: the posterior ``q(x_s | x_t, x_0 = guess)``
(the tests check both with the same noise). What "Euler a" adds in image-generation tools is
the sigma form, which runs on any noise levels (Karras et al.'s, a variance-exploding model's).
"""

from __future__ import annotations

import math

import torch

from ..parameterization import sigma_from_alpha_bar
from ..schedules import NoiseSchedule
from ..validation import check_number
from .common import noise_like, run_loop, vp_setup


def ancestral_sigmas(sigma_t: float, sigma_s: float, eta: float = 1.0) -> tuple[float, float]:
    """The split of a step from ``sigma_t`` to ``sigma_s < sigma_t``: ``(sigma_down, sigma_up)``.

    ``sigma_up = min(sigma_s, eta sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2))`` and
    ``sigma_down = sqrt(sigma_s^2 - sigma_up^2)``; ``(sigma_s, 0)`` when ``eta = 0`` or ``sigma_s = 0``.
    """
    if sigma_s == 0 or eta == 0:
        return sigma_s, 0.0
    sigma_up = min(sigma_s, eta * math.sqrt(sigma_s ** 2 * (sigma_t ** 2 - sigma_s ** 2) / sigma_t ** 2))
    return math.sqrt(max(sigma_s ** 2 - sigma_up ** 2, 0.0)), sigma_up


def euler_ancestral_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float,
                         z: torch.Tensor | None = None, eta: float = 1.0) -> torch.Tensor:
    """One Euler-ancestral step from t to s, written for x_t (notebook 04's exercise).

    Args:
        x_t: (B, ...) the current sample.
        eps: (B, ...) the noise guess at (x_t, t), the slope of the ODE.
        alpha_bar_t: alpha_bar at t.
        alpha_bar_s: alpha_bar at s (larger); 1.0 for the last step.
        z: (B, ...) standard normal noise; may be None when no noise is added (``eta = 0`` or the last step).
        eta: the share of the step's noise drawn fresh: 1 (ancestral) to 0 (Euler's step).

    Returns:
        (B, ...) ``x_s = sqrt(ab_s) (x_t / sqrt(ab_t) + (sigma_down - sigma_t) eps + sigma_up z)``.
    """
    sigma_t, sigma_s = sigma_from_alpha_bar(alpha_bar_t), sigma_from_alpha_bar(alpha_bar_s)
    sigma_down, sigma_up = ancestral_sigmas(sigma_t, sigma_s, eta)
    x_tilde = x_t / math.sqrt(alpha_bar_t) + (sigma_down - sigma_t) * eps          # Euler down to sigma_down
    if sigma_up > 0:
        if z is None:
            raise ValueError("z: expected standard normal noise shaped like x_t for a step with eta > 0, got None")
        x_tilde = x_tilde + sigma_up * z                                           # fresh noise up to sigma_s
    return math.sqrt(alpha_bar_s) * x_tilde


@torch.no_grad()
def euler_ancestral_loop(denoiser, x_T: torch.Tensor, times, *, eta: float = 1.0,
                         generator: torch.Generator | None = None, callback=None,
                         progress: bool = True) -> torch.Tensor:
    """Euler-ancestral from ``x_T`` at ``times[0]`` through ``times`` to clean data, with any ``Denoiser``.

    Args:
        denoiser: a ``Denoiser`` (``VPDenoiser``, ``FlowDenoiser``).
        x_T: (B, ...) the starting noise.
        times: the decreasing times to visit (one network call each).
        eta: the share of fresh noise, 0 (Euler's method) to 1.
        generator: torch.Generator for the noise, drawn at every step that adds some (not the last).
        callback, progress: as in ``sample_ddpm``.

    Returns:
        (B, ...) the samples, on ``x_T``'s device.
    """
    eta = check_number("eta", eta, minimum=0.0)

    def update(x, step):
        x_0, eps = denoiser(x, step.t)
        z = noise_like(x, generator) if eta > 0 and step.alpha_bar_s < 1.0 else None
        return euler_ancestral_step(x, eps, step.alpha_bar_t, step.alpha_bar_s, z, eta), x_0

    return run_loop(denoiser, x_T, times, update, desc="Euler ancestral", callback=callback, progress=progress)


def sample_euler_ancestral(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *,
                           cond=None, guidance_scale: float = 1.0, prediction_type: str = "epsilon",
                           spacing: str = "linspace", clip_x0: bool = True, generator: torch.Generator | None = None,
                           callback=None, progress: bool = True, eta: float = 1.0) -> torch.Tensor:
    """Generate samples with Euler-ancestral steps (stochastic; ``eta = 0`` is ``sample_euler``).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise (moved to the model's device; the samples come back on x_T's).
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: torch.Generator for the noise.
        eta: the share of fresh noise, 0 (Euler's method) to 1.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0)
    return euler_ancestral_loop(denoiser, x_T, times, eta=eta, generator=generator, callback=callback,
                                progress=progress)
