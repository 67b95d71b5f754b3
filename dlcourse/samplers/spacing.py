"""Which timesteps a sampler visits, and the schedule restricted to them."""

from __future__ import annotations

import torch

from ..schedules import NoiseSchedule
from ..validation import check_positive


def timesteps_for(schedule: NoiseSchedule, steps: int | None = None) -> torch.Tensor:
    """``steps`` timesteps from 0 to T-1, evenly spaced and increasing (all T if None).

    The last one is always ``T - 1`` so sampling starts from (almost) pure noise.
    Returns an int64 tensor of shape (steps,).
    """
    T = schedule.T
    if steps is None:
        return torch.arange(T)
    check_positive("steps", steps, integer=True)
    if steps > T:
        raise ValueError(f"steps: expected at most the schedule's T = {T}, got {steps}")
    return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()


def respace(schedule: NoiseSchedule, timesteps: torch.Tensor) -> NoiseSchedule:
    """The schedule that jumps between ``timesteps`` in one step each.

    Keeping ``alpha_bar`` at the visited steps and recomputing
    ``beta_i = 1 - alpha_bar_{tau_i} / alpha_bar_{tau_{i-1}}`` gives a shorter chain
    with the same marginals (Nichol & Dhariwal 2021, sec. 4). Index ``i`` of the
    result corresponds to timestep ``timesteps[i]`` of the original.
    """
    return NoiseSchedule.from_alphas_cumprod(schedule.alphas_cumprod[timesteps].double(),
                                             name=f"{schedule.name} ({len(timesteps)} steps)", max_beta=1 - 1e-12)
