"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

Start from ``x_T ~ N(0, I)``; at each step ask the model for its guess of ``x_0``
and draw ``x_{t-1}`` from the posterior ``q(x_{t-1} | x_t, x_0 = guess)``, the
same step back that notebook 01 took when it knew the true ``x_0``.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..forward import q_posterior_sample
from ..schedules import NoiseSchedule
from .common import check_x_T, eval_mode, noise_like, predict_x0_eps
from .spacing import respace, timesteps_for


@torch.no_grad()
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
        x_T: (B, C, H, W) or (B, D) starting noise; its device and dtype are used throughout.
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T.
        cond: conditioning passed to the model (e.g. (B,) labels).
        guidance_scale: classifier-free guidance weight w (1 = no guidance; see ``common``).
        prediction_type: what the model predicts: "epsilon", "sample" or "v_prediction".
        spacing: which timesteps to visit, one of ``SPACINGS``: "linspace", "leading", "trailing",
            "quadratic", "reversed_quadratic" or "karras" (see ``timesteps_for``).
        clip_x0: clamp the model's x_0 guess to [-1, 1] (for images).
        generator: torch.Generator for the noise added at each step.
        callback: called as ``callback(i, t, x, x_0_guess)`` after every step, with i
            counting down from steps-1 to 0, t the timestep the model saw, x the sample
            after the step (the final sample when i = 0).
        progress: show a progress bar.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    check_x_T(x_T)
    taus = timesteps_for(schedule, steps, spacing)
    sub = respace(schedule, taus)                     # index i of sub is timestep taus[i]
    x, B = x_T, x_T.shape[0]
    with eval_mode(model):
        for i in tqdm(range(len(taus) - 1, -1, -1), disable=not progress, desc="DDPM", leave=False):
            t = taus[i].to(x.device).expand(B)
            x_0, _ = predict_x0_eps(model, x, t, schedule.alphas_cumprod.to(x.device)[t], cond=cond,
                                    guidance_scale=guidance_scale, prediction_type=prediction_type,
                                    clip_x0=clip_x0)
            x = q_posterior_sample(x, x_0, i, sub, noise_like(x, generator))    # zero variance at i = 0
            if callback is not None:
                callback(i, int(taus[i]), x, x_0)
    return x
