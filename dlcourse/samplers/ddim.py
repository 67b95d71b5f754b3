"""DDIM sampling (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

One step from timestep t to the previous visited one, s (eq. 12)::

    x_s = sqrt(ab_s) x_0_guess + sqrt(1 - ab_s - sigma^2) eps_guess + sigma z,   z ~ N(0, I)
    sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)               (eq. 16)

``eta = 0`` adds no noise: the sampler is deterministic, and is exactly Euler's
method on the probability-flow ODE written in ``x / sqrt(ab)`` and
``sigma = sqrt((1 - ab) / ab)`` (Song et al. 2021, eq. 14; see ``euler.py``).
``eta = 1`` makes ``sigma^2`` the DDPM posterior variance ``beta_tilde`` of the
respaced chain: the step is then DDPM's, and with the same noise gives the same samples.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..schedules import NoiseSchedule
from .common import alpha_bars_at, check_x_T, eval_mode, noise_like, predict_x0_eps
from .spacing import timesteps_for


@torch.no_grad()
def sample_ddim(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                progress: bool = True, eta: float = 0.0) -> torch.Tensor:
    """Generate samples with DDIM (Song et al. 2021, eq. 12).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise; its device and dtype are used throughout.
        schedule: the schedule the model was trained with.
        steps: number of model calls (20-50 is typical); None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: torch.Generator for the noise (used only when ``eta > 0``).
        eta: the amount of noise, 0 (deterministic) to 1 (DDPM's posterior variance).

    Returns:
        (B, ...) the samples ``x_0``.
    """
    check_x_T(x_T)
    if not eta >= 0:
        raise ValueError(f"eta: expected a number >= 0, got {eta!r}")
    taus = timesteps_for(schedule, steps, spacing)
    ab = alpha_bars_at(schedule, taus)               # ab[i + 1] at taus[i], ab[0] = 1 (clean)
    x = x_T
    with eval_mode(model):
        for i in tqdm(range(len(taus) - 1, -1, -1), disable=not progress, desc="DDIM", leave=False):
            ab_t, ab_s = float(ab[i + 1]), float(ab[i])
            x_0, eps = predict_x0_eps(model, x, int(taus[i]), ab_t, cond=cond,
                                      guidance_scale=guidance_scale, prediction_type=prediction_type,
                                      clip_x0=clip_x0)
            var = eta ** 2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)            # sigma^2, eq. 16
            x = math.sqrt(ab_s) * x_0 + math.sqrt(max(1 - ab_s - var, 0.0)) * eps      # eq. 12
            if eta > 0:
                x = x + math.sqrt(var) * noise_like(x, generator)
            if callback is not None:
                callback(i, int(taus[i]), x, x_0)
    return x
