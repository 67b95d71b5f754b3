"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

With the log-SNR ``lambda_t = log(ab_t / (1 - ab_t))`` as time, the probability-flow
ODE for the data prediction has an exactly solvable linear part; only the model's x_0
guess needs approximating. From t_{i-1} to t_i, with ``h_i = lambda_{t_i} - lambda_{t_{i-1}}``::

    x_{t_i} = sqrt((1 - ab_{t_i}) / (1 - ab_{t_{i-1}})) x_{t_{i-1}} - sqrt(ab_{t_i}) (e^{-h_i / 2} - 1) D_i

(The paper writes alpha_t for sqrt(ab_t), sigma_t for sqrt(1 - ab_t) and lambda_t for half
the log-SNR, so its e^{-h} is e^{-h / 2} here; the code steps in ``half_log_snr`` directly.)

The first step uses ``D_1 = x_0_guess(t_0)`` (first order: DPM-Solver++(1), which
is DDIM). Later steps reuse the previous step's guess to extrapolate, at no extra
model call (multistep, second order)::

    r_i = h_{i-1} / h_i,   D_i = (1 + 1 / (2 r_i)) x_0_guess(t_{i-1}) - 1 / (2 r_i) x_0_guess(t_{i-2})

The last step, to clean data (ab = 1, lambda = infinity), is first order and
returns the last x_0 guess. Older diffusers releases did the same by default
(``final_sigmas_type="zero"`` with ``lower_order_final``); diffusers 0.42 takes it at
second order, extrapolating the x_0 guess from the last two, which is less accurate:
the extrapolation's weight grows with the step's length in lambda, and this one is
the longest of all.

With timesteps evenly spaced in t, the last interval, t from T / steps down to 0,
stays long in lambda at any step count (near t = 0, lambda ~ -log(beta_0 (t + 1))),
so the second order shows late. What that costs on the 2-D toy checkpoint, with and without ``lower_order_final``,
is measured in ``bench/README.md``; the "reversed_quadratic" and "logsnr" spacings
shorten that interval (``spacing.py``).
"""

from __future__ import annotations

import math

import torch

from ..parameterization import half_log_snr
from ..schedules import NoiseSchedule
from .common import run_loop, vp_setup


def dpmpp_2m_step(x_t: torch.Tensor, x_0: torch.Tensor, alpha_bar_t: float, alpha_bar_s: float,
                  x_0_last: torch.Tensor | None = None, alpha_bar_last: float | None = None) -> torch.Tensor:
    """One DPM-Solver++(2M) step from t to s (Algorithm 2); first order when ``x_0_last`` is None.

    The step notebook 04's learner writes.

    Args:
        x_t: (B, ...) the current sample.
        x_0: (B, ...) the x_0 guess at (x_t, t).
        alpha_bar_t: alpha_bar at t.
        alpha_bar_s: alpha_bar at s, with alpha_bar_t < alpha_bar_s < 1.
        x_0_last: (B, ...) the guess at the previously visited time, or None.
        alpha_bar_last: alpha_bar there (< alpha_bar_t), or None.

    Returns:
        (B, ...) ``x_s = sqrt((1 - ab_s) / (1 - ab_t)) x_t - sqrt(ab_s) (exp(-h / 2) - 1) D``, with the log-SNR
        lambda, ``h = lambda_s - lambda_t`` and ``D = x_0`` or ``(1 + 1 / (2r)) x_0 - 1 / (2r) x_0_last``,
        ``r = (lambda_t - lambda_last) / h``.
    """
    half_h = half_log_snr(alpha_bar_s) - half_log_snr(alpha_bar_t)                  # h / 2
    if x_0_last is None:
        D = x_0
    else:
        r = (half_log_snr(alpha_bar_t) - half_log_snr(alpha_bar_last)) / half_h      # the same ratio in h
        D = (1 + 1 / (2 * r)) * x_0 - 1 / (2 * r) * x_0_last
    noise_ratio = math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t))
    return noise_ratio * x_t - math.sqrt(alpha_bar_s) * math.expm1(-half_h) * D


@torch.no_grad()
def dpmpp_2m_loop(denoiser, x_T: torch.Tensor, times, *, lower_order_final: bool = True, callback=None,
                  progress: bool = True) -> torch.Tensor:
    """DPM-Solver++(2M) through ``times`` to clean data, with any ``Denoiser``.

    First order on the first step; the last step returns the x_0 guess. Other arguments as
    in ``ddim_loop`` and ``sample_dpmpp_2m``; deterministic.
    """
    last = {"x_0": None, "alpha_bar": None}

    def update(x, step):
        x_0, _ = denoiser(x, step.t)
        if step.s is None:                                  # to clean data: x = alpha D, alpha = 1, first order
            return x_0, x_0
        first_order = last["x_0"] is None or (lower_order_final and step.i == 1 and step.n < 15)
        x_s = (dpmpp_2m_step(x, x_0, step.alpha_bar_t, step.alpha_bar_s) if first_order else
               dpmpp_2m_step(x, x_0, step.alpha_bar_t, step.alpha_bar_s, last["x_0"], last["alpha_bar"]))
        last["x_0"], last["alpha_bar"] = x_0, step.alpha_bar_t
        return x_s, x_0

    return run_loop(denoiser, x_T, times, update, desc="DPM-Solver++(2M)", callback=callback, progress=progress)


def sample_dpmpp_2m(model, x_T: torch.Tensor, schedule: NoiseSchedule, steps: int | None = None, *, cond=None,
                    guidance_scale: float = 1.0, prediction_type: str = "epsilon", spacing: str = "linspace",
                    clip_x0: bool = True, generator: torch.Generator | None = None, callback=None,
                    progress: bool = True, lower_order_final: bool = True, threshold_x0=None) -> torch.Tensor:
    """Generate samples with DPM-Solver++(2M), multistep, data prediction (deterministic).

    Args:
        model: denoiser called as ``model(x_t, t, cond)`` with t (B,) int64 in 0..T-1.
        x_T: (B, C, H, W) or (B, D) starting noise (moved to the model's device; the samples come back on x_T's).
        schedule: the schedule the model was trained with.
        steps: number of model calls (10-25 is typical); None for all T.
        cond, guidance_scale, prediction_type, spacing, clip_x0, callback, progress: as in ``sample_ddpm``.
        generator: unused (the sampler adds no noise); accepted for the shared signature.
        lower_order_final: with fewer than 15 steps, take the step into the last visited
            timestep at first order too (diffusers' ``lower_order_final``). With timesteps
            evenly spaced in t, that step is a long one in lambda (for the linear schedule
            from about 1.9 to 9.2 at 10 steps), and extrapolating the x_0 guess across it
            costs more than it gains.
        threshold_x0: None, or a function applied to the x_0 guess at every step (``Denoiser``).

    Returns:
        (B, ...) the samples ``x_0``.
    """
    denoiser, times = vp_setup(model, schedule, steps, spacing, prediction_type=prediction_type, cond=cond,
                               guidance_scale=guidance_scale, clip_x0=clip_x0, threshold_x0=threshold_x0)
    return dpmpp_2m_loop(denoiser, x_T, times, lower_order_final=lower_order_final, callback=callback,
                         progress=progress)
