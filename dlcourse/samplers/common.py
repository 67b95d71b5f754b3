"""What every sampler's loop shares: checks, the walk over the visited times, the VP entry point.

A sampler module has three layers, the same in each:

    <name>_step(x_t, ..., alpha_bar_t, alpha_bar_s)      one update: the formula of the paper (notebook 04)
    <name>_loop(denoiser, x_T, times, ...)               the loop: ask the denoiser, call the step
    sample_<name>(model, x_T, schedule, steps, ...)      a discrete-time model and its schedule

``run_loop`` is the loop's frame: it checks the arguments once, moves ``x_T`` to the
model's device, puts the model in eval mode, shows progress, walks the times from the
noisiest to clean data and calls the sampler's ``update`` for each step, and hands the
result back on ``x_T``'s device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from ..schedules import NoiseSchedule
from ..tensors import eval_mode, noise_like  # noqa: F401  (the samplers import them from here)
from ..validation import check_tensor
from .denoiser import Denoiser, VPDenoiser, check_times, model_output, vp_times  # noqa: F401


class Step(NamedTuple):
    """One step of a loop, from time ``t`` to the next visited time ``s`` (None: clean data).

    ``k`` counts the steps taken (0 first), ``i = n - 1 - k`` counts down to 0 (the last
    step, to clean data; the callbacks' index), ``n`` is the number of steps.
    """

    k: int
    i: int
    n: int
    t: float
    s: float | None
    alpha_bar_t: float
    alpha_bar_s: float


def check_x_T(x_T) -> torch.Tensor:
    """The checks every sampler makes on its starting noise (B, ...)."""
    return check_tensor("x_T", x_T, ndim=(2, 3, 4, 5), floating=True)


def run_loop(denoiser: Denoiser, x_T: torch.Tensor, times, update, *, desc: str, callback=None,
             progress: bool = True) -> torch.Tensor:
    """Walk ``times`` then to clean data, ``x = update(x, step)`` at each step; return the final x.

    Args:
        denoiser: a ``Denoiser``.
        x_T: (B, ...) the starting noise, at ``times[0]`` (in the variance-preserving form).
        times: the decreasing times to visit (``check_times``).
        update: ``update(x, step) -> (x_next, x_0_guess)`` with ``step`` a ``Step``.
        desc: the progress bar's label.
        callback: ``callback(i, t, x, x_0_guess)`` after every step.
        progress: show a progress bar.

    Returns:
        (B, ...) the samples, on ``x_T``'s device.
    """
    check_x_T(x_T)
    times = check_times(denoiser, times)
    alpha_bars = [denoiser.alpha_bar(t) for t in times] + [1.0]          # clean data at the end
    n = len(times)
    x = x_T.to(denoiser.device)
    with eval_mode(denoiser.model):
        for k in tqdm(range(n), disable=not progress, desc=desc, leave=False):
            step = Step(k, n - 1 - k, n, times[k], times[k + 1] if k + 1 < n else None,
                        alpha_bars[k], alpha_bars[k + 1])
            x, x_0 = update(x, step)
            if callback is not None:
                callback(step.i, step.t, x, x_0)
    return x.to(x_T.device)


def vp_setup(model, schedule: NoiseSchedule, steps, spacing: str, *, prediction_type: str, cond,
             guidance_scale: float, clip_x0: bool, threshold_x0=None):
    """The ``VPDenoiser`` and decreasing timesteps that every ``sample_<name>`` entry point builds."""
    denoiser = VPDenoiser(model, schedule, prediction_type=prediction_type, cond=cond,
                          guidance_scale=guidance_scale, clip_x0=clip_x0, threshold_x0=threshold_x0)
    return denoiser, vp_times(schedule, steps, spacing)
