"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).

Start from ``x_T ~ N(0, I)``; at each step ask the model for its guess of ``x_0``
and draw ``x_{t-1}`` from the posterior ``q(x_{t-1} | x_t, x_0 = guess)``, the
same step back that notebook 01 took when it knew the true ``x_0``.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..forward import q_posterior_sample
from ..parameterization import to_x0_eps
from ..schedules import NoiseSchedule
from ..validation import check_tensor
from .spacing import respace, timesteps_for


@torch.no_grad()
def sample_ddpm(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                prediction_type: str = "epsilon", clip_x0: bool = True, generator: torch.Generator | None = None,
                callback=None, progress: bool = True) -> torch.Tensor:
    """Generate samples by ancestral sampling.

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise; its device is used throughout.
        schedule: the schedule the model was trained with.
        steps: number of model calls; None for all T. Fewer steps visit evenly spaced
            timesteps with the respaced posterior (see ``respace``).
        cond: conditioning passed to the model (e.g. (B,) labels).
        prediction_type: what the model predicts: "epsilon", "sample" or "v_prediction".
        clip_x0: clamp the model's x_0 guess to [-1, 1] (for images).
        generator: torch.Generator for the noise added at each step.
        callback: called as ``callback(i, t, x_t, x_0_guess)`` at every step.
        progress: show a progress bar.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    check_tensor("x_T", x_T, ndim=(2, 3, 4, 5), floating=True)
    taus = timesteps_for(schedule, steps)
    sub = respace(schedule, taus)
    alphas_cumprod = schedule.alphas_cumprod.to(x_T.device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    x = x_T
    B = x.shape[0]
    for i in tqdm(range(len(taus) - 1, -1, -1), disable=not progress, desc="DDPM", leave=False):
        t = taus[i].to(x.device).expand(B)
        x_0, _ = to_x0_eps(model(x, t, cond).float(), x, alphas_cumprod[t], prediction_type)
        if clip_x0:
            x_0 = x_0.clamp(-1, 1)
        noise = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
        x = q_posterior_sample(x, x_0, i, sub, noise.to(x.device, x.dtype))
        if callback is not None:
            callback(i, int(taus[i]), x, x_0)
    if was_training:
        model.train()
    return x
