"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

Start from ``x_T ~ N(0, I)``; at each step ask the model for its guess of the noise
and draw ``x_s`` from the posterior ``q(x_s | x_t, x_0 = guess)``, the same step back
that notebook 01 took when it knew the true ``x_0``. From t to the next visited
timestep s, with ``alpha_ts = ab_t / ab_s`` and ``beta_ts = 1 - alpha_ts`` (the course's
alpha_{t|s} and beta_{t|s}: the respaced chain of Nichol & Dhariwal 2021, sec. 4, which keeps
alpha_bar at the visited steps; with s = t - 1 they are the schedule's alpha_t and beta_t)::

    x_s = (x_t - beta_ts / sqrt(1 - ab_t) eps) / sqrt(alpha_ts) + sqrt(beta_tilde) z,
    beta_tilde = (1 - ab_s) / (1 - ab_t) beta_ts                   (Ho et al. eq. 7)
"""

from __future__ import annotations

import math

import torch

from ..schedules import NoiseSchedule
from .common import noise_like, run_loop, vp_setup


def ddpm_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float,
              z: torch.Tensor) -> torch.Tensor:
    """One DDPM ancestral step from t to s (Ho et al. 2020, Algorithm 2), the one notebook 04's learner writes.

    Args:
        x_t: (B, ...) the current sample.
        eps: (B, ...) the noise guess at (x_t, t).
        alpha_bar_t: alpha_bar at t.
        alpha_bar_s: alpha_bar at s (larger: less noise); 1.0 for the last step, to clean data.
        z: (B, ...) standard normal noise (no effect on the last step: its variance is 0).

    Returns:
        (B, ...) ``x_s``.
    """
    alpha_ts = alpha_bar_t / alpha_bar_s
    beta_ts = 1 - alpha_ts
    mean = (x_t - beta_ts / math.sqrt(1 - alpha_bar_t) * eps) / math.sqrt(alpha_ts)
    variance = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta_ts                  # beta_tilde
    return mean + math.sqrt(variance) * z if variance > 0 else mean


@torch.no_grad()
def ddpm_loop(denoiser, x_T: torch.Tensor, times, *, generator: torch.Generator | None = None, callback=None,
              progress: bool = True) -> torch.Tensor:
    """Ancestral sampling from ``x_T`` at ``times[0]`` through ``times`` to clean data, with any ``Denoiser``.

    ``z`` is drawn from ``generator`` at every step, the last one included, so the
    same generator gives the same samples as a loop written that way (notebook 04).
    Other arguments as in ``ddim_loop``.
    """
    def update(x, step):
        x_0, eps = denoiser(x, step.t)
        return ddpm_step(x, eps, step.alpha_bar_t, step.alpha_bar_s, noise_like(x, generator)), x_0

    return run_loop(denoiser, x_T, times, update, desc="DDPM", callback=callback, progress=progress)


def sample_ddpm(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                progress: bool = True) -> torch.Tensor:
    """Generate samples by ancestral sampling.

    With fewer than T steps the chain is respaced (Nichol & Dhariwal 2021, sec. 4):
    the posterior of the shorter chain that keeps alpha_bar at the visited timesteps.
    Its variance ``beta_tilde`` ignores how unsure the model's x_0 guess is, so with
    few steps the samples come out a little too narrow (learned variances fix this).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise. It is moved to the model's device,
            and the samples come back on x_T's device.
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T.
        cond: conditioning passed to the model (e.g. (B,) labels).
        guidance_scale: classifier-free guidance weight w (1 = no guidance; ``denoiser.model_output``).
        prediction_type: what the model predicts: "epsilon", "sample" or "v_prediction".
        spacing: which timesteps to visit, one of ``SPACINGS``: "linspace", "leading", "trailing",
            "quadratic", "reversed_quadratic", "karras" or "logsnr" (see ``timesteps_for``).
        clip_x0: clamp the model's x_0 guess to [-1, 1] (for images).
        generator: torch.Generator for the noise added at each step.
        callback: called as ``callback(i, t, x, x_0_guess)`` after every step, with i
            counting down from steps-1 to 0, t the timestep the model saw, x the sample
            after the step (the final sample when i = 0).
        progress: show a progress bar.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0)
    return ddpm_loop(denoiser, x_T, times, generator=generator, callback=callback, progress=progress)
