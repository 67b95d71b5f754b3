"""Heun's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1).

The same ODE as ``euler.py``, ``dx~/dsigma = eps_guess`` for ``x~ = x_t / sqrt(ab)``
and ``sigma = sqrt((1 - ab) / ab)``. Each step takes an Euler step to the next
sigma, evaluates the slope there too, and redoes the step with the average of the
two slopes (the trapezoidal rule). Second order: the error shrinks like 1 / steps^2,
for ``2 steps - 2`` model calls. The last step, to sigma = 0, is a plain Euler step,
as in Algorithm 1 (line 6): the slope at sigma = 0 is undefined (0 / 0).

The trapezoidal rule needs the slope to change little over a step, and the first
step can be enormous in sigma. The cosine schedule's last timestep (beta clipped
to 0.999) has sigma of about 2e4: measured on Gaussian data (std 0.5), Heun's error
at 10 / 20 / 40 steps is 14 / 1.4 / 0.17 there, against Euler's 0.16 / 0.08 / 0.04.
With the linear schedule (largest sigma about 157) Heun beats Euler from 10 steps
(0.09 against 0.28). Errors in the slope (a network's, or float32 rounding) are
amplified the same way. Karras et al. cap the largest noise level (sigma_max = 80);
DPM-Solver++ avoids the problem by solving the linear part of the ODE exactly.

So the **first step is a plain Euler step** here. It starts from pure noise, where the
data is negligible next to sigma, the slope is ``eps = x~ / sigma`` and the ODE's
solution is ``x~ proportional to sigma``, which Euler follows exactly; the trapezoidal
correction would only add the network's error at the next noise level, multiplied by
the length of the step (what that does to the shipped shapes U-Net's samples is in
``bench/README.md``). One Euler step has a
local error of order h^2, so the method stays second order overall.
"""

from __future__ import annotations

import torch

from ..schedules import NoiseSchedule
from .common import run_loop, vp_setup
from .euler import euler_step


def heun_step(x_t: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor, alpha_bar_t: float,
              alpha_bar_s: float) -> torch.Tensor:
    """One Heun step from t to s: the Euler step with the average of the two slopes.

    Args:
        x_t: (B, ...) the current sample.
        eps: (B, ...) the noise guess at (x_t, t).
        eps_next: (B, ...) the noise guess at (the Euler step's x_s, s).
        alpha_bar_t, alpha_bar_s: alpha_bar at t and at s (larger, below 1).

    Returns:
        (B, ...) ``x_s = sqrt(ab_s) (x_t / sqrt(ab_t) + (sigma_s - sigma_t) (eps + eps_next) / 2)``.
    """
    return euler_step(x_t, (eps + eps_next) / 2, alpha_bar_t, alpha_bar_s)


@torch.no_grad()
def heun_loop(denoiser, x_T: torch.Tensor, times, *, callback=None, progress: bool = True) -> torch.Tensor:
    """Heun's method through ``times`` to clean data, with any ``Denoiser``; the first and last steps are Euler's.

    Other arguments as in ``ddim_loop``; deterministic. The callback's x_0 guess is the one
    from the start of the step.
    """
    def update(x, step):
        x_0, eps = denoiser(x, step.t)
        x_next = euler_step(x, eps, step.alpha_bar_t, step.alpha_bar_s)
        if step.k > 0 and step.s is not None:                  # not the first step, nor the one to clean data
            _, eps_next = denoiser(x_next, step.s)
            x_next = heun_step(x, eps, eps_next, step.alpha_bar_t, step.alpha_bar_s)
        return x_next, x_0

    return run_loop(denoiser, x_T, times, update, desc="Heun", callback=callback, progress=progress)


def sample_heun(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                progress: bool = True) -> torch.Tensor:
    """Generate samples with Heun's second-order method on the probability-flow ODE (deterministic).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise (moved to the model's device; the samples come back on x_T's).
        schedule: the schedule the model was trained with.
        steps: number of steps, visiting ``steps`` timesteps; the model is called
            ``2 steps - 2`` times (once for one step). None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``
            (the callback's x_0 guess is the one from the start of the step).
        generator: unused (the sampler adds no noise); accepted for the shared signature.

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0)
    return heun_loop(denoiser, x_T, times, callback=callback, progress=progress)
