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
shrinks like 1 / steps.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..schedules import NoiseSchedule
from .common import alpha_bars_at, check_x_T, eval_mode, predict_x0_eps
from ..parameterization import sigma_from_alpha_bar as karras_sigmas
from .spacing import timesteps_for


@torch.no_grad()
def sample_euler(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                 guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                 clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                 progress: bool = True) -> torch.Tensor:
    """Generate samples with Euler's method on the probability-flow ODE (deterministic).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise; its device and dtype are used throughout.
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: unused (the sampler adds no noise); accepted for the shared signature.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    check_x_T(x_T)
    taus = timesteps_for(schedule, steps, spacing)
    ab = alpha_bars_at(schedule, taus)               # ab[i + 1] at taus[i], ab[0] = 1 (clean)
    sigmas = karras_sigmas(ab).tolist()              # sigmas[0] = 0
    x = x_T / math.sqrt(ab[-1])                      # x~ = x_t / sqrt(ab)
    with eval_mode(model):
        for i in tqdm(range(len(taus) - 1, -1, -1), disable=not progress, desc="Euler", leave=False):
            ab_t = float(ab[i + 1])
            x_0, d = predict_x0_eps(model, math.sqrt(ab_t) * x, int(taus[i]), ab_t, cond=cond,
                                    guidance_scale=guidance_scale, prediction_type=prediction_type,
                                    clip_x0=clip_x0)                        # d = dx~/dsigma = eps
            x = x + (sigmas[i] - sigmas[i + 1]) * d
            if callback is not None:
                callback(i, int(taus[i]), math.sqrt(ab[i]) * x, x_0)
    return x
