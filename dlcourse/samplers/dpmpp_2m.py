"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

Write ``x_t = alpha_t x_0 + sigma_t eps`` with ``alpha_t = sqrt(ab)``,
``sigma_t = sqrt(1 - ab)`` and the half log-SNR ``lambda_t = log(alpha_t / sigma_t)``.
In lambda, the probability-flow ODE for the data prediction has an exactly
solvable linear part; only the model's x_0 guess needs approximating.
From t_{i-1} to t_i, with ``h_i = lambda_{t_i} - lambda_{t_{i-1}}``::

    x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i

The first step uses ``D_1 = x_0_guess(t_0)`` (first order: DPM-Solver++(1), which
is DDIM). Later steps reuse the previous step's guess to extrapolate, at no extra
model call (multistep, second order)::

    r_i = h_{i-1} / h_i,   D_i = (1 + 1 / (2 r_i)) x_0_guess(t_{i-1}) - 1 / (2 r_i) x_0_guess(t_{i-2})

The last step, to clean data (sigma = 0, lambda = infinity), is first order and
returns the last x_0 guess, as diffusers does (``final_sigmas_type="zero"``).

With timesteps evenly spaced in t, the last interval, t from T / steps down to 0,
stays long in lambda at any step count (near t = 0, lambda ~ -log(beta_0 (t + 1)) / 2),
so the second order shows late. Measured on the 2-D toy checkpoint (linear schedule),
energy distance over its floor at 10 / 15 / 20 / 30 / 50 steps: 1.3 / 5.7 / 2.5 / 1.05
/ 0.85; at 10 steps ``lower_order_final`` is on, at 15 and more it is not. Taking that
step at first order at every count gives 0.88 / 0.80 / 0.78 at 15 / 20 / 30 steps, but
the error then no longer falls at second order.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..schedules import NoiseSchedule
from .common import alpha_bars_at, check_x_T, eval_mode, predict_x0_eps
from .spacing import timesteps_for


@torch.no_grad()
def sample_dpmpp_2m(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                    guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                    clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                    progress: bool = True, lower_order_final: bool = True) -> torch.Tensor:
    """Generate samples with DPM-Solver++(2M), multistep, data prediction (deterministic).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise; its device and dtype are used throughout.
        schedule: the schedule the model was trained with.
        steps: number of model calls (10-25 is typical); None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: unused (the sampler adds no noise); accepted for the shared signature.
        lower_order_final: with fewer than 15 steps, take the step into the last visited
            timestep at first order too (diffusers' default). With timesteps evenly spaced
            in t, that step is a long one in lambda (for the linear schedule from about 1
            to 4.6 at 10 steps), and extrapolating the x_0 guess across it costs more than
            it gains: on Gaussian data at 10 steps it cuts the error about 2x (linear)
            to 5x (cosine).

    Returns:
        (B, ...) the samples ``x_0``.
    """
    check_x_T(x_T)
    taus = timesteps_for(schedule, steps, spacing)
    ab = alpha_bars_at(schedule, taus)               # ab[i + 1] at taus[i], ab[0] = 1 (clean)
    alpha, sigma = ab.sqrt().tolist(), (1 - ab).sqrt().tolist()
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sigma)]     # lambda, +inf at clean
    x, x_0_prev, h_prev = x_T, None, None
    with eval_mode(model):
        for i in tqdm(range(len(taus) - 1, -1, -1), disable=not progress, desc="DPM-Solver++(2M)", leave=False):
            # step from index i + 1 (timestep taus[i]) to index i (the next visited one, or clean)
            x_0, _ = predict_x0_eps(model, x, int(taus[i]), float(ab[i + 1]), cond=cond,
                                    guidance_scale=guidance_scale, prediction_type=prediction_type,
                                    clip_x0=clip_x0)
            if i == 0:                                 # to sigma = 0: x = alpha D, alpha = 1, first order
                x = x_0
            else:
                h = lam[i] - lam[i + 1]
                if x_0_prev is None or (lower_order_final and i == 1 and len(taus) < 15):   # first order
                    D = x_0
                else:                                  # extrapolate the x_0 guess from the last two
                    r = h_prev / h
                    D = (1 + 1 / (2 * r)) * x_0 - 1 / (2 * r) * x_0_prev
                x = (sigma[i] / sigma[i + 1]) * x - alpha[i] * math.expm1(-h) * D
                x_0_prev, h_prev = x_0, h
            if callback is not None:
                callback(i, int(taus[i]), x, x_0)
    return x
