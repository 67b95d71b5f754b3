"""DDIM sampling (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

One step from timestep t to the previous visited one, s (eq. 12)::

    x_s = sqrt(ab_s) x_0_guess + sqrt(1 - ab_s - nu^2) eps_guess + nu z,   z ~ N(0, I)
    nu = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)            (eq. 16)

(``nu`` is the paper's sigma_t; the course keeps sigma for ``sqrt((1 - ab) / ab)``.)

``eta = 0`` adds no noise: the sampler is deterministic, and is exactly Euler's
method on the probability-flow ODE written in ``x / sqrt(ab)`` and
``sigma = sqrt((1 - ab) / ab)`` (Song et al. 2021, eq. 14; see ``euler.py``).
``eta = 1`` makes ``nu^2`` the DDPM posterior variance ``beta_tilde`` of the
respaced chain: the step is then DDPM's, and with the same noise gives the same samples.
For a rectified flow (``FlowDenoiser``) the deterministic step is Euler's method in t.
"""

from __future__ import annotations

import math

import torch

from ..schedules import NoiseSchedule
from ..validation import check_number
from .common import noise_like, run_loop, vp_setup


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float, eta: float = 0.0,
              z: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step from t to s (eq. 12), the one notebook 04's learner writes.

    Args:
        x_t: (B, ...) the current sample.
        eps: (B, ...) the noise guess at (x_t, t).
        alpha_bar_t: alpha_bar at t.
        alpha_bar_s: alpha_bar at s (larger); 1.0 for the last step, to clean data.
        eta: the amount of fresh noise, 0 (deterministic) to 1 (DDPM's posterior variance).
        z: (B, ...) standard normal noise; may be None when ``eta = 0``.

    Returns:
        (B, ...) ``x_s``.
    """
    x_0 = (x_t - math.sqrt(1 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)
    var = eta ** 2 * (1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)      # nu^2, eq. 16
    x_s = math.sqrt(alpha_bar_s) * x_0 + math.sqrt(max(1 - alpha_bar_s - var, 0.0)) * eps
    return x_s + math.sqrt(var) * z if var > 0 else x_s


@torch.no_grad()
def ddim_loop(denoiser, x_T: torch.Tensor, times, *, eta: float = 0.0, generator: torch.Generator | None = None,
              callback=None, progress: bool = True) -> torch.Tensor:
    """DDIM from ``x_T`` at ``times[0]`` through ``times`` to clean data, with any ``Denoiser``.

    Args:
        denoiser: a ``Denoiser`` (``VPDenoiser``, ``FlowDenoiser``).
        x_T: (B, ...) the starting noise.
        times: the decreasing times to visit (one network call each).
        eta: the amount of noise, 0 (deterministic) to 1.
        generator: torch.Generator for the noise (drawn at every step when ``eta > 0``).
        callback, progress: as in ``sample_ddpm``.

    Returns:
        (B, ...) the samples, on ``x_T``'s device.
    """
    eta = check_number("eta", eta, minimum=0.0)

    def update(x, step):
        x_0, eps = denoiser(x, step.t)
        z = noise_like(x, generator) if eta > 0 else None
        return ddim_step(x, eps, step.alpha_bar_t, step.alpha_bar_s, eta, z), x_0

    return run_loop(denoiser, x_T, times, update, desc="DDIM", callback=callback, progress=progress)


def sample_ddim(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                progress: bool = True, eta: float = 0.0, threshold_x0=None) -> torch.Tensor:
    """Generate samples with DDIM (Song et al. 2021, eq. 12).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise (moved to the model's device; the samples come back on x_T's).
        schedule: the schedule the model was trained with.
        steps: number of model calls (20-50 is typical); None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: torch.Generator for the noise (used only when ``eta > 0``).
        eta: the amount of noise, 0 (deterministic) to 1 (DDPM's posterior variance).
        threshold_x0: None, or a function applied to the x_0 guess at every step (``Denoiser``), e.g.
            ``dlcourse.systems.imagen.dynamic_threshold``; pass ``clip_x0=False`` beside it to compare.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0, threshold_x0=threshold_x0)
    return ddim_loop(denoiser, x_T, times, eta=eta, generator=generator, callback=callback, progress=progress)
